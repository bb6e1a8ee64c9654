package webhook_test

import (
	"bytes"
	"os"
	"path/filepath"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/controller-runtime/pkg/client"

	trainyardv1 "github.com/trainyard-dev/trainyard/api/v1alpha1"
	"github.com/trainyard-dev/trainyard/internal/testenv"
)

// Issue 30: the documented advisory applies; a mistaken one is refused by
// the schema or the webhook, naming the field, and nothing is stored.
var _ = Describe("advisories through the webhook and the schema", func() {
	var ns string
	BeforeEach(func() { ns = namespace() })

	example := func() *trainyardv1.Advisory {
		raw, err := os.ReadFile(filepath.Join(testenv.RepoRoot(), "docs", "examples", "advisory.yaml"))
		Expect(err).NotTo(HaveOccurred())
		a := &trainyardv1.Advisory{}
		Expect(utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(raw), 4096).Decode(a)).To(Succeed())
		a.Namespace = ns
		return a
	}

	It("accepts docs/examples/advisory.yaml as it is", func() {
		a := example()
		Expect(k8sClient.Create(ctx, a)).To(Succeed())
		got := &trainyardv1.Advisory{}
		Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(a), got)).To(Succeed())
		Expect(got.Spec.Affected[0].Ranges[0].Events).To(Equal([]trainyardv1.RangeEvent{{Introduced: "1.0.0"}, {Fixed: "1.2.1"}}))
	})

	DescribeTable("refuses, naming the field, and stores nothing",
		func(change func(*trainyardv1.Advisory), want string) {
			a := example()
			change(a)
			err := k8sClient.Create(ctx, a)
			Expect(apierrors.IsInvalid(err)).To(BeTrue(), "%v", err)
			Expect(err.Error()).To(ContainSubstring(want))
			Expect(apierrors.IsNotFound(k8sClient.Get(ctx, client.ObjectKeyFromObject(a), &trainyardv1.Advisory{}))).To(BeTrue())
		},
		Entry("a score the vector does not give (webhook)", func(a *trainyardv1.Advisory) { a.Spec.Severity[0].Score = "7.5" },
			`spec.severity[0].score: Invalid value: "7.5": the vector's base score is 9.8`),
		Entry("a fixed version that is not semver (webhook)", func(a *trainyardv1.Advisory) {
			a.Spec.Affected[0].Ranges[0].Events[1].Fixed = "1.2"
		}, `spec.affected[0].ranges[0].events[1].fixed: Invalid value: "1.2"`),
		Entry("an event of two kinds (schema)", func(a *trainyardv1.Advisory) {
			a.Spec.Affected[0].Ranges[0].Events[0].Fixed = "1.0.5"
		}, "exactly one of introduced, fixed, lastAffected and limit"),
		Entry("a GIT range (schema)", func(a *trainyardv1.Advisory) { a.Spec.Affected[0].Ranges[0].Type = "GIT" },
			`spec.affected[0].ranges[0].type: Unsupported value: "GIT"`),
		Entry("neither ranges nor versions (schema)", func(a *trainyardv1.Advisory) { a.Spec.Affected[0].Ranges = nil },
			"give ranges, versions or both"),
		Entry("no affected components (schema)", func(a *trainyardv1.Advisory) { a.Spec.Affected = nil },
			"spec.affected"),
	)

	It("refuses an update that breaks it, keeping the stored advisory", func() {
		a := example()
		Expect(k8sClient.Create(ctx, a)).To(Succeed())
		patch := client.MergeFrom(a.DeepCopy())
		a.Spec.Affected[0].Component = "Router_1"
		err := k8sClient.Patch(ctx, a, patch)
		Expect(apierrors.IsInvalid(err)).To(BeTrue(), "%v", err)
		Expect(err.Error()).To(ContainSubstring("spec.affected[0].component: Invalid value"))
		got := &trainyardv1.Advisory{}
		Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(a), got)).To(Succeed())
		Expect(got.Spec.Affected[0].Component).To(Equal("router"))
	})
})
