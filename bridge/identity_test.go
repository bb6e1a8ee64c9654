package bridge_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client"

	trainyardv1 "github.com/trainyard-dev/trainyard/api/v1alpha1"
	"github.com/trainyard-dev/trainyard/bridge"
	"github.com/trainyard-dev/trainyard/internal/credential"
)

// Cluster identity (issue 14): a registration token registers a cluster and
// gets it a credential of its own; the cluster's later check-ins present it.

// register checks cluster id in with a registration token and returns the
// credential the answer carries.
func register(base, token, id string) string {
	GinkgoHelper()
	r := checkInAs(base, token, id, "1.0.0")
	Expect(r.code).To(Equal(http.StatusOK), "%s", r.body)
	cred := r.header.Get(bridge.HeaderCredential)
	Expect(cred).To(HavePrefix("tyc."))
	Expect(r.header.Get("Cache-Control")).To(Equal("no-store"))
	Expect(string(r.body)).NotTo(ContainSubstring(cred), "the credential is in a header only")
	usedTokens.add(cred)
	return cred
}

// annotate sets (or, with "", removes) an annotation of cluster id's report,
// as `kubectl annotate` does.
func annotate(ns, id, key, value string) {
	GinkgoHelper()
	var v any = value
	if value == "" {
		v = nil
	}
	patch, _ := jsonMarshal(map[string]any{"metadata": map[string]any{"annotations": map[string]any{key: v}}})
	Expect(k8sClient.Patch(context.Background(), &trainyardv1.ClusterReport{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: trainyardv1.ClusterReportName(id)}},
		client.RawPatch(types.MergePatchType, patch))).To(Succeed())
}

// reissue re-opens cluster id of ns for one registration as `kubectl
// trainyard cluster reissue` does (plugin/cluster.go; its own suite tests
// that), valid until expires, waits until the replicas' caches have it, and
// returns the token.
func reissue(ns, id string, expires time.Time, replicas ...*manager) string {
	GinkgoHelper()
	token, hash := credential.New(credential.ReissuePrefix)
	usedTokens.add(token)
	patch, _ := jsonMarshal(map[string]any{"metadata": map[string]any{"annotations": map[string]any{
		trainyardv1.AnnotationReissueHash: hash, trainyardv1.AnnotationReissueExpires: expires.UTC().Format(time.RFC3339)}}})
	Expect(k8sClient.Patch(context.Background(), &trainyardv1.ClusterReport{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: trainyardv1.ClusterReportName(id)}},
		client.RawPatch(types.MergePatchType, patch))).To(Succeed())
	for _, r := range replicas {
		Eventually(func(g Gomega) {
			rep := &trainyardv1.ClusterReport{}
			g.Expect(r.cache.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: trainyardv1.ClusterReportName(id)}, rep)).To(Succeed())
			g.Expect(rep.Annotations).To(HaveKeyWithValue(trainyardv1.AnnotationReissueHash, hash))
		}).Should(Succeed())
	}
	return token
}

func registrationSecret(ns string) *corev1.Secret {
	GinkgoHelper()
	s := &corev1.Secret{}
	Expect(k8sClient.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: "registration"}, s)).To(Succeed())
	return s
}

