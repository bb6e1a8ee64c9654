package bridge_test

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	trainyardv1 "github.com/trainyard-dev/trainyard/api/v1alpha1"
	"github.com/trainyard-dev/trainyard/bridge"
	"github.com/trainyard-dev/trainyard/internal/wire"
)

// The specs below are the bridge's trust boundary (issue 12): each one is a
// defect seen from outside, numbered as in the issue.

// tokenMode is a manager whose check-ins need a registration token:
// "token-a" and "token-b" are two fleets' tokens.
func tokenMode(ns string, mutate ...func(*bridge.Options)) *manager {
	GinkgoHelper()
	Expect(k8sClient.Create(context.Background(), &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "registration"},
		Data:       map[string][]byte{"fleet-a": []byte("token-a"), "fleet-b": []byte("token-b")},
	})).To(Succeed())
	usedTokens.add("token-a", "token-b")
	m := startManager(ns, time.Minute, append([]func(*bridge.Options){func(o *bridge.Options) {
		o.CheckInAuth, o.RegistrationSecret = bridge.CheckInToken, "registration"
	}}, mutate...)...)
	DeferCleanup(func() { m.stop() })
	return m
}

// legacy keeps the binding of a cluster to its first registration token,
// as before cluster credentials (Options.LegacyTokenBinding).
func legacy(o *bridge.Options) { o.LegacyTokenBinding = true }

func checkInAs(base, token, id, version string) response {
	return do(http.MethodPost, base+"/v3/clusters", "application/json", checkinBody(id, version), bearerAuth(token))
}

func randomToken() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	usedTokens.add(hex.EncodeToString(b))
	return hex.EncodeToString(b)
}

// from is an HTTP client whose connections come from a loopback address of
// its own (127.0.0.0/8 is all loopback), as another machine's would.
func from(ip string) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 5 * time.Second}
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DialContext: d.DialContext}}
}

func getWith(c *http.Client, u string, mutate ...func(*http.Request)) int {
	GinkgoHelper()
	req, err := http.NewRequest(http.MethodGet, u, nil)
	Expect(err).NotTo(HaveOccurred())
	for _, m := range mutate {
		m(req)
	}
	resp, err := c.Do(req)
	Expect(err).NotTo(HaveOccurred())
	resp.Body.Close()
	return resp.StatusCode
}

