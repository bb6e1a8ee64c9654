package controllers_test

import (
	"crypto/sha256"
	"encoding/hex"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	trainyardv1 "github.com/trainyard-dev/trainyard/api/v1alpha1"
	"github.com/trainyard-dev/trainyard/controllers"
	"github.com/trainyard-dev/trainyard/internal/verification"
	"github.com/trainyard-dev/trainyard/internal/verification/verificationtest"
)

func pin(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// Issue 31 against a real API server: keys made in the test sign bundles
// offline; only a release whose bundle verifies under the TrustPolicy can
// be latest or recommended; a key removed or rotated in its Secret
// re-verifies, and latest moves back as after a retraction.
var _ = Describe("Verified releases", func() {
	var ns string
	BeforeEach(func() { ns = newNamespace() })

	verifiedOf := func(name string) func() string {
		return func() string {
			c := meta.FindStatusCondition(release(ns, name).Status.Conditions, trainyardv1.ConditionVerified)
			if c == nil {
				return "absent"
			}
			return string(c.Status) + " " + c.Reason
		}
	}
	verifications := func() float64 {
		families, err := ctrlmetrics.Registry.Gather()
		Expect(err).NotTo(HaveOccurred())
		for _, f := range families {
			if f.GetName() == "trainyard_release_verifications_total" {
				return f.GetMetric()[0].GetCounter().GetValue()
			}
		}
		return 0
	}

	It("makes the newest verified release latest, never an unsigned or wrongly signed one, and re-verifies when a key goes", func() {
		keyA, err := verificationtest.NewKey()
		Expect(err).NotTo(HaveOccurred())
		keyB, err := verificationtest.NewKey()
		Expect(err).NotTo(HaveOccurred())
		mallory, err := verificationtest.NewKey()
		Expect(err).NotTo(HaveOccurred())
		secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "cosign-pub"},
			Data: map[string][]byte{"a.pub": keyA.PEM(), "b.pub": keyB.PEM()}}
		Expect(k8sClient.Create(suiteCtx, secret)).To(Succeed())
		// Pinned: whoever can edit the Secret cannot swap a key in.
		tp := &trainyardv1.TrustPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "app-signed"},
			Spec: trainyardv1.TrustPolicySpec{Components: []string{"app"},
				Keys: []trainyardv1.SecretKeyRef{{Name: "cosign-pub", Key: "a.pub", SHA256: pin(keyA.PEM())}, {Name: "cosign-pub", Key: "b.pub", SHA256: pin(keyB.PEM())}}}}
		Expect(k8sClient.Create(suiteCtx, tp)).To(Succeed())

		signed := func(version string, key *verificationtest.Key) func(*trainyardv1.ComponentRelease) {
			return func(r *trainyardv1.ComponentRelease) {
				m, digest := verificationtest.Manifest(version)
				r.Spec.Image = "registry.example/app@" + digest
				if key != nil {
					b, err := key.Sign(m)
					Expect(err).NotTo(HaveOccurred())
					r.Spec.SignatureBundle = string(b)
				}
			}
		}
		publish(ns, "app", "stable", "1.1.0", 1, signed("1.1.0", keyB))
		publish(ns, "app", "stable", "1.2.0", 2, signed("1.2.0", keyA))
		Eventually(latestOf(ns, "app.stable")).Should(Equal("1.2.0"))
		Eventually(verifiedOf("app.stable.1.2.0")).Should(Equal("True Verified"))
		Expect(meta.FindStatusCondition(release(ns, "app.stable.1.2.0").Status.Conditions, trainyardv1.ConditionVerified).Message).
			To(Equal("signed by key cosign-pub/a.pub (TrustPolicy app-signed)"))

		// Unsigned, and signed by a key the policy does not trust: listed,
		// not latest, not recommended.
		publish(ns, "app", "stable", "1.3.0", 3, signed("1.3.0", nil))
		publish(ns, "app", "stable", "1.3.1", 4, signed("1.3.1", mallory))
		Eventually(verifiedOf("app.stable.1.3.0")).Should(Equal("False NoSignature"))
		Eventually(verifiedOf("app.stable.1.3.1")).Should(Equal("False NotTrusted"))
		Consistently(latestOf(ns, "app.stable"), time.Second).Should(Equal("1.2.0"))
		Eventually(eventReasons(ns, "app.stable.1.3.1")).Should(ContainElement("VerificationFailed"))
		// 1.2.0's signed image again, as 1.4.0: the signature is of the
		// image, not of a version, so it is not borrowed.
		publish(ns, "app", "stable", "1.4.0", 5, func(r *trainyardv1.ComponentRelease) {
			r.Spec.Image, r.Spec.SignatureBundle = release(ns, "app.stable.1.2.0").Spec.Image, release(ns, "app.stable.1.2.0").Spec.SignatureBundle
		})
		Eventually(verifiedOf("app.stable.1.4.0")).Should(Equal("False DigestReused"))
		policyStatus := func() trainyardv1.TrustPolicyStatus {
			got := &trainyardv1.TrustPolicy{}
			Expect(k8sClient.Get(suiteCtx, client.ObjectKeyFromObject(tp), got)).To(Succeed())
			return got.Status
		}
		Eventually(policyStatus).Should(And(HaveField("Verified", int32(2)), HaveField("Failed", int32(3)),
			HaveField("Conditions", ContainElement(And(HaveField("Type", trainyardv1.ConditionReady), HaveField("Status", metav1.ConditionTrue),
				HaveField("Message", "trusts 2 keys and 0 keyless identities"))))))
		checkIn(ns, "c1", comp("app", "stable", "1.1.0"))
		Eventually(appStatus(ns, "c1")).Should(And(HaveField("Recommended", "1.2.0"), HaveField("GetPath()", []string{"1.2.0"})))

		// Each digest was verified once: more reconciles verify nothing again.
		n := verifications()
		checkIn(ns, "c2", comp("app", "stable", "1.2.0"))
		Eventually(adoptionSummary(ns, "app.stable")).Should(Equal("1/2"))
		Consistently(verifications, 2*time.Second).Should(Equal(n))

		// Key A leaves the Secret: 1.2.0 no longer verifies, latest moves
		// back to 1.1.0 (signed by B), and c1 is recommended nothing newer.
		Expect(k8sClient.Get(suiteCtx, client.ObjectKeyFromObject(secret), secret)).To(Succeed())
		delete(secret.Data, "a.pub")
		Expect(k8sClient.Update(suiteCtx, secret)).To(Succeed())
		fakeClock.Step(11 * time.Second) // past the Secret's read TTL
		Eventually(verifiedOf("app.stable.1.2.0")).Should(Equal("False NotTrusted"))
		Eventually(latestOf(ns, "app.stable")).Should(Equal("1.1.0"))
		Eventually(recommended(ns, "c1")).Should(Equal(""))
		Eventually(policyStatus).Should(HaveField("Conditions", ContainElement(And(HaveField("Type", trainyardv1.ConditionReady),
			HaveField("Status", metav1.ConditionFalse), HaveField("Reason", "MaterialMissing"),
			HaveField("Message", "Secret cosign-pub has no key a.pub; verifying with the rest")))))

		// Rotation: A comes back under a new name in the policy; 1.2.0 verifies again.
		secret.Data["a-2027.pub"] = keyA.PEM()
		Expect(k8sClient.Update(suiteCtx, secret)).To(Succeed())
		Expect(k8sClient.Get(suiteCtx, client.ObjectKeyFromObject(tp), tp)).To(Succeed())
		patch := client.MergeFrom(tp.DeepCopy())
		tp.Spec.Keys[0].Key = "a-2027.pub"
		tp.Spec.Keys[1].SHA256 = "" // b.pub unpinned from here on
		Expect(k8sClient.Patch(suiteCtx, tp, patch)).To(Succeed())
		fakeClock.Step(11 * time.Second)
		Eventually(latestOf(ns, "app.stable")).Should(Equal("1.2.0"))
		Eventually(verifiedOf("app.stable.1.2.0")).Should(Equal("True Verified"))

		// Someone who can edit the Secret puts another key under the pinned
		// name: it is not trusted, and 1.2.0 is unverified again.
		Expect(k8sClient.Get(suiteCtx, client.ObjectKeyFromObject(secret), secret)).To(Succeed())
		secret.Data["a-2027.pub"] = mallory.PEM()
		Expect(k8sClient.Update(suiteCtx, secret)).To(Succeed())
		fakeClock.Step(11 * time.Second)
		Eventually(verifiedOf("app.stable.1.2.0")).Should(Equal("False NotTrusted"))
		Eventually(policyStatus).Should(HaveField("Conditions", ContainElement(HaveField("Message",
			ContainSubstring("Secret cosign-pub key a-2027.pub does not match its pinned sha256")))))

		// Without the policy, no release carries the condition.
		Expect(k8sClient.Delete(suiteCtx, tp)).To(Succeed())
		Eventually(verifiedOf("app.stable.1.3.0")).Should(Equal("absent"))
	})

	It("verifies keyless signatures by identity, under a trusted root from a Secret", func() {
		sigstore, err := verificationtest.NewSigstore()
		Expect(err).NotTo(HaveOccurred())
		const issuer = "https://token.actions.githubusercontent.com"
		Expect(k8sClient.Create(suiteCtx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "sigstore-root"},
			Data: map[string][]byte{"trusted_root.json": sigstore.Root}})).To(Succeed())
		Expect(k8sClient.Create(suiteCtx, &trainyardv1.TrustPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "app-keyless"},
			Spec: trainyardv1.TrustPolicySpec{Keyless: &trainyardv1.KeylessTrust{
				TrustedRoot: trainyardv1.SecretKeyRef{Name: "sigstore-root", Key: "trusted_root.json"},
				Identities:  []trainyardv1.OIDCIdentity{{Issuer: issuer, SubjectRegExp: `^https://github\.com/example/app/`}}},
				SignedTimestamps: trainyardv1.Threshold{Threshold: 1}}})).To(Succeed())
		keyless := func(version, identity string) func(*trainyardv1.ComponentRelease) {
			return func(r *trainyardv1.ComponentRelease) {
				m, digest := verificationtest.Manifest(version)
				b, err := sigstore.Sign(identity, issuer, m)
				Expect(err).NotTo(HaveOccurred())
				r.Spec.Image, r.Spec.SignatureBundle = "registry.example/app@"+digest, string(b)
			}
		}
		publish(ns, "app", "stable", "1.2.0", 1, keyless("1.2.0", "https://github.com/example/app/.github/workflows/release.yml@refs/tags/v1.2.0"))
		publish(ns, "app", "stable", "1.3.1", 2, keyless("1.3.1", "https://github.com/mallory/app/.github/workflows/release.yml@refs/tags/v1.3.1"))
		Eventually(verifiedOf("app.stable.1.2.0")).Should(Equal("True Verified"))
		Eventually(verifiedOf("app.stable.1.3.1")).Should(Equal("False IdentityMismatch"))
		Consistently(latestOf(ns, "app.stable"), time.Second).Should(Equal("1.2.0"))
	})

	It("fetches signatures from the registry when the policy opts in: cosign v3 referrers and v2 .sig tags", func() {
		reg := verificationtest.NewRegistry()
		DeferCleanup(reg.Close)
		k, err := verificationtest.NewKey()
		Expect(err).NotTo(HaveOccurred())
		Expect(k8sClient.Create(suiteCtx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "cosign-pub"},
			Data: map[string][]byte{"cosign.pub": k.PEM()}})).To(Succeed())
		Expect(k8sClient.Create(suiteCtx, &trainyardv1.TrustPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "app-registry"},
			Spec: trainyardv1.TrustPolicySpec{Keys: []trainyardv1.SecretKeyRef{{Name: "cosign-pub", Key: "cosign.pub"}},
				Registry: &trainyardv1.RegistrySignatures{Enabled: true, Timeout: &metav1.Duration{Duration: 5 * time.Second}}}})).To(Succeed())

		v3, manifest, err := reg.Push("app", "2.0.0")
		Expect(err).NotTo(HaveOccurred())
		b, err := k.Sign(manifest)
		Expect(err).NotTo(HaveOccurred())
		Expect(reg.Refer(v3, b)).To(Succeed())
		v2, _, err := reg.Push("app", "2.1.0")
		Expect(err).NotTo(HaveOccurred())
		payload, sig, err := k.SignSimple(v2.Context().String(), v2.DigestStr())
		Expect(err).NotTo(HaveOccurred())
		Expect(reg.SigTag(v2, payload, sig)).To(Succeed())
		unsigned, _, err := reg.Push("app", "2.2.0")
		Expect(err).NotTo(HaveOccurred())

		for v, ref := range map[string]string{"2.0.0": v3.String(), "2.1.0": v2.String(), "2.2.0": unsigned.String()} {
			publish(ns, "app", "stable", v, 1, func(r *trainyardv1.ComponentRelease) { r.Spec.Image = ref })
		}
		Eventually(verifiedOf("app.stable.2.0.0")).Should(Equal("True Verified"))
		Eventually(verifiedOf("app.stable.2.1.0")).Should(Equal("True Verified"))
		Eventually(verifiedOf("app.stable.2.2.0")).Should(Equal("False NoSignature"))
		Eventually(latestOf(ns, "app.stable")).Should(Equal("2.1.0"))
	})

	It("refuses to fetch from loopback, link-local and the like by default: an image's registry is whatever a publisher wrote", func() {
		reg := verificationtest.NewRegistry()
		DeferCleanup(reg.Close)
		ref, _, err := reg.Push("app", "1.0.0")
		Expect(err).NotTo(HaveOccurred())
		_, err = verification.Fetch(suiteCtx, ref.String(), 2*time.Second, nil, controllers.RegistryTransport())
		Expect(err).To(MatchError(ContainSubstring("loopback addresses are not registries trainyard fetches signatures from")))
	})

	It("makes a release satisfy every policy that covers it: a looser one does not weaken a stricter one", func() {
		keyA, err := verificationtest.NewKey()
		Expect(err).NotTo(HaveOccurred())
		keyB, err := verificationtest.NewKey()
		Expect(err).NotTo(HaveOccurred())
		Expect(k8sClient.Create(suiteCtx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "keys"},
			Data: map[string][]byte{"a.pub": keyA.PEM(), "b.pub": keyB.PEM()}})).To(Succeed())
		for name, keys := range map[string][]string{"a-loose": {"a.pub", "b.pub"}, "b-strict": {"b.pub"}} {
			tp := &trainyardv1.TrustPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
			for _, k := range keys {
				tp.Spec.Keys = append(tp.Spec.Keys, trainyardv1.SecretKeyRef{Name: "keys", Key: k})
			}
			Expect(k8sClient.Create(suiteCtx, tp)).To(Succeed())
		}
		for v, k := range map[string]*verificationtest.Key{"1.1.0": keyB, "1.2.0": keyA} {
			publish(ns, "app", "stable", v, 1, func(r *trainyardv1.ComponentRelease) {
				m, digest := verificationtest.Manifest(v)
				b, err := k.Sign(m)
				Expect(err).NotTo(HaveOccurred())
				r.Spec.Image, r.Spec.SignatureBundle = "registry.example/app@"+digest, string(b)
			})
		}
		Eventually(verifiedOf("app.stable.1.2.0")).Should(Equal("False NotTrusted"))
		Eventually(verifiedOf("app.stable.1.1.0")).Should(Equal("True Verified"))
		Expect(meta.FindStatusCondition(release(ns, "app.stable.1.1.0").Status.Conditions, trainyardv1.ConditionVerified).Message).
			To(Equal("signed by key keys/b.pub (TrustPolicy a-loose, b-strict)"))
		Eventually(latestOf(ns, "app.stable")).Should(Equal("1.1.0"))
	})
})