var _ = Describe("cluster identity", func() {
	var (
		ns string
		m  *manager
	)
	BeforeEach(func() {
		ns = namespace()
		m = tokenMode(ns, func(o *bridge.Options) { o.CredentialOverlap = 3 * time.Second })
		usedTokens.add("token-a", "token-b")
	})

	It("exchanges a registration token for the cluster's own credential, stored only as a hash, and counts the token's use", func() {
		cred := register(m.url, "token-a", clusterID)
		rep := report(ns, clusterID)
		Expect(rep.Annotations).To(HaveKey(trainyardv1.AnnotationCredentialHash))
		Expect(rep.Annotations).To(HaveKeyWithValue(trainyardv1.AnnotationRegisteredWith, "registration/fleet-a"))
		for _, v := range rep.Annotations {
			Expect(v).NotTo(ContainSubstring(strings.TrimPrefix(cred, "tyc.")))
		}
		// Later check-ins present the credential; nothing new is issued.
		r := checkInAs(m.url, cred, clusterID, "1.1.0")
		Expect(r.code).To(Equal(http.StatusOK))
		Expect(r.header.Get(bridge.HeaderCredential)).To(BeEmpty())
		Expect(report(ns, clusterID).Spec.Components[0].Version).To(Equal("1.1.0"))
		// The registration token registers no cluster twice.
		r = checkInAs(m.url, "token-a", clusterID, "1.0.0")
		Expect(r.code).To(Equal(http.StatusForbidden))
		Expect(r.errorOf().Message).To(ContainSubstring("is registered: check in with its credential"))

		// The token's expiry (stamped at first read), uses and last use are
		// on its Secret, for `kubectl describe secret`.
		// (Counted in memory, written every 2 s: one patch, not one per
		// registration.)
		Eventually(func() map[string]string { return registrationSecret(ns).Annotations }).
			Should(HaveKeyWithValue("uses.trainyard.dev/fleet-a", "1"))
		sec := registrationSecret(ns)
		Expect(sec.Annotations).To(HaveKey("last-used.trainyard.dev/fleet-a"))
		expires, err := time.Parse(time.RFC3339, sec.Annotations["expires.trainyard.dev/fleet-a"])
		Expect(err).NotTo(HaveOccurred())
		Expect(expires).To(BeTemporally("~", time.Now().Add(720*time.Hour), time.Minute))
		Expect(sec.Annotations).NotTo(HaveKey("uses.trainyard.dev/fleet-b"))

		// The doctor upload presents the credential too.
		dump := `{"workflow":{"id":"` + clusterID + `","components":[]},"nodes":[],"namespaces":[]}`
		Expect(do(http.MethodPost, m.url+"/v3/doctor/d1", "application/json", dump, bearerAuth(cred)).code).To(Equal(http.StatusOK))
		Expect(do(http.MethodPost, m.url+"/v3/doctor/d1", "application/json", dump, bearerAuth("token-a")).code).To(Equal(http.StatusForbidden))
	})

	It("charges a cluster's invalid check-ins before decoding them: a flood of them is refused at the door (issue 27 #11)", func() {
		cred := register(m.url, "token-a", clusterID)
		other := register(m.url, "token-a", "c-2")
		before := report(ns, clusterID)
		codes := map[int]int{}
		start := time.Now()
		for range 120 {
			r := do(http.MethodPost, m.url+"/v3/clusters", "application/json",
				`{"id":"`+clusterID+`","components":[{"component":{}}]}`, bearerAuth(cred))
			codes[r.code]++
		}
		elapsed := time.Since(start)
		// The failure budget: a burst of 20, then 1 a second.
		Expect(codes[http.StatusUnprocessableEntity]).To(BeNumerically("<=", 20+int(elapsed.Seconds())+1), "%v in %s", codes, elapsed)
		Expect(codes[http.StatusTooManyRequests]).To(BeNumerically(">=", 120-21-int(elapsed.Seconds())-1), "%v in %s", codes, elapsed)
		Expect(codes).To(HaveLen(2), "422 or 429, nothing else: %v", codes)
		// Nothing stored (the status the controller writes may move on).
		after := report(ns, clusterID)
		Expect(after.Spec).To(Equal(before.Spec))
		Expect(after.Annotations).To(Equal(before.Annotations))
		// Another cluster of the same fleet checks in as ever.
		Expect(checkInAs(m.url, other, "c-2", "1.1.0").code).To(Equal(http.StatusOK))
	})

	It("lets one of two replicas' racing registrations of a revoked cluster win, and the other be refused (issue 27 #2)", func() {
		cred0 := register(m.url, "token-a", "raced")
		// Two replicas whose first two identity writes of a report wait for
		// each other: each has decided on the same stored report.
		var arrived atomic.Int64
		release := make(chan struct{})
		wrapAPI = func(c client.Client) client.Client {
			return patchHook{Client: c, hook: func(obj client.Object, p client.Patch) {
				data, _ := p.Data(obj)
				if _, ok := obj.(*trainyardv1.ClusterReport); !ok || !strings.Contains(string(data), trainyardv1.AnnotationCredentialHash) {
					return
				}
				if arrived.Add(1) == 2 {
					close(release)
				}
				select {
				case <-release:
				case <-time.After(10 * time.Second):
				}
			}}
		}
		DeferCleanup(func() { wrapAPI = nil })
		replica := func(o *bridge.Options) {
			// The polls for the revocation below must not spend the failure budget.
			o.CheckInAuth, o.RegistrationSecret, o.FailedAuthBurst = bridge.CheckInToken, "registration", 1000
		}
		r1, r2 := startManager(ns, time.Minute, replica), startManager(ns, time.Minute, replica)
		DeferCleanup(func() { r1.stop(); r2.stop() })
		annotate(ns, "raced", trainyardv1.AnnotationCredentialRevoked, "stolen")
		for _, r := range []*manager{r1, r2} {
			Eventually(func() int { return checkInAs(r.url, cred0, "raced", "1.0.0").code }).Should(Equal(http.StatusUnauthorized))
		}
		Expect(arrived.Load()).To(BeZero())
		token := reissue(ns, "raced", time.Now().Add(time.Hour), r1, r2)

		answers := make([]response, 2)
		var wg sync.WaitGroup
		for i, r := range []*manager{r1, r2} {
			wg.Go(func() {
				defer GinkgoRecover()
				answers[i] = checkInAs(r.url, token, "raced", "1.0.0")
			})
		}
		wg.Wait()
		Expect(arrived.Load()).To(BeNumerically(">=", 2), "both replicas reached their write")
		codes := []int{answers[0].code, answers[1].code}
		// The loser decides again on the report as stored: its single-use
		// token is spent.
		Expect(codes).To(ConsistOf(http.StatusOK, http.StatusUnauthorized), "%s\n%s", answers[0].body, answers[1].body)
		winner := answers[0]
		if winner.code != http.StatusOK {
			winner = answers[1]
		}
		cred := winner.header.Get(bridge.HeaderCredential)
		Expect(cred).To(HavePrefix("tyc."))
		usedTokens.add(cred)
		sum := sha256.Sum256([]byte(cred))
		Expect(report(ns, "raced").Annotations).To(HaveKeyWithValue(trainyardv1.AnnotationCredentialHash, hex.EncodeToString(sum[:])),
			"the credential answered is the one stored")
		Eventually(func() int { return checkInAs(m.url, cred, "raced", "1.1.0").code }).Should(Equal(http.StatusOK))
	})

	It("gives a registration whose answer was lost a fresh credential, within the window, and never once the credential was used (issue 27 #1)", func() {
		lost := register(m.url, "token-a", "lossy") // the agent never stored it: a timeout, an Ingress 504
		// The agent retries after its timeout, by when the bridge's cache has
		// the report (a registration that meets the report only at its create
		// is concurrent with the other, and refused).
		Eventually(func() error {
			return m.cache.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: "lossy"}, &trainyardv1.ClusterReport{})
		}).Should(Succeed())
		again := register(m.url, "token-a", "lossy")
		Expect(again).NotTo(Equal(lost))
		Eventually(func() int { return checkInAs(m.url, lost, "lossy", "1.0.0").code }).Should(Equal(http.StatusUnauthorized),
			"the unused credential stops working")
		Expect(report(ns, "lossy").Annotations).To(HaveKey(trainyardv1.AnnotationCredentialUnused))
		// Only the token that registered it.
		Expect(checkInAs(m.url, "token-b", "lossy", "1.0.0").code).To(Equal(http.StatusForbidden))

		// Its first use ends the window at once.
		Expect(checkInAs(m.url, again, "lossy", "1.0.0").code).To(Equal(http.StatusOK))
		Expect(report(ns, "lossy").Annotations).NotTo(HaveKey(trainyardv1.AnnotationCredentialUnused))
		r := checkInAs(m.url, "token-a", "lossy", "1.0.0")
		Expect(r.code).To(Equal(http.StatusForbidden), string(r.body))
		Expect(r.header.Get(bridge.HeaderCredential)).To(BeEmpty())
		Expect(checkInAs(m.url, again, "lossy", "1.1.0").code).To(Equal(http.StatusOK))
	})

	It("closes the lost-answer window after LostAnswerWindow", func() {
		ns := namespace()
		clk := clocktesting.NewFakeClock(time.Now())
		m := tokenMode(ns, func(o *bridge.Options) { o.Clock = clk })
		register(m.url, "token-a", "late")
		clk.Step(15*time.Minute + time.Second)
		r := checkInAs(m.url, "token-a", "late", "1.0.0")
		Expect(r.code).To(Equal(http.StatusForbidden), string(r.body))
		Expect(r.errorOf().Message).To(ContainSubstring("is registered: check in with its credential"))
	})

	It("answers a cluster's multi-get with its recommended target, others with the latest", func() {
		cred := register(m.url, "token-a", clusterID) // runs comp-0 1.0.0
		for _, v := range []string{"1.0.0", "1.1.0", "2.0.0"} {
			rel := &trainyardv1.ComponentRelease{
				ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: trainyardv1.ReleaseName("comp-0", "stable", v)},
				Spec:       trainyardv1.ComponentReleaseSpec{Component: "comp-0", Train: "stable", Version: v},
			}
			if v == "2.0.0" {
				rel.Spec.Risks = []trainyardv1.UpgradeRisk{{Name: "needs-ipv6", Message: "2.0 needs IPv6",
					Rule: `cluster.properties.ipv6 != "true"`}}
			}
			Expect(k8sClient.Create(context.Background(), rel)).To(Succeed())
		}
		// The risk cannot be evaluated (no such property): 2.0 is held back.
		Eventually(func() string {
			for _, c := range report(ns, clusterID).Status.Components {
				if c.Name == "comp-0" {
					return c.Recommended
				}
			}
			return ""
		}).Should(Equal("1.1.0"))
		ask := `{"data":[{"component":{"name":"comp-0"},"version":{"train":"stable","version":"1.0.0"}}]}`
		var answer struct {
			Data []struct {
				UpdateAvailable string                   `json:"updateAvailable"`
				Version         struct{ Version string } `json:"version"`
			} `json:"data"`
		}
		// The bridge answers from its own cache, which may be a moment
		// behind the API server's status just read.
		Eventually(func(g Gomega) {
			r := do(http.MethodPost, m.url+"/v3/versions/latest", "application/json", ask, bearerAuth(cred))
			g.Expect(r.code).To(Equal(http.StatusOK), "%s", r.body)
			answer.Data = nil
			r.json(&answer)
			g.Expect(answer.Data).To(HaveLen(1))
			g.Expect(answer.Data[0].Version.Version).To(Equal("2.0.0"), "the latest release is what it was")
			g.Expect(answer.Data[0].UpdateAvailable).To(Equal("1.1.0"), "the cluster is told its recommended target")
		}).Should(Succeed())
		r := post(m.url+"/v3/versions/latest", ask)
		Expect(r.code).To(Equal(http.StatusOK), "%s", r.body)
		answer.Data = nil
		r.json(&answer)
		Expect(answer.Data[0].UpdateAvailable).To(Equal("2.0.0"), "an anonymous caller gets the latest: %s", r.body)
		// Another cluster's answer is its own: with no report status for
		// comp-0 it gets the latest.
		other := register(m.url, "token-a", "cluster-other")
		answer.Data = nil
		do(http.MethodPost, m.url+"/v3/versions/latest", "application/json",
			`{"data":[{"component":{"name":"comp-0"},"version":{"train":"stable","version":"0.9.0"}}]}`, bearerAuth(other)).json(&answer)
		Expect(answer.Data[0].UpdateAvailable).To(Equal("2.0.0"))
	})

	It("keeps a cluster from writing another's report, with its credential or the shared registration token", func() {
		credA := register(m.url, "token-a", "cluster-a")
		credB := register(m.url, "token-a", "cluster-b")
		Expect(credB).NotTo(Equal(credA))
		// Both present their credentials, as trainyard agent does at once
		// (until then, a lost answer may be retried with the token).
		Expect(checkInAs(m.url, credA, "cluster-a", "1.0.0").code).To(Equal(http.StatusOK))
		Expect(checkInAs(m.url, credB, "cluster-b", "1.0.0").code).To(Equal(http.StatusOK))
		r := checkInAs(m.url, credB, "cluster-a", "6.6.6")
		Expect(r.code).To(Equal(http.StatusForbidden))
		Expect(r.errorOf().Message).To(Equal("this credential is cluster cluster-b's; it cannot check in as cluster-a"))
		Expect(checkInAs(m.url, "token-a", "cluster-a", "6.6.6").code).To(Equal(http.StatusForbidden))
		Expect(checkInAs(m.url, "token-b", "cluster-a", "6.6.6").code).To(Equal(http.StatusForbidden))
		dump := `{"workflow":{"id":"cluster-a","components":[]},"nodes":[],"namespaces":[]}`
		Expect(do(http.MethodPost, m.url+"/v3/doctor/d2", "application/json", dump, bearerAuth(credB)).code).To(Equal(http.StatusForbidden))
		Expect(report(ns, "cluster-a").Spec.Components[0].Version).To(Equal("1.0.0"))
		Expect(checkInAs(m.url, credA, "cluster-a", "1.0.1").code).To(Equal(http.StatusOK))

		// A made-up credential is a 401 and counts as a failed attempt.
		r = checkInAs(m.url, "tyc.made-up", "cluster-a", "6.6.6")
		Expect(r.code).To(Equal(http.StatusUnauthorized))
		Expect(r.errorOf().Message).To(ContainSubstring("unknown cluster credential"))
	})

	It("lets no registration token take an unbound report unless legacy mode is on", func() {
		// Reported before identities (kubectl, GitOps, open mode): no binding.
		Expect(k8sClient.Create(context.Background(), &trainyardv1.ClusterReport{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: trainyardv1.ClusterReportName("unbound")},
			Spec:       trainyardv1.ClusterReportSpec{ClusterID: "unbound"},
		})).To(Succeed())
		Eventually(func() int { return checkInAs(m.url, "token-a", "unbound", "1.0.0").code }).Should(Equal(http.StatusForbidden))
		r := checkInAs(m.url, "token-a", "unbound", "1.0.0")
		Expect(r.errorOf().Message).To(ContainSubstring("a registration token cannot take it over"))

		m.stop()
		m = tokenMode(namespace(), legacy)
		Expect(k8sClient.Create(context.Background(), &trainyardv1.ClusterReport{
			ObjectMeta: metav1.ObjectMeta{Namespace: nsOf(m), Name: trainyardv1.ClusterReportName("unbound")},
			Spec:       trainyardv1.ClusterReportSpec{ClusterID: "unbound"},
		})).To(Succeed())
		Eventually(func() int { return checkInAs(m.url, "token-a", "unbound", "1.0.0").code }).Should(Equal(http.StatusOK))
		// Legacy: the token it is bound to keeps checking it in.
		Expect(checkInAs(m.url, "token-a", "unbound", "1.0.1").code).To(Equal(http.StatusOK))
		Expect(checkInAs(m.url, "token-b", "unbound", "1.0.1").code).To(Equal(http.StatusForbidden))

		// Revoked, legacy mode too needs a reissue token (issue 27 #4); a
		// Deis agent, which stores no credential, then keeps checking in
		// with it as with the token it was bound to.
		annotate(nsOf(m), "unbound", trainyardv1.AnnotationCredentialRevoked, "stolen")
		Eventually(func() int { return checkInAs(m.url, "token-a", "unbound", "1.0.2").code }).Should(Equal(http.StatusForbidden))
		token := reissue(nsOf(m), "unbound", time.Now().Add(time.Hour), m)
		Expect(checkInAs(m.url, token, "unbound", "1.0.2").code).To(Equal(http.StatusOK))
		Eventually(func() int { return checkInAs(m.url, token, "unbound", "1.0.3").code }).Should(Equal(http.StatusOK))
		Expect(checkInAs(m.url, "token-a", "unbound", "1.0.3").code).To(Equal(http.StatusForbidden), "bound to the reissue token now")
		Expect(report(nsOf(m), "unbound").Spec.Components[0].Version).To(Equal("1.0.3"))
	})

	It("is unaffected when the registration token is rotated; the old token then registers nothing", func() {
		credA := register(m.url, "token-a", "cluster-a")
		credB := register(m.url, "token-a", "cluster-b")
		sec := registrationSecret(ns)
		sec.Data = map[string][]byte{"fleet-t2": []byte("token-t2")}
		usedTokens.add("token-t2")
		Expect(k8sClient.Update(context.Background(), sec)).To(Succeed())
		// The new token registers within the bridge's re-read of the Secret;
		// the registered clusters never see a refusal meanwhile.
		Eventually(func() int {
			Expect(checkInAs(m.url, credA, "cluster-a", "1.0.0").code).To(Equal(http.StatusOK))
			Expect(checkInAs(m.url, credB, "cluster-b", "1.0.0").code).To(Equal(http.StatusOK))
			return checkInAs(m.url, "token-t2", "cluster-c", "1.0.0").code
		}, 20*time.Second, 500*time.Millisecond).Should(Equal(http.StatusOK))
		r := checkInAs(m.url, "token-a", "cluster-d", "1.0.0")
		Expect(r.code).To(Equal(http.StatusUnauthorized))
		Expect(report(ns, "cluster-d")).To(BeNil())
	})

	It("revokes one cluster's credential at once; only a reissue token for that cluster registers it again, once (issue 27 #4)", func() {
		cred := register(m.url, "token-a", clusterID)
		other := register(m.url, "token-a", "other")
		annotate(ns, clusterID, trainyardv1.AnnotationCredentialRevoked, "2026-12-02 lost laptop")
		Eventually(func() int { return checkInAs(m.url, cred, clusterID, "1.0.0").code }, 5*time.Second, 100*time.Millisecond).
			Should(Equal(http.StatusUnauthorized))
		r := checkInAs(m.url, cred, clusterID, "1.0.0")
		Expect(r.errorOf().Message).To(ContainSubstring("is revoked"))
		Expect(checkInAs(m.url, other, "other", "1.0.0").code).To(Equal(http.StatusOK))
		Expect(checkInAs(m.url, "not-a-token", clusterID, "1.0.0").code).To(Equal(http.StatusUnauthorized))

		// The registration token that sits next to the stolen credential
		// does not take the cluster back; nothing is stored.
		before := report(ns, clusterID)
		r = checkInAs(m.url, "token-a", clusterID, "1.0.0")
		Expect(r.code).To(Equal(http.StatusForbidden), "%s", r.body)
		Expect(r.errorOf().Message).To(ContainSubstring("kubectl trainyard cluster reissue " + clusterID))
		Expect(r.header.Get(bridge.HeaderCredential)).To(BeEmpty())
		Expect(report(ns, clusterID).Annotations).To(Equal(before.Annotations))

		// A reissue token is bound to its cluster, and expires.
		otherToken := reissue(ns, "other", time.Now().Add(time.Hour), m)
		r = checkInAs(m.url, otherToken, clusterID, "1.0.0")
		Expect(r.code).To(Equal(http.StatusUnauthorized), "another cluster's reissue token: %s", r.body)
		Expect(r.errorOf().Message).To(ContainSubstring("has no open reissue token"))
		expired := reissue(ns, clusterID, time.Now().Add(-time.Second), m)
		r = checkInAs(m.url, expired, clusterID, "1.0.0")
		Expect(r.code).To(Equal(http.StatusUnauthorized), "%s", r.body)
		Expect(r.errorOf().Message).To(ContainSubstring("expired at"))
		tooLong := reissue(ns, clusterID, time.Now().Add(48*time.Hour), m)
		Expect(checkInAs(m.url, tooLong, clusterID, "1.0.0").errorOf().Message).To(ContainSubstring("beyond the longest lifetime"))
		Expect(report(ns, clusterID).Annotations).To(HaveKey(trainyardv1.AnnotationCredentialRevoked), "no refusal registered it")

		// The newest token made registers it, once.
		stale := reissue(ns, clusterID, time.Now().Add(time.Hour), m)
		token := reissue(ns, clusterID, time.Now().Add(time.Hour), m)
		r = checkInAs(m.url, stale, clusterID, "1.0.0")
		Expect(r.code).To(Equal(http.StatusUnauthorized), "a token replaced by a newer one: %s", r.body)
		fresh := register(m.url, token, clusterID)
		Expect(fresh).NotTo(Equal(cred))
		rep := report(ns, clusterID)
		Expect(rep.Annotations).NotTo(HaveKey(trainyardv1.AnnotationCredentialRevoked))
		Expect(rep.Annotations).NotTo(HaveKey(trainyardv1.AnnotationReissueHash))
		Expect(rep.Annotations).NotTo(HaveKey(trainyardv1.AnnotationReissueExpires))
		Expect(rep.Annotations).To(HaveKeyWithValue(trainyardv1.AnnotationRegisteredWith, "reissue-token"))
		r = checkInAs(m.url, token, clusterID, "1.0.0")
		Expect(r.code).To(Equal(http.StatusUnauthorized), "single use: %s", r.body)
		Expect(r.header.Get(bridge.HeaderCredential)).To(BeEmpty())
		Eventually(func() int { return checkInAs(m.url, cred, clusterID, "1.0.0").code }).Should(Equal(http.StatusUnauthorized))
		Expect(checkInAs(m.url, fresh, clusterID, "1.0.0").code).To(Equal(http.StatusOK))
		Expect(report(ns, clusterID).Annotations[trainyardv1.AnnotationCredentialHash]).To(Equal(rep.Annotations[trainyardv1.AnnotationCredentialHash]),
			"the refused reissue changed nothing")

		// A reissue token registers nothing but its cluster's report.
		r = checkInAs(m.url, reissue(ns, "other", time.Now().Add(time.Hour), m), "brand-new", "1.0.0")
		Expect(r.code).To(Equal(http.StatusUnauthorized), "%s", r.body)
		Expect(report(ns, "brand-new")).To(BeNil())
	})

	It("rotates a credential with an overlap, so the agent rolls without a failed check-in", func() {
		old := register(m.url, "token-a", clusterID)
		annotate(ns, clusterID, trainyardv1.AnnotationRotateCredential, "now")
		var fresh string
		Eventually(func() string {
			r := checkInAs(m.url, old, clusterID, "1.0.0")
			Expect(r.code).To(Equal(http.StatusOK))
			fresh = r.header.Get(bridge.HeaderCredential)
			return fresh
		}).Should(HavePrefix("tyc."))
		usedTokens.add(fresh)
		Expect(report(ns, clusterID).Annotations).NotTo(HaveKey(trainyardv1.AnnotationRotateCredential))
		// Both work during the overlap (3 s here, 1 h by default) ...
		Expect(checkInAs(m.url, old, clusterID, "1.0.0").code).To(Equal(http.StatusOK))
		Expect(checkInAs(m.url, fresh, clusterID, "1.0.0").code).To(Equal(http.StatusOK))
		// ... then only the new one.
		Eventually(func() int { return checkInAs(m.url, old, clusterID, "1.0.0").code }, 10*time.Second, 200*time.Millisecond).
			Should(Equal(http.StatusUnauthorized))
		Expect(checkInAs(m.url, fresh, clusterID, "1.0.0").code).To(Equal(http.StatusOK))
	})
})