var _ = Describe("the bridge's writes", func() {
	It("#1 re-publishes an identical release with 200 and other content with 409, with the webhook registered", func() {
		m := startManager(namespace(), time.Minute)
		DeferCleanup(func() { m.stop() })
		body := `{"version":{"released":"2026-11-01T00:00:00Z","data":{"description":"first"}}}`
		Expect(m.publish("stable", "router", "v1.0.0", body).code).To(Equal(http.StatusOK))
		r := m.publish("stable", "router", "v1.0.0", body)
		Expect(r.code).To(Equal(http.StatusOK), string(r.body))
		r = m.publish("stable", "router", "v1.0.0", `{"version":{"data":{"description":"other"}}}`)
		Expect(r.code).To(Equal(http.StatusConflict), string(r.body))
		Expect(r.errorOf().Message).To(ContainSubstring("with a different description"))
	})

	It("#2 never answers a publish with a release other than the one it stored", func() {
		ns := namespace()
		m := startManager(ns, time.Minute)
		DeferCleanup(func() { m.stop() })
		// The name the old mapping gave 1.0.0-RC1 is itself a valid version.
		sum := sha256.Sum256([]byte("1.0.0-RC1"))
		lookalike := "1-0-0-rc1-" + hex.EncodeToString(sum[:])[:8]
		for _, version := range []string{lookalike, "1.0.0-RC1", "1.0.0-rc1"} {
			r := m.publish("stable", "x", version, `{}`)
			Expect(r.code).To(Equal(http.StatusOK), string(r.body))
			var cv wire.ComponentVersion
			r.json(&cv)
			Expect(cv.Version.Version).To(Equal(version))
		}
		for _, version := range []string{lookalike, "1.0.0-RC1", "1.0.0-rc1"} {
			var cv wire.ComponentVersion
			Eventually(func() int { return get(m.url + "/v3/versions/stable/x/" + version).code }).Should(Equal(http.StatusOK), version)
			get(m.url + "/v3/versions/stable/x/" + version).json(&cv)
			Expect(cv.Version.Version).To(Equal(version))
		}
		var list trainyardv1.ComponentReleaseList
		Expect(k8sClient.List(context.Background(), &list, client.InNamespace(ns))).To(Succeed())
		Expect(list.Items).To(HaveLen(3))
	})

	It("#3 stores one semantic version once, however spelled and however the publishes race", func() {
		ns := namespace()
		m := startManager(ns, time.Minute)
		DeferCleanup(func() { m.stop() })
		const n = 10
		var wg sync.WaitGroup
		codes := make([]int, n)
		versions := make([]string, n)
		for i := range n {
			spelling := []string{"3.0.0", "v3.0.0"}[i%2]
			wg.Go(func() {
				defer GinkgoRecover()
				r := m.publish("stable", "racer", spelling, `{"version":{"released":"2026-11-01T00:00:00Z"}}`)
				codes[i] = r.code
				if r.code == http.StatusOK {
					var cv wire.ComponentVersion
					r.json(&cv)
					versions[i] = cv.Version.Version
				}
			})
		}
		wg.Wait()
		var list trainyardv1.ComponentReleaseList
		Expect(k8sClient.List(context.Background(), &list, client.InNamespace(ns))).To(Succeed())
		Expect(list.Items).To(HaveLen(1))
		for i := range n {
			// Every publish is the same release: each answers what is stored.
			Expect(codes[i]).To(Equal(http.StatusOK))
			Expect(versions[i]).To(Equal(list.Items[0].Spec.Version))
		}
	})

	It("#4 keeps every held check-in across replicas, and lastSeen never moves back", func() {
		ns := namespace()
		later := time.Now().Add(2 * time.Hour).Truncate(time.Second)
		clockA, clockB := clocktesting.NewFakeClock(later), clocktesting.NewFakeClock(later.Add(-time.Hour))
		a := startManager(ns, time.Hour, func(o *bridge.Options) { o.Clock = clockA })
		b := startManager(ns, time.Hour, func(o *bridge.Options) { o.Clock = clockB })
		DeferCleanup(func() { a.stop(); b.stop() })

		Expect(post(a.url+"/v3/clusters", checkinBody(clusterID, "1.0.0")).code).To(Equal(http.StatusOK))
		Eventually(func() int { return get(b.url + "/v3/clusters/" + clusterID).code }).Should(Equal(http.StatusOK))
		// Nothing changes: both replicas hold these check-ins in memory.
		for range 5 {
			Expect(post(a.url+"/v3/clusters", checkinBody(clusterID, "1.0.0")).code).To(Equal(http.StatusOK))
		}
		for range 3 {
			Expect(post(b.url+"/v3/clusters", checkinBody(clusterID, "1.0.0")).code).To(Equal(http.StatusOK))
		}
		// Both flush at once. A write that keeps conflicting (the other
		// replica, both controllers) stays held for the next flush: what is
		// checked is that nothing is lost or counted twice.
		flushBoth := func() int64 {
			var wg sync.WaitGroup
			for _, m := range []*manager{a, b} {
				wg.Go(func() { m.bridge.FlushHeartbeats(context.Background()) })
			}
			wg.Wait()
			return report(ns, clusterID).Status.CheckIns
		}
		Eventually(flushBoth).Should(BeEquivalentTo(9))
		Consistently(flushBoth, time.Second).Should(BeEquivalentTo(9))
		rep := report(ns, clusterID)
		Expect(rep.Status.LastSeen.Time.Equal(later)).To(BeTrue(), "lastSeen %s, want %s", rep.Status.LastSeen, later)
	})

	It("#4 keeps the held check-ins of a flush that failed", func() {
		ns := namespace()
		m := startManager(ns, time.Hour)
		DeferCleanup(func() { m.stop() })
		b, base, cut := behindOutage(m, bridge.Options{Namespace: ns, CheckInAuth: bridge.CheckInOpen, Heartbeat: time.Hour,
			RateLimit: 1e6, RateBurst: 1e6}, true, true)

		for range 5 {
			Expect(post(base+"/v3/clusters", checkinBody(clusterID, "1.0.0")).code).To(Equal(http.StatusOK))
		}
		cut.cut(true)
		b.FlushHeartbeats(context.Background())
		cut.cut(false)
		Eventually(func() int64 {
			b.FlushHeartbeats(context.Background())
			return report(ns, clusterID).Status.CheckIns
		}).Should(BeEquivalentTo(5))
		Consistently(func() int64 {
			b.FlushHeartbeats(context.Background())
			return report(ns, clusterID).Status.CheckIns
		}, time.Second).Should(BeEquivalentTo(5))
	})
})

