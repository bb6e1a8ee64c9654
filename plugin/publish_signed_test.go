package plugin_test

import (
	"context"
	"os"
	"path/filepath"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	trainyardv1 "github.com/trainyard-dev/trainyard/api/v1alpha1"
	"github.com/trainyard-dev/trainyard/internal/verification/verificationtest"
)

// Issue 31: `publish --bundle` stores a Sigstore bundle with the release;
// under a TrustPolicy the webhook wants the image by digest.
var _ = Describe("publishing a signed release", Ordered, func() {
	ctx := context.Background()
	const ns = "publish-signed"
	BeforeAll(func() {
		Expect(k8sClient.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})).To(Succeed())
		Expect(k8sClient.Create(ctx, &trainyardv1.TrustPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "signed"},
			Spec: trainyardv1.TrustPolicySpec{Components: []string{"router"}, Keys: []trainyardv1.SecretKeyRef{{Name: "cosign-pub", Key: "cosign.pub"}}}})).To(Succeed())
	})

	It("stores the bundle given as a file, byte for byte", func() {
		k, err := verificationtest.NewKey()
		Expect(err).NotTo(HaveOccurred())
		m, digest := verificationtest.Manifest("2.5.0")
		b, err := k.Sign(m)
		Expect(err).NotTo(HaveOccurred())
		path := filepath.Join(GinkgoT().TempDir(), "router-2.5.0.bundle.json")
		Expect(os.WriteFile(path, append(b, '\n'), 0o600)).To(Succeed())
		// The webhook reads policies from the manager's cache: the first
		// publish may come before it has seen this one.
		Eventually(func() string {
			return run("publish", "router", "2.5.0", "-n", ns, "--image", "registry.example/router:2.5.0", "--bundle", path, "--dry-run").stderr
		}).Should(ContainSubstring("name the image by its digest"))
		r := run("publish", "router", "2.5.0", "-n", ns, "--image", "registry.example/router@"+digest, "--bundle", path)
		Expect(r.code).To(Equal(0), r.stderr)
		rel := &trainyardv1.ComponentRelease{}
		Expect(k8sClient.Get(ctx, types.NamespacedName{Namespace: ns, Name: "router.stable.v2.5.0"}, rel)).To(Succeed())
		Expect(rel.Spec.SignatureBundle).To(Equal(string(b)))
	})

	It("refuses a bundle that is not one, or too large, and stores nothing", func() {
		dir := GinkgoT().TempDir()
		notJSON := filepath.Join(dir, "not.json")
		Expect(os.WriteFile(notJSON, []byte("not a bundle"), 0o600)).To(Succeed())
		huge := filepath.Join(dir, "huge.json")
		Expect(os.WriteFile(huge, make([]byte, 64<<10+1), 0o600)).To(Succeed())
		_, digest := verificationtest.Manifest("2.6.0")
		for file, want := range map[string]string{notJSON: "spec.signatureBundle: Invalid value", huge: "larger than 65536 bytes",
			filepath.Join(dir, "missing.json"): "no such file"} {
			r := run("publish", "router", "2.6.0", "-n", ns, "--image", "registry.example/router@"+digest, "--bundle", file)
			Expect(r.code).To(Equal(3), file)
			Expect(r.stderr).To(ContainSubstring(want))
		}
		err := k8sClient.Get(ctx, types.NamespacedName{Namespace: ns, Name: "router.stable.v2.6.0"}, &trainyardv1.ComponentRelease{})
		Expect(apierrors.IsNotFound(err)).To(BeTrue())
	})
})