var _ = Describe("a fleet behind one address", func() {
	It("registers and checks in 300 clusters sharing a registration token, back to back, without a 429 at the default limits", func() {
		ns := namespace()
		m := tokenMode(ns, func(o *bridge.Options) { o.RateLimit, o.RateBurst = 20, 40 })
		codes := map[int]int{}
		creds := map[string]string{}
		for i := range 300 {
			id := "fleet-" + strconv.Itoa(i)
			r := checkInAs(m.url, "token-a", id, "1.0.0")
			codes[r.code]++
			creds[id] = r.header.Get(bridge.HeaderCredential)
			usedTokens.add(creds[id])
		}
		for id, cred := range creds {
			codes[checkInAs(m.url, cred, id, "1.0.1").code]++
		}
		Expect(codes).To(Equal(map[int]int{http.StatusOK: 600}))
	})
})

var _ = Describe("registration tokens", func() {
	secret := func(ns string, annotations map[string]string) {
		GinkgoHelper()
		Expect(k8sClient.Create(context.Background(), &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "registration", Annotations: annotations},
			Data:       map[string][]byte{"old": []byte("token-old"), "forever": []byte("token-forever"), "fresh": []byte("token-fresh")},
		})).To(Succeed())
		usedTokens.add("token-old", "token-forever", "token-fresh")
	}
	start := func(ns string, mutate ...func(*bridge.Options)) *manager {
		GinkgoHelper()
		m := startManager(ns, time.Minute, append([]func(*bridge.Options){func(o *bridge.Options) {
			o.CheckInAuth, o.RegistrationSecret = bridge.CheckInToken, "registration"
		}}, mutate...)...)
		DeferCleanup(func() { m.stop() })
		return m
	}

	It("expire; one that never does needs the maximum lifetime set to never", func() {
		ns := namespace()
		secret(ns, map[string]string{"expires.trainyard.dev/old": "2026-01-01T00:00:00Z", "expires.trainyard.dev/forever": "never"})
		m := start(ns)
		r := checkInAs(m.url, "token-old", "c1", "1.0.0")
		Expect(r.code).To(Equal(http.StatusUnauthorized))
		Expect(r.errorOf().Message).To(Equal("registration token registration/old expired at 2026-01-01T00:00:00Z; clusters it registered are unaffected"))
		r = checkInAs(m.url, "token-forever", "c1", "1.0.0")
		Expect(r.code).To(Equal(http.StatusUnauthorized))
		Expect(r.errorOf().Message).To(ContainSubstring("never expires, but the maximum lifetime is 720h0m0s"))
		register(m.url, "token-fresh", "c1")

		m.stop()
		m = start(ns, func(o *bridge.Options) { o.MaxTokenLifetime = bridge.MaxTokenLifetimeNever })
		register(m.url, "token-forever", "c2")
	})

	It("cannot outlast the maximum lifetime, nor raise the cluster limit, by what the tenant writes on its Secret (issue 27 #7)", func() {
		ns := namespace()
		far := time.Now().Add(10 * 365 * 24 * time.Hour).UTC().Truncate(time.Second).Format(time.RFC3339)
		near := time.Now().Add(24 * time.Hour).UTC().Truncate(time.Second).Format(time.RFC3339)
		secret(ns, map[string]string{"expires.trainyard.dev/old": far, "expires.trainyard.dev/fresh": near,
			bridge.AnnotationMaxClusters: "1000000"})
		m := start(ns, func(o *bridge.Options) { o.MaxClustersPerTenant = 1 })
		r := checkInAs(m.url, "token-old", "c1", "1.0.0")
		Expect(r.code).To(Equal(http.StatusUnauthorized))
		Expect(r.errorOf().Message).To(ContainSubstring("registration token registration/old expires at " + far + ", beyond the maximum lifetime of 720h0m0s"))
		Expect(report(ns, "c1")).To(BeNil())
		register(m.url, "token-fresh", "c1")
		// The annotation asks for a million; the flag says 1.
		r = checkInAs(m.url, "token-fresh", "c2", "1.0.0")
		Expect(r.code).To(Equal(http.StatusForbidden))
		Expect(r.errorOf().Message).To(ContainSubstring("has 1 clusters, its limit"))
		Expect(report(ns, "c2")).To(BeNil())
	})
})