var _ = Describe("who may write", func() {
	It("#5 takes a doctor upload only with the cluster's own registration token (legacy token binding)", func() {
		ns := namespace()
		m := tokenMode(ns, legacy)
		dump := `{"workflow":{"id":"` + clusterID + `","components":[]},"nodes":[],"namespaces":[]}`
		upload := func(id, token string) response {
			var auth []func(*http.Request)
			if token != "" {
				auth = append(auth, bearerAuth(token))
			}
			return do(http.MethodPost, m.url+"/v3/doctor/"+id, "application/json", dump, auth...)
		}
		Expect(upload("d1", "").code).To(Equal(http.StatusUnauthorized))
		Expect(upload("d1", "token-a").code).To(Equal(http.StatusNotFound)) // the cluster has not checked in
		Expect(checkInAs(m.url, "token-a", clusterID, "1.0.0").code).To(Equal(http.StatusOK))
		// Each upload spends the sender's doctor budget (3, then 1 a
		// minute): wait for the bridge's cache to hold the report before
		// uploading, not by uploading.
		Eventually(func() error {
			return m.cache.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: trainyardv1.ClusterReportName(clusterID)},
				&trainyardv1.ClusterReport{})
		}).Should(Succeed())
		Expect(upload("d1", "token-a").code).To(Equal(http.StatusOK))
		r := upload("d1", "token-b")
		Expect(r.code).To(Equal(http.StatusForbidden))
		Expect(r.errorOf().Message).To(ContainSubstring("registered with another registration token"))
	})

	It("#5 never touches a Secret it did not make, the doctor credentials least of all", func() {
		ns := namespace()
		m := startManager(ns, time.Minute, func(o *bridge.Options) { o.DoctorAuthSecret = "trainyard-doctor-auth" })
		DeferCleanup(func() { m.stop() })
		creds := map[string][]byte{"username": []byte("ops"), "password": []byte("s3cret")}
		for _, name := range []string{"trainyard-doctor-auth", "trainyard-doctor-report-mine"} {
			Expect(k8sClient.Create(context.Background(), &corev1.Secret{
				ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Data: creds})).To(Succeed())
		}
		dump := `{"workflow":{"id":"c1","components":[]},"nodes":[],"namespaces":[]}`
		Expect(post(m.url+"/v3/doctor/auth", dump).code).To(Equal(http.StatusOK))
		r := post(m.url+"/v3/doctor/mine", dump)
		Expect(r.code).To(Equal(http.StatusConflict))
		Expect(r.errorOf().Message).To(ContainSubstring("was not made by trainyard"))
		for _, name := range []string{"trainyard-doctor-auth", "trainyard-doctor-report-mine"} {
			sec := &corev1.Secret{}
			Expect(k8sClient.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: name}, sec)).To(Succeed())
			Expect(sec.Data).To(Equal(creds), name)
		}
		// The credentials still read the dump stored under "auth".
		r = do(http.MethodGet, m.url+"/v3/doctor/auth", "", "", func(r *http.Request) { r.SetBasicAuth("ops", "s3cret") })
		Expect(r.code).To(Equal(http.StatusOK))
		Expect(r.body).To(MatchJSON(dump))
	})

	It("#5 keeps at most MaxDoctorReports dumps per cluster and MaxDoctorTotal in all", func() {
		ns := namespace()
		// All from one address, in open mode: one sender to the doctor budget.
		m := startManager(ns, time.Minute, func(o *bridge.Options) { o.MaxDoctorReports, o.MaxDoctorTotal, o.DoctorBurst = 2, 3, 100 })
		DeferCleanup(func() { m.stop() })
		dump := func(cluster string) string {
			return `{"workflow":{"id":"` + cluster + `","components":[]},"nodes":[],"namespaces":[]}`
		}
		for _, id := range []string{"a1", "a2", "a3"} {
			Expect(post(m.url+"/v3/doctor/"+id, dump("a")).code).To(Equal(http.StatusOK))
		}
		dumps := func() []string {
			var list corev1.SecretList
			Expect(k8sClient.List(context.Background(), &list, client.InNamespace(ns),
				client.MatchingLabels{bridge.LabelDoctorReport: "true"})).To(Succeed())
			var names []string
			for _, s := range list.Items {
				names = append(names, s.Name)
			}
			return names
		}
		// The oldest of cluster a's was replaced by its newest.
		Expect(dumps()).To(ConsistOf("trainyard-doctor-report-a2", "trainyard-doctor-report-a3"))
		Expect(post(m.url+"/v3/doctor/b1", dump("b")).code).To(Equal(http.StatusOK))
		r := post(m.url+"/v3/doctor/c1", dump("c"))
		Expect(r.code).To(Equal(http.StatusTooManyRequests))
		Expect(r.errorOf().Message).To(ContainSubstring("at most 3 doctor reports"))
		Expect(dumps()).To(HaveLen(3))
	})

	It("keeps a tenant's doctor dumps within MaxDoctorBytes together, counted from their metadata (issue 27 #12)", func() {
		ns := namespace()
		m := startManager(ns, time.Minute, func(o *bridge.Options) { o.MaxDoctorBytes, o.DoctorBurst = 7000, 100 })
		DeferCleanup(func() { m.stop() })
		dump := func(cluster string) string {
			noise := make([]byte, 2400) // in hex, about 2.5 KB compressed: two fit in 7000 bytes, three do not
			_, _ = rand.Read(noise)
			return `{"workflow":{"id":"` + cluster + `","components":[]},"nodes":["` + hex.EncodeToString(noise) + `"],"namespaces":[]}`
		}
		Expect(post(m.url+"/v3/doctor/x1", dump("x")).code).To(Equal(http.StatusOK))
		Expect(post(m.url+"/v3/doctor/y1", dump("y")).code).To(Equal(http.StatusOK))
		var stored corev1.Secret
		Expect(k8sClient.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: "trainyard-doctor-report-x1"}, &stored)).To(Succeed())
		size, err := strconv.Atoi(stored.Annotations[bridge.AnnotationDoctorBytes])
		Expect(err).NotTo(HaveOccurred())
		Expect(size).To(Equal(len(stored.Data["report.json.gz"])))
		r := post(m.url+"/v3/doctor/z1", dump("z"))
		Expect(r.code).To(Equal(http.StatusTooManyRequests), string(r.body))
		Expect(r.errorOf().Message).To(ContainSubstring("the bridge keeps at most 7000 bytes of doctor reports in this tenant"))
		Expect(apierrors.IsNotFound(k8sClient.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: "trainyard-doctor-report-z1"}, &stored))).To(BeTrue())
	})

	It("budgets one sender's doctor uploads before reading them: 3 in a burst, then 1 a minute", func() {
		ns := namespace()
		m := tokenMode(ns)
		cred := register(m.url, "token-a", "dumper")
		other := register(m.url, "token-a", "quiet")
		dump := `{"workflow":{"id":"dumper","components":[]},"nodes":[],"namespaces":[]}`
		for i := range 3 {
			r := do(http.MethodPost, fmt.Sprintf("%s/v3/doctor/d%d", m.url, i), "application/json", dump, bearerAuth(cred))
			Expect(r.code).To(Equal(http.StatusOK), string(r.body))
		}
		r := do(http.MethodPost, m.url+"/v3/doctor/d3", "application/json", dump, bearerAuth(cred))
		Expect(r.code).To(Equal(http.StatusTooManyRequests))
		Expect(r.header.Get("Retry-After")).NotTo(BeEmpty())
		Expect(r.errorOf().Message).To(ContainSubstring("too many doctor reports from this client (3 in a burst, then 1 a minute)"))
		var s corev1.Secret
		Expect(apierrors.IsNotFound(k8sClient.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: "trainyard-doctor-report-d3"}, &s))).To(BeTrue())
		// Another cluster's budget is its own.
		r = do(http.MethodPost, m.url+"/v3/doctor/q0", "application/json", `{"workflow":{"id":"quiet","components":[]},"nodes":[],"namespaces":[]}`, bearerAuth(other))
		Expect(r.code).To(Equal(http.StatusOK), string(r.body))
	})

	It("#6 answers 503 with Retry-After, not 401, when the registration tokens cannot be read", func() {
		ns := namespace()
		m := tokenMode(ns)
		// Only the reads of the registration Secret go through the outage.
		_, base, cut := behindOutage(m, bridge.Options{Namespace: ns, CheckInAuth: bridge.CheckInToken,
			RegistrationSecret: "registration", RateLimit: 1e6, RateBurst: 1e6}, false, true)

		cut.cut(true)
		var r response
		Eventually(func() int { r = checkInAs(base, "token-a", clusterID, "1.0.0"); return r.code }).Should(Equal(http.StatusServiceUnavailable))
		Expect(r.header.Get("Retry-After")).NotTo(BeEmpty())
		Expect(r.errorOf().Message).To(ContainSubstring("the registration tokens cannot be read right now"))
		cut.cut(false)
		Expect(checkInAs(base, "token-a", clusterID, "1.0.0").code).To(Equal(http.StatusOK))
	})
})

