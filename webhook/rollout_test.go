package webhook_test

import (
	"bytes"
	"os"
	"path/filepath"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/controller-runtime/pkg/client"

	trainyardv1 "github.com/trainyard-dev/trainyard/api/v1alpha1"
	"github.com/trainyard-dev/trainyard/internal/testenv"
)

// Issue 29: the rollout example as documented applies; a mistaken policy
// or approval is refused with the field and the rule, and nothing is stored.
var _ = Describe("rollouts through the webhook and the schema", func() {
	var ns string
	BeforeEach(func() { ns = namespace() })

	It("accepts docs/examples/rollout.yaml as it is", func() {
		raw, err := os.ReadFile(filepath.Join(testenv.RepoRoot(), "docs", "examples", "rollout.yaml"))
		Expect(err).NotTo(HaveOccurred())
		dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(raw), 4096)
		kinds := []string{}
		for {
			u := &unstructured.Unstructured{}
			if err := dec.Decode(&u.Object); err != nil {
				break
			}
			if len(u.Object) == 0 {
				continue
			}
			u.SetNamespace(ns)
			Expect(k8sClient.Create(ctx, u)).To(Succeed(), "%s %s", u.GetKind(), u.GetName())
			kinds = append(kinds, u.GetKind())
		}
		Expect(kinds).To(Equal([]string{"ReleaseTrain", "PromotionApproval"}))
		t := &trainyardv1.ReleaseTrain{}
		Expect(k8sClient.Get(ctx, client.ObjectKey{Namespace: ns, Name: "router.stable"}, t)).To(Succeed())
		Expect(t.Spec.Rollout.Rings).To(HaveLen(3))
		Expect(t.Spec.Rollout.Rings[1].MaxConcurrent.String()).To(Equal("25%"))
	})

	It("refuses a ring named twice, a selector that does not parse and a maxConcurrent of 0%, storing nothing", func() {
		t := &trainyardv1.ReleaseTrain{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "router.stable"},
			Spec: trainyardv1.ReleaseTrainSpec{Component: "router", Train: "stable", Rollout: &trainyardv1.RolloutPolicy{Rings: []trainyardv1.Ring{
				{Name: "canary"}, {Name: "canary"},
			}}}}
		err := k8sClient.Create(ctx, t)
		Expect(apierrors.IsInvalid(err)).To(BeTrue(), "%v", err)
		Expect(err.Error()).To(ContainSubstring(`spec.rollout.rings[1]: Duplicate value: {"name":"canary"}`))

		t.Spec.Rollout.Rings = []trainyardv1.Ring{{Name: "canary",
			ClusterSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "ring", Operator: "Near"}}}}}
		err = k8sClient.Create(ctx, t)
		Expect(apierrors.IsInvalid(err)).To(BeTrue(), "%v", err)
		Expect(err.Error()).To(ContainSubstring(`spec.rollout.rings[0].clusterSelector: Invalid value`))
		Expect(err.Error()).To(ContainSubstring(`"Near" is not a valid label selector operator`))

		u := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "trainyard.dev/v1alpha1", "kind": "ReleaseTrain",
			"metadata": map[string]any{"namespace": ns, "name": "router.stable"},
			"spec": map[string]any{"component": "router", "train": "stable",
				"rollout": map[string]any{"rings": []any{map[string]any{"name": "all", "maxConcurrent": "0%"}}}},
		}}
		err = k8sClient.Create(ctx, u)
		Expect(apierrors.IsInvalid(err)).To(BeTrue(), "%v", err)
		Expect(err.Error()).To(ContainSubstring("maxConcurrent must be at least 1, or a percentage from 1% to 100%"))
		Expect(apierrors.IsNotFound(k8sClient.Get(ctx, client.ObjectKey{Namespace: ns, Name: "router.stable"}, &trainyardv1.ReleaseTrain{}))).To(BeTrue())
	})

	It("refuses an approval that names both gates to waive and a ring", func() {
		a := &trainyardv1.PromotionApproval{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "both"},
			Spec: trainyardv1.PromotionApprovalSpec{Train: "router.stable", Version: "1.2.0", Ring: "everyone",
				Waive: []trainyardv1.GateName{trainyardv1.GateSoak}, Expires: metav1.Now(), Reason: "x"}}
		err := k8sClient.Create(ctx, a)
		Expect(apierrors.IsInvalid(err)).To(BeTrue(), "%v", err)
		Expect(err.Error()).To(ContainSubstring("name either the gates to waive (a promotion) or the ring to open (a rollout), not both"))
	})
})