var _ = Describe("tenants", func() {
	It("keep the same cluster ID as two objects, with no cross-writes, no cross-reads and a quota each", func() {
		a, b := namespace(), namespace()
		for i, ns := range []string{a, b} {
			Expect(k8sClient.Create(context.Background(), &corev1.Secret{
				ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "registration",
					Annotations: map[string]string{bridge.AnnotationMaxClusters: strconv.Itoa(2 - i)}},
				Data: map[string][]byte{"fleet": []byte("tenant-token-" + ns)},
			})).To(Succeed())
			usedTokens.add("tenant-token-" + ns)
		}
		m := startManager(a, time.Minute, func(o *bridge.Options) {
			o.CheckInAuth, o.RegistrationSecret, o.ReadAuth, o.Tenants = bridge.CheckInToken, "registration", true, []string{b}
		})
		DeferCleanup(func() { m.stop() })
		tenantB := m.url + "/tenants/" + b

		// The same ID in both: the default tenant without a prefix, B under it.
		credA := register(m.url, "tenant-token-"+a, clusterID)
		credB := register(tenantB, "tenant-token-"+b, clusterID)
		Expect(report(a, clusterID)).NotTo(BeNil())
		Expect(report(b, clusterID)).NotTo(BeNil())
		Expect(report(a, clusterID).UID).NotTo(Equal(report(b, clusterID).UID))

		// No cross-writes: A's credential and token are unknown in B.
		Expect(checkInAs(tenantB, credA, clusterID, "6.6.6").code).To(Equal(http.StatusUnauthorized))
		Expect(checkInAs(tenantB, "tenant-token-"+a, "new", "1.0.0").code).To(Equal(http.StatusUnauthorized))
		Expect(checkInAs(m.url, credB, clusterID, "6.6.6").code).To(Equal(http.StatusUnauthorized))
		Expect(report(b, clusterID).Spec.Components[0].Version).To(Equal("1.0.0"))
		Expect(checkInAs(tenantB, credB, clusterID, "2.0.0").code).To(Equal(http.StatusOK))
		Expect(report(a, clusterID).Spec.Components[0].Version).To(Equal("1.0.0"))

		// No cross-reads with --bridge-read-auth.
		for _, tok := range []string{credA, "tenant-token-" + a} {
			Expect(do(http.MethodGet, tenantB+"/v3/clusters/"+clusterID, "", "", bearerAuth(tok)).code).To(Equal(http.StatusUnauthorized))
			Expect(do(http.MethodGet, m.url+"/v3/clusters/"+clusterID, "", "", bearerAuth(tok)).code).To(Equal(http.StatusOK))
		}
		Expect(do(http.MethodGet, tenantB+"/v3/clusters/"+clusterID, "", "", bearerAuth(credB)).code).To(Equal(http.StatusOK))
		Expect(get(m.url + "/tenants/nowhere/v3/clusters/count").code).To(Equal(http.StatusNotFound))

		// The quota: B takes one cluster, A two.
		r := checkInAs(tenantB, "tenant-token-"+b, "second", "1.0.0")
		Expect(r.code).To(Equal(http.StatusForbidden))
		Expect(r.errorOf().Message).To(ContainSubstring("tenant " + b + " has 1 clusters, its limit"))
		Eventually(func() int { return checkInAs(m.url, "tenant-token-"+a, "second", "1.0.0").code }).Should(Equal(http.StatusOK))
	})

	It("have budgets of their own: one tenant's flood leaves another's check-ins alone", func() {
		a, b := namespace(), namespace()
		m := startManager(a, time.Minute, func(o *bridge.Options) {
			o.Tenants, o.TenantRateLimit, o.TenantRateBurst = []string{b}, 1, 10
		})
		DeferCleanup(func() { m.stop() })
		codes := map[int]int{}
		for i := range 30 {
			codes[checkInAs(m.url+"/tenants/"+b, "", "flood-"+strconv.Itoa(i), "1.0.0").code]++
		}
		Expect(codes[http.StatusTooManyRequests]).To(BeNumerically(">=", 15))
		Expect(checkInAs(m.url, "", "quiet", "1.0.0").code).To(Equal(http.StatusOK))
	})
})