var _ = Describe("one client against the others", func() {
	It("#7 gives made-up and whitespace-padded bearer tokens no budget of their own", func() {
		m := startManager(namespace(), time.Minute, func(o *bridge.Options) { o.RateLimit, o.RateBurst = 1, 5 })
		DeferCleanup(func() { m.stop() })
		refused := 0
		for i := range 30 {
			tok := randomToken()
			if i%2 == 1 {
				tok = strings.Repeat(" ", i) + "same-token"
			}
			if r := do(http.MethodGet, m.url+"/v3/clusters/count", "", "", bearerAuth(tok)); r.code == http.StatusTooManyRequests {
				refused++
			}
		}
		Expect(refused).To(BeNumerically(">=", 20))
	})

	It("keeps a legacy fleet checking in with its token after the token expired, and registers no new cluster with it (issue 27 #6)", func() {
		ns := namespace()
		clk := clocktesting.NewFakeClock(time.Now())
		m := tokenMode(ns, legacy, func(o *bridge.Options) { o.Clock = clk })
		Expect(checkInAs(m.url, "token-a", "deis-1", "1.0.0").code).To(Equal(http.StatusOK))
		hash := report(ns, "deis-1").Annotations[trainyardv1.AnnotationCredentialHash]

		// The alert's metric: the tenant's first token to expire, and when.
		// Both were stamped at the bridge's first read: now + 720h.
		stamped := clk.Now().Add(720 * time.Hour).UTC().Truncate(time.Second)
		Eventually(func() map[string]float64 { return tokenExpiries(ns) }).Should(Equal(map[string]float64{
			"registration/fleet-a": float64(stamped.Unix())}))
		// fleet-b is set to expire sooner: within the bridge's next periodic
		// read of the Secret (5 min), it is the one the alert names.
		sooner := clk.Now().Add(48 * time.Hour).UTC().Truncate(time.Second)
		patch := fmt.Sprintf(`{"metadata":{"annotations":{"expires.trainyard.dev/fleet-b":%q}}}`, sooner.Format(time.RFC3339))
		Expect(k8sClient.Patch(context.Background(), &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "registration"}},
			client.RawPatch(types.MergePatchType, []byte(patch)))).To(Succeed())
		Eventually(func() map[string]float64 {
			clk.Step(time.Minute)
			return tokenExpiries(ns)
		}).Should(Equal(map[string]float64{"registration/fleet-b": float64(sooner.Unix())}))

		// Past the default lifetime of 720h, stamped at the token's first read.
		clk.Step(721 * time.Hour)
		r := checkInAs(m.url, "token-a", "deis-1", "1.1.0")
		Expect(r.code).To(Equal(http.StatusOK), string(r.body))
		Expect(r.header.Get(bridge.HeaderCredential)).To(BeEmpty())
		Expect(report(ns, "deis-1").Spec.Components[0].Version).To(Equal("1.1.0"))
		Expect(report(ns, "deis-1").Annotations).To(HaveKeyWithValue(trainyardv1.AnnotationCredentialHash, hash))
		r = checkInAs(m.url, "token-a", "deis-2", "1.0.0")
		Expect(r.code).To(Equal(http.StatusUnauthorized))
		Expect(r.errorOf().Message).To(ContainSubstring("expired at"))
		Expect(r.errorOf().Message).To(ContainSubstring("in legacy mode it still checks in the clusters bound to it, but registers no new one"))
		Expect(report(ns, "deis-2")).To(BeNil())
		// No valid token expires any more: no series (the check-ins above read the Secret).
		Expect(tokenExpiries(ns)).To(BeEmpty())
		// Outside legacy mode an expired token checks in nothing.
		m.stop()
		m = startManager(ns, time.Minute, func(o *bridge.Options) {
			o.CheckInAuth, o.RegistrationSecret, o.Clock = bridge.CheckInToken, "registration", clk
		})
		DeferCleanup(func() { m.stop() })
		Expect(checkInAs(m.url, "token-a", "deis-1", "1.2.0").code).To(Equal(http.StatusUnauthorized))
	})

	It("#7 gives each cluster of a fleet that shares a registration token a budget of its own (legacy token binding)", func() {
		m := tokenMode(namespace(), legacy, func(o *bridge.Options) { o.RateLimit, o.RateBurst = 1, 5 })
		codes := map[int]int{}
		for range 20 {
			codes[checkInAs(m.url, "token-a", "noisy", "1.0.0").code]++
		}
		Expect(codes[http.StatusTooManyRequests]).To(BeNumerically(">=", 10))
		Expect(checkInAs(m.url, "token-a", "quiet", "1.0.0").code).To(Equal(http.StatusOK))
		Expect(m.bridge.TrackedClients()).To(BeNumerically("<=", 3))
		// Another fleet's token naming a cluster of this one spends no
		// budget of that cluster's (it is refused, 403).
		Expect(checkInAs(m.url, "token-a", "bound", "1.0.0").code).To(Equal(http.StatusOK))
		for range 20 {
			Expect(checkInAs(m.url, "token-b", "bound", "1.0.0").code).To(Or(Equal(http.StatusForbidden), Equal(http.StatusTooManyRequests)))
		}
		Expect(checkInAs(m.url, "token-a", "bound", "1.0.0").code).To(Equal(http.StatusOK))
	})

	It("#7 tells clients behind a trusted proxy apart by X-Forwarded-For, and no others", func() {
		forwarded := func(addr string) func(*http.Request) {
			return func(r *http.Request) { r.Header.Set("X-Forwarded-For", addr) }
		}
		for _, trusted := range []bool{true, false} {
			m := startManager(namespace(), time.Minute, func(o *bridge.Options) {
				o.RateLimit, o.RateBurst = 1, 3
				if trusted {
					o.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
				}
			})
			for range 3 {
				Expect(get(m.url + "/v3/clusters/count").code).To(Equal(http.StatusOK))
			}
			// 192.0.2.0/24 is for documentation: only a header here.
			code := do(http.MethodGet, m.url+"/v3/clusters/count", "", "", forwarded("192.0.2.7")).code
			if trusted {
				Expect(code).To(Equal(http.StatusOK), "a client behind the proxy has its own budget")
			} else {
				Expect(code).To(Equal(http.StatusTooManyRequests), "an untrusted peer cannot choose its address")
			}
			m.stop()
		}
	})

	It("keys an IPv6 client's budgets by its /64, not by each of its 2^64 addresses (issue 27 #13)", func() {
		forwarded := func(addr string) func(*http.Request) {
			return func(r *http.Request) { r.Header.Set("X-Forwarded-For", addr) }
		}
		m := startManager(namespace(), time.Minute, func(o *bridge.Options) {
			o.RateLimit, o.RateBurst = 1, 3
			o.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
		})
		DeferCleanup(func() { m.stop() })
		// One host, a new address of its /64 for each request.
		codes := map[int]int{}
		for i := range 6 {
			codes[do(http.MethodGet, m.url+"/v3/clusters/count", "", "", forwarded(fmt.Sprintf("2001:db8:1:2::%x", i+1))).code]++
		}
		Expect(codes[http.StatusOK]).To(Equal(3), "the /64 shares one budget of 3: %v", codes)
		Expect(codes[http.StatusTooManyRequests]).To(Equal(3), "%v", codes)
		// Another /64 has its own.
		Expect(do(http.MethodGet, m.url+"/v3/clusters/count", "", "", forwarded("2001:db8:1:3::1")).code).To(Equal(http.StatusOK))
	})

	It("#8 keeps serving others while one address sends 520 bodies a byte a second", func() {
		m := startManager(namespace(), time.Minute)
		DeferCleanup(func() { m.stop() })
		addr := strings.TrimPrefix(m.url, "http://")
		d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}, Timeout: 5 * time.Second}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		var wg sync.WaitGroup
		var cutOff, shed atomic.Int64
		for range 520 {
			wg.Go(func() {
				conn, err := d.DialContext(ctx, "tcp", addr)
				if err != nil {
					return
				}
				defer conn.Close()
				_, _ = fmt.Fprintf(conn, "POST /v3/clusters HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n")
				answer := make(chan int, 1)
				go func() {
					resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
					if err != nil {
						answer <- 0
						return
					}
					resp.Body.Close()
					answer <- resp.StatusCode
				}()
				tick := time.NewTicker(time.Second)
				defer tick.Stop()
				for {
					select {
					case code := <-answer:
						switch code {
						case http.StatusRequestTimeout:
							cutOff.Add(1)
						case http.StatusServiceUnavailable, http.StatusTooManyRequests:
							// The source's slots (503), or its level's queue (429).
							shed.Add(1)
						}
						return
					case <-tick.C:
						_, _ = conn.Write([]byte(" "))
					case <-ctx.Done():
						return
					}
				}
			})
		}
		// Meanwhile another address is served at once, reads and writes.
		other := from("127.0.0.1")
		Eventually(func() int64 { return shed.Load() }).Should(BeNumerically(">=", 400))
		for range 20 {
			Expect(getWith(other, m.url+"/v3/clusters/count")).To(Equal(http.StatusOK))
		}
		Expect(post(m.url+"/v3/clusters", checkinBody(clusterID, "1.0.0")).code).To(Equal(http.StatusOK))
		wg.Wait()
		// The slow ones that got in were cut off within seconds, not 60.
		Expect(ctx.Err()).NotTo(HaveOccurred())
		Expect(cutOff.Load()).To(BeNumerically(">=", 1))
		Expect(cutOff.Load() + shed.Load()).To(BeEquivalentTo(520))
	})

	It("#9 forgets a long-poll on a made-up train when it is answered", func() {
		m := startManager(namespace(), time.Minute)
		DeferCleanup(func() { m.stop() })
		var wg sync.WaitGroup
		for i := range 300 {
			wg.Go(func() {
				defer GinkgoRecover()
				r := do(http.MethodGet, fmt.Sprintf("%s/v3/versions/made-up-%d/nothing-%d/latest?wait=2s", m.url, i, i), "", "",
					func(r *http.Request) { r.Header.Set("If-None-Match", `"x"`) })
				Expect(r.code).To(Equal(http.StatusNotFound))
			})
		}
		Eventually(m.bridge.WaitingTrains).Should(BeNumerically(">", 100))
		wg.Wait()
		Expect(m.bridge.WaitingTrains()).To(BeZero())
		// A name that cannot be a train is refused before anything waits.
		r := get(m.url + "/v3/versions/" + strings.Repeat("x", 300) + "/router/latest?wait=30s")
		Expect(r.code).To(Equal(http.StatusBadRequest))
		Expect(r.errorOf().Message).To(ContainSubstring("path.train"))
	})

	It("#10 bounds the multi-get: at most 256 items, each asked-for item answered once", func() {
		m := startManager(namespace(), time.Minute)
		DeferCleanup(func() { m.stop() })
		big := fmt.Sprintf(`{"version":{"data":{"description":%q}}}`, strings.Repeat("d", 8000))
		Expect(m.publish("stable", "router", "v1.0.0", big).code).To(Equal(http.StatusOK))
		Eventually(func() int { return get(m.url + "/v3/versions/stable/router/latest").code }).Should(Equal(http.StatusOK))
		items := func(n int) string {
			return `{"data":[` + strings.TrimSuffix(strings.Repeat(`{"component":{"name":"router"}},`, n), ",") + `]}`
		}
		r := post(m.url+"/v3/versions/latest", items(1000))
		Expect(r.code).To(Equal(http.StatusUnprocessableEntity))
		// Reading stops at item 257: the rest of the body is never decoded.
		Expect(r.errorOf().Message).To(Equal("data: more than 256 items; at most 256 (a cluster reports at most 256 components)"))
		r = post(m.url+"/v3/versions/latest", items(256))
		Expect(r.code).To(Equal(http.StatusOK))
		var list struct{ Data []wire.ComponentVersion }
		r.json(&list)
		Expect(list.Data).To(HaveLen(1))
		Expect(len(r.body)).To(BeNumerically("<", 10000))
	})

	It("#11 sends a source's failing tokens to the API server only while its failure budget lasts", func() {
		m := startManager(namespace(), time.Minute)
		DeferCleanup(func() { m.stop() })
		before := tokenReviews()
		codes := map[int]int{}
		for range 200 {
			r := do(http.MethodPost, m.url+"/v3/versions/stable/router/v9.0.0", "application/json", `{}`, bearerAuth(randomToken()))
			codes[r.code]++
		}
		reviewed := tokenReviews() - before
		Expect(codes[http.StatusUnauthorized] + codes[http.StatusTooManyRequests]).To(Equal(200))
		Expect(codes[http.StatusTooManyRequests]).To(BeNumerically(">=", 150))
		Expect(reviewed).To(BeNumerically("<=", 40), "TokenReviews the API server answered for 200 made-up tokens")
	})

	It("holds a refusal for RefusalDelay without a slot: a flood from a few connections mostly waits, and others are served meanwhile (issue 26)", func() {
		const delay = 3 * time.Second
		m := startManager(namespace(), time.Minute, func(o *bridge.Options) {
			// A failure budget that refills slowly: its 429s ask for more than delay.
			o.RefusalDelay, o.MaxInFlightPerClient, o.FailedAuthRate = delay, 4, 0.1
		})
		DeferCleanup(func() { m.stop() })
		flood := from("127.0.0.61")
		post := func() (int, time.Duration) {
			defer GinkgoRecover()
			start := time.Now()
			req, _ := http.NewRequest(http.MethodPost, m.url+"/v3/versions/stable/router/v9.0.0", strings.NewReader(`{}`))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Authorization", "Bearer "+randomToken())
			resp, err := flood.Do(req)
			Expect(err).NotTo(HaveOccurred())
			defer resp.Body.Close()
			_, _ = io.Copy(io.Discard, resp.Body)
			return resp.StatusCode, time.Since(start)
		}
		// The source's failure budget (20) is spent on made-up tokens.
		Eventually(func() int { code, _ := post(); return code }, 2*time.Minute, 0).Should(Equal(http.StatusTooManyRequests))

		// 8 senders on the source's 4 slots: each refusal is held, and
		// holds no slot meanwhile, so the same address still gets through.
		type answer struct {
			code int
			took time.Duration
		}
		answers := make(chan answer, 8)
		for range 8 {
			go func() {
				code, took := post()
				answers <- answer{code, took}
			}()
		}
		Eventually(func() int { return getWith(flood, m.url+"/ping") }, delay-time.Second, 50*time.Millisecond).Should(Equal(http.StatusOK),
			"a held refusal keeps no slot of its source")
		// Another address is served at once.
		Expect(getWith(from("127.0.0.62"), m.url+"/v3/clusters/count")).To(Equal(http.StatusOK))
		for range 8 {
			a := <-answers
			// 429 for the budget, or 503 when the 8 arrived at once on 4 slots.
			Expect(a.code).To(BeElementOf(http.StatusTooManyRequests, http.StatusServiceUnavailable))
			if a.code == http.StatusTooManyRequests {
				Expect(a.took).To(BeNumerically(">=", delay-50*time.Millisecond), "held for RefusalDelay")
			} else {
				Expect(a.took).To(BeNumerically(">=", time.Second-50*time.Millisecond), "held for its Retry-After")
			}
		}
	})

	It("#12 refuses request headers over its deliberate limit", func() {
		m := startManager(namespace(), time.Minute)
		DeferCleanup(func() { m.stop() })
		header := func(n int) func(*http.Request) {
			return func(r *http.Request) { r.Header.Set("X-Padding", strings.Repeat("p", n)) }
		}
		Expect(do(http.MethodGet, m.url+"/ping", "", "", header(8<<10)).code).To(Equal(http.StatusOK))
		Expect(do(http.MethodGet, m.url+"/ping", "", "", header(bridge.MaxHeaderBytes+8<<10)).code).
			To(Equal(http.StatusRequestHeaderFieldsTooLarge))
	})
})

