package webhook_test

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/controller-runtime/pkg/client"

	trainyardv1 "github.com/trainyard-dev/trainyard/api/v1alpha1"
	"github.com/trainyard-dev/trainyard/internal/testenv"
)

// Issue 31: the documented policy applies; a mistaken one is refused by the
// schema or the webhook, naming the field; a release it covers must name
// its image by digest.
var _ = Describe("trust policies through the webhook and the schema", func() {
	var ns string
	BeforeEach(func() { ns = namespace() })

	example := func() *trainyardv1.TrustPolicy {
		raw, err := os.ReadFile(filepath.Join(testenv.RepoRoot(), "docs", "examples", "trustpolicy.yaml"))
		Expect(err).NotTo(HaveOccurred())
		tp := &trainyardv1.TrustPolicy{}
		Expect(utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(raw), 4096).Decode(tp)).To(Succeed())
		tp.Namespace = ns
		return tp
	}

	It("accepts docs/examples/trustpolicy.yaml as it is", func() {
		tp := example()
		Expect(k8sClient.Create(ctx, tp)).To(Succeed())
		got := &trainyardv1.TrustPolicy{}
		Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(tp), got)).To(Succeed())
		Expect(got.Spec.Keyless.Identities[0].Issuer).To(Equal("https://token.actions.githubusercontent.com"))
	})

	DescribeTable("refuses, naming the field, and stores nothing",
		func(change func(*trainyardv1.TrustPolicy), want string) {
			tp := example()
			change(tp)
			err := k8sClient.Create(ctx, tp)
			Expect(apierrors.IsInvalid(err)).To(BeTrue(), "%v", err)
			Expect(err.Error()).To(ContainSubstring(want))
			Expect(apierrors.IsNotFound(k8sClient.Get(ctx, client.ObjectKeyFromObject(tp), &trainyardv1.TrustPolicy{}))).To(BeTrue())
		},
		Entry("a subject regexp that does not compile (webhook)", func(tp *trainyardv1.TrustPolicy) {
			tp.Spec.Keyless.Identities[0].SubjectRegExp = "^(unclosed"
		}, "spec.keyless.identities[0].subjectRegExp: Invalid value"),
		Entry("keyless with no time source (schema)", func(tp *trainyardv1.TrustPolicy) { tp.Spec.TransparencyLog.Threshold = 0 },
			"keyless signatures need a time source"),
		Entry("nothing trusted (schema)", func(tp *trainyardv1.TrustPolicy) { tp.Spec.Keys, tp.Spec.Keyless = nil, nil },
			"trust keys, keyless identities, or both"),
		Entry("both subject and subjectRegExp (schema)", func(tp *trainyardv1.TrustPolicy) {
			tp.Spec.Keyless.Identities[0].Subject = "https://github.com/example/router"
		}, "exactly one of subject and subjectRegExp"),
		Entry("a Secret name that is not one (webhook)", func(tp *trainyardv1.TrustPolicy) { tp.Spec.Keys[0].Name = "Cosign_Pub" },
			`spec.keys[0].name: Invalid value: "Cosign_Pub"`),
		Entry("a registry timeout over a minute (webhook)", func(tp *trainyardv1.TrustPolicy) {
			tp.Spec.Registry = &trainyardv1.RegistrySignatures{Enabled: true, Timeout: &metav1.Duration{Duration: 5 * 60e9}}
		}, "spec.registry.timeout: Invalid value"),
		Entry("the transparency-log requirement left out (schema)", func(tp *trainyardv1.TrustPolicy) {
			tp.Spec.TransparencyLog.Threshold = 9
		}, "spec.transparencyLog.threshold"),
	)

	It("makes releases it covers name their image by digest; others, and retractions of older ones, are as before", func() {
		digest := "sha256:" + strings.Repeat("ab", 32)
		old := &trainyardv1.ComponentRelease{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: trainyardv1.ReleaseName("router", "stable", "1.0.0")},
			Spec: trainyardv1.ComponentReleaseSpec{Component: "router", Train: "stable", Version: "1.0.0", Image: "registry.example/router:1.0.0"}}
		Expect(k8sClient.Create(ctx, old)).To(Succeed())
		Expect(k8sClient.Create(ctx, example())).To(Succeed())

		release := func(version, image, bundle string) *trainyardv1.ComponentRelease {
			return &trainyardv1.ComponentRelease{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: trainyardv1.ReleaseName("router", "stable", version)},
				Spec: trainyardv1.ComponentReleaseSpec{Component: "router", Train: "stable", Version: version, Image: image, SignatureBundle: bundle}}
		}
		// The webhook reads policies from the manager's cache: wait for it.
		Eventually(func() error {
			return k8sClient.Create(ctx, release("1.1.0", "registry.example/router:1.1.0", ""), client.DryRunAll)
		}).Should(MatchError(ContainSubstring(`spec.image: Invalid value: "registry.example/router:1.1.0": TrustPolicy router-signed covers router on stable: name the image by its digest`)))
		for _, tc := range []struct{ image, bundle, want string }{
			{"", "", "spec.image: Required value: TrustPolicy router-signed covers router on stable"},
			{"registry.example/router@" + digest, "{not json", "spec.signatureBundle: Invalid value"},
			{"registry.example/router@" + digest, `{"mediaType":"text/plain"}`, "not a Sigstore bundle"},
		} {
			r := release("1.1.0", tc.image, tc.bundle)
			err := k8sClient.Create(ctx, r)
			Expect(apierrors.IsInvalid(err)).To(BeTrue(), "%v", err)
			Expect(err.Error()).To(ContainSubstring(tc.want))
			Expect(apierrors.IsNotFound(k8sClient.Get(ctx, client.ObjectKeyFromObject(r), &trainyardv1.ComponentRelease{}))).To(BeTrue())
		}
		Expect(k8sClient.Create(ctx, release("1.1.0", "registry.example/router@"+digest,
			`{"mediaType":"application/vnd.dev.sigstore.bundle.v0.3+json"}`))).To(Succeed())

		// Another train is not covered; the older release can be retracted.
		other := release("1.1.0", "registry.example/router:1.1.0", "")
		other.Name, other.Spec.Train = trainyardv1.ReleaseName("router", "beta", "1.1.0"), "beta"
		Expect(k8sClient.Create(ctx, other)).To(Succeed())
		patch := client.MergeFrom(old.DeepCopy())
		old.Spec.Retracted = &trainyardv1.Retraction{Reason: "unsigned"}
		Expect(k8sClient.Patch(ctx, old, patch)).To(Succeed())
		// A new image on it is checked.
		patch = client.MergeFrom(old.DeepCopy())
		old.Spec.Image = "registry.example/router:1.0.0-fixed"
		Expect(k8sClient.Patch(ctx, old, patch)).To(MatchError(ContainSubstring("name the image by its digest")))
	})
})
