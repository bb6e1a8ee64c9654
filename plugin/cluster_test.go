package plugin_test

import (
	"context"
	"strings"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	trainyardv1 "github.com/trainyard-dev/trainyard/api/v1alpha1"
	"github.com/trainyard-dev/trainyard/internal/credential"
)

// Issue 27 #4: a revoked cluster registers again only with a single-use
// token an operator makes for it. (The bridge's suite and `make dev`'s test
// present such tokens; this is what the command stores and prints.)
var _ = Describe("a cluster's bridge identity", Ordered, func() {
	ctx := context.Background()
	// A namespace of its own: "publish" must stay without reports
	// (the golden fleet-empty lists it).
	const ns, id = "identity", "edge-9"
	annotations := func() map[string]string {
		GinkgoHelper()
		r := &trainyardv1.ClusterReport{}
		Expect(k8sClient.Get(ctx, types.NamespacedName{Namespace: ns, Name: id}, r)).To(Succeed())
		return r.Annotations
	}
	BeforeAll(func() {
		Expect(k8sClient.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})).To(Succeed())
		Expect(k8sClient.Create(ctx, &trainyardv1.ClusterReport{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: id},
			Spec: trainyardv1.ClusterReportSpec{ClusterID: id}})).To(Succeed())
	})

	It("reissues: prints a single-use token alone on stdout, and stores only its hash and expiry", func() {
		r := run("cluster", "reissue", id, "-n", ns, "--ttl", "30m")
		Expect(r.code).To(Equal(0), r.stderr)
		token := strings.TrimSuffix(r.stdout, "\n")
		Expect(token).To(MatchRegexp(`^tyr\.[A-Za-z0-9_-]{43}$`))
		Expect(r.stderr).To(ContainSubstring("registers cluster edge-9 once, until 2026-12-01T12:30:00Z"))
		a := annotations()
		Expect(a).To(HaveKeyWithValue(trainyardv1.AnnotationReissueHash, credential.Hash(token)))
		Expect(a).To(HaveKeyWithValue(trainyardv1.AnnotationReissueExpires, "2026-12-01T12:30:00Z"))
		for _, v := range a {
			Expect(v).NotTo(ContainSubstring(strings.TrimPrefix(token, "tyr.")))
		}

		// A new one replaces it: only the newest works.
		again := run("cluster", "reissue", id, "-n", ns)
		Expect(again.code).To(Equal(0), again.stderr)
		Expect(annotations()).To(HaveKeyWithValue(trainyardv1.AnnotationReissueHash, credential.Hash(strings.TrimSpace(again.stdout))))
		Expect(annotations()).To(HaveKeyWithValue(trainyardv1.AnnotationReissueExpires, "2026-12-01T13:00:00Z"))
	})

	It("revokes with the time and a reason, and closes an open reissue token", func() {
		Expect(annotations()).To(HaveKey(trainyardv1.AnnotationReissueHash))
		r := run("cluster", "revoke", id, "-n", ns, "--reason", "laptop stolen")
		Expect(r.code).To(Equal(0), r.stderr)
		Expect(r.stdout).To(Equal("clusterreport.trainyard.dev/edge-9 revoked\n"))
		a := annotations()
		Expect(a).To(HaveKeyWithValue(trainyardv1.AnnotationCredentialRevoked, "2026-12-01T12:00:00Z laptop stolen"))
		Expect(a).NotTo(HaveKey(trainyardv1.AnnotationReissueHash))
		Expect(a).NotTo(HaveKey(trainyardv1.AnnotationReissueExpires))
	})

	It("refuses what it cannot do, and stores nothing", func() {
		before := annotations()
		for _, c := range []struct {
			args []string
			want string
		}{
			{[]string{"reissue", id, "--ttl", "48h"}, "--ttl must be between 1m and 24h0m0s, not 48h0m0s"},
			{[]string{"reissue", id, "--ttl", "10s"}, "--ttl must be between 1m and 24h0m0s, not 10s"},
			{[]string{"reissue", "nowhere"}, `cluster nowhere has no ClusterReport in namespace "identity"`},
			{[]string{"revoke", id}, "give --reason"},
			{[]string{"revoke", id, "--reason", "  "}, "give --reason"},
			{[]string{"reissue", id, "extra-arg"}, "accepts 1 arg(s), received 2"},
		} {
			r := run(append(append([]string{"cluster"}, c.args...), "-n", ns)...)
			Expect(r.code).To(Equal(3), "%v", c.args)
			Expect(r.stderr).To(ContainSubstring(c.want), "%v", c.args)
			Expect(r.stdout).To(BeEmpty(), "%v", c.args)
		}
		Expect(annotations()).To(Equal(before))
		err := k8sClient.Get(ctx, types.NamespacedName{Namespace: ns, Name: "nowhere"}, &trainyardv1.ClusterReport{})
		Expect(apierrors.IsNotFound(err)).To(BeTrue())
	})
})