// tokenReviews is how many TokenReviews the API server has answered.
func tokenReviews() int {
	GinkgoHelper()
	cs, err := kubernetes.NewForConfig(cfg)
	Expect(err).NotTo(HaveOccurred())
	raw, err := cs.RESTClient().Get().AbsPath("/metrics").DoRaw(context.Background())
	Expect(err).NotTo(HaveOccurred())
	n := 0
	for _, line := range strings.Split(string(raw), "\n") {
		if strings.HasPrefix(line, "apiserver_request_total{") && strings.Contains(line, `resource="tokenreviews"`) {
			f := strings.Fields(line)
			v, err := strconv.ParseFloat(f[len(f)-1], 64)
			Expect(err).NotTo(HaveOccurred())
			n += int(v)
		}
	}
	return n
}

// tokenExpiries is trainyard_bridge_registration_token_next_expiry_timestamp_seconds
// of namespace ns, by its token label.
func tokenExpiries(ns string) map[string]float64 {
	GinkgoHelper()
	families, err := ctrlmetrics.Registry.Gather()
	Expect(err).NotTo(HaveOccurred())
	out := map[string]float64{}
	for _, f := range families {
		if f.GetName() != "trainyard_bridge_registration_token_next_expiry_timestamp_seconds" {
			continue
		}
		for _, m := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["namespace"] == ns {
				out[labels["token"]] = m.GetGauge().GetValue()
			}
		}
	}
	return out
}
