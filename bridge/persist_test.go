package bridge_test

import (
	"context"
	"net"
	"net/http"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client"

	trainyardv1 "github.com/trainyard-dev/trainyard/api/v1alpha1"
	"github.com/trainyard-dev/trainyard/bridge"
	"github.com/trainyard-dev/trainyard/controllers"
	"github.com/trainyard-dev/trainyard/internal/conditions"
	"github.com/trainyard-dev/trainyard/internal/wire"
)

// Issue 15: a check-in that changes nothing costs no write until the stored
// lastSeen is a persist interval old (Options.Heartbeat); lastSeen is served
// exactly from memory meanwhile.
var _ = Describe("the persist rule", func() {
	It("writes a check-in that changes nothing once per persist interval, serves lastSeen from memory, writes the last held one once due, and all of them on shutdown", func() {
		ns := namespace()
		start := time.Now().Truncate(time.Second)
		clk := clocktesting.NewFakeClock(start)
		m := startManager(ns, time.Hour, func(o *bridge.Options) { o.Clock = clk })
		stopped := false
		DeferCleanup(func() {
			if !stopped {
				m.stop()
			}
		})
		stored := func() (time.Time, int64) {
			r := report(ns, clusterID)
			if r == nil || r.Status.LastSeen == nil {
				return time.Time{}, 0
			}
			return r.Status.LastSeen.Time, r.Status.CheckIns
		}
		served := func() time.Time {
			var c wire.Cluster
			r := get(m.url + "/v3/clusters/" + clusterID)
			Expect(r.code).To(Equal(http.StatusOK))
			r.json(&c)
			return *c.LastSeen
		}
		checkInAt := func(at time.Time) {
			GinkgoHelper()
			clk.SetTime(at)
			Expect(post(m.url+"/v3/clusters", checkinBody(clusterID, "1.0.0")).code).To(Equal(http.StatusOK))
		}

		checkInAt(start) // registers: the controller records the creation as its first check-in
		Eventually(func() int64 { _, n := stored(); return n }).Should(BeEquivalentTo(1))
		created := report(ns, clusterID).CreationTimestamp.Time
		expectStored := func(at time.Time, n int64) {
			GinkgoHelper()
			Eventually(func(g Gomega) {
				t, got := stored()
				g.Expect(t).To(BeTemporally("==", at))
				g.Expect(got).To(Equal(n))
			}).Should(Succeed())
		}
		// An agent's 15-minute check-ins within the hour: held, not written,
		// and served exactly.
		for i := 1; i <= 3; i++ {
			at := start.Add(time.Duration(i) * 15 * time.Minute)
			checkInAt(at)
			Eventually(served).Should(BeTemporally("==", at))
		}
		clk.SetTime(start.Add(59 * time.Minute)) // the flush loop ticks: nothing is due
		Consistently(func() time.Time { t, _ := stored(); return t }, "500ms").Should(BeTemporally("==", created))
		// The stored record is an hour old: the flush loop writes what is
		// held, at its next tick.
		clk.SetTime(start.Add(61 * time.Minute))
		expectStored(start.Add(45*time.Minute), 4)

		// The cluster checks in once more and stops: that check-in is
		// written once the record is an hour old again, not at the next
		// check-in, which never comes.
		checkInAt(start.Add(75 * time.Minute))
		Eventually(served).Should(BeTemporally("==", start.Add(75*time.Minute)))
		clk.SetTime(start.Add(104 * time.Minute))
		Consistently(func() int64 { _, n := stored(); return n }, "500ms").Should(BeEquivalentTo(4))
		clk.SetTime(start.Add(106 * time.Minute))
		expectStored(start.Add(75*time.Minute), 5)

		// A check-in that finds the record an hour old is answered from
		// memory and written by the store's writers, with no further tick.
		checkInAt(start.Add(140 * time.Minute))
		expectStored(start.Add(140*time.Minute), 6)

		// A held check-in survives a shutdown (SIGTERM): written on the way out.
		checkInAt(start.Add(150 * time.Minute))
		m.stop()
		stopped = true
		last, n := stored()
		Expect(last).To(BeTemporally("==", start.Add(150*time.Minute)))
		Expect(n).To(BeEquivalentTo(7))
	})

	It("sets Stale on time across a manager restart, from the check-ins it wrote on the way out", func() {
		ns := namespace()
		start := time.Now().Truncate(time.Second)
		clk := clocktesting.NewFakeClock(start)
		const threshold = 25 * time.Hour
		co := controllers.Options{Clock: clk, StaleThreshold: threshold}
		withClock := func(o *bridge.Options) { o.Clock = clk }
		m := startManagerWith(ns, time.Hour, co, withClock)
		checkInAt := func(m *manager, at time.Time) {
			GinkgoHelper()
			clk.SetTime(at)
			Expect(post(m.url+"/v3/clusters", checkinBody(clusterID, "1.0.0")).code).To(Equal(http.StatusOK))
		}
		stale := func() metav1.ConditionStatus {
			r := report(ns, clusterID)
			if r == nil {
				return ""
			}
			if c := meta.FindStatusCondition(r.Status.Conditions, trainyardv1.ConditionStale); c != nil {
				return c.Status
			}
			if r.Status.Summary != nil {
				return metav1.ConditionFalse // reconciled, never stale: no condition
			}
			return ""
		}
		checkInAt(m, start)
		Eventually(stale).Should(Equal(metav1.ConditionFalse))
		// Held check-ins (within the persist interval), then a restart:
		// SIGTERM writes them, and the new manager reads them back.
		last := start.Add(45 * time.Minute)
		checkInAt(m, start.Add(15*time.Minute))
		checkInAt(m, last)
		m.stop()
		Expect(report(ns, clusterID).Status.LastSeen.Time).To(BeTemporally("==", last))
		m = startManagerWith(ns, time.Hour, co, withClock)
		DeferCleanup(func() { m.stop() })

		// Not Stale a minute before the threshold, counted from the last
		// check-in before the restart (not from the registration)...
		clk.SetTime(last.Add(threshold - time.Minute))
		Consistently(stale, "1s").Should(Equal(metav1.ConditionFalse))
		// ...and Stale once it has passed.
		clk.SetTime(last.Add(threshold + time.Second))
		Eventually(stale).Should(Equal(metav1.ConditionTrue))
	})

	It("costs a new cluster two writes: the create and the controller's status, which records the first check-in", func() {
		ns := namespace()
		m := startManager(ns, time.Hour)
		DeferCleanup(func() { m.stop() })
		wc, err := client.NewWithWatch(cfg, client.Options{Scheme: scheme})
		Expect(err).NotTo(HaveOccurred())
		w, err := wc.Watch(context.Background(), &trainyardv1.ClusterReportList{}, client.InNamespace(ns))
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(w.Stop)
		Expect(post(m.url+"/v3/clusters", checkinBody(clusterID, "1.0.0")).code).To(Equal(http.StatusOK))
		var events []watch.EventType
		var last *trainyardv1.ClusterReport
		collect := func() []watch.EventType {
			for {
				select {
				case e := <-w.ResultChan():
					events = append(events, e.Type)
					last, _ = e.Object.(*trainyardv1.ClusterReport)
				default:
					return events
				}
			}
		}
		Eventually(collect).Should(Equal([]watch.EventType{watch.Added, watch.Modified}))
		Consistently(collect, 2*time.Second).Should(HaveLen(2))
		Expect(last.Status.CheckIns).To(BeEquivalentTo(1))
		Expect(last.Status.FirstSeen.Time).To(BeTemporally("==", last.CreationTimestamp.Time))
		Expect(conditions.IsTrue(last.Status.Conditions, trainyardv1.ConditionReady)).To(BeTrue())

		// The next check-ins are held; written, they add to the creation's.
		for range 3 {
			Expect(post(m.url+"/v3/clusters", checkinBody(clusterID, "1.0.0")).code).To(Equal(http.StatusOK))
		}
		m.bridge.FlushHeartbeats(context.Background())
		Expect(report(ns, clusterID).Status.CheckIns).To(BeEquivalentTo(4))
	})

	It("counts the creation once when a held check-in is written before the controller's first reconcile", func() {
		// A bridge without controllers: its write is the first to record.
		ns := namespace()
		m := startManager(ns, time.Hour)
		DeferCleanup(func() { m.stop() })
		b, base, _ := behindOutage(m, bridge.Options{Namespace: ns, CheckInAuth: bridge.CheckInOpen, Heartbeat: time.Hour,
			RateLimit: 1e6, RateBurst: 1e6}, false, false)
		Eventually(func() int {
			r := post(base+"/v3/clusters", checkinBody(clusterID, "1.0.0"))
			return r.code
		}).Should(Equal(http.StatusOK))
		for range 3 {
			Expect(post(base+"/v3/clusters", checkinBody(clusterID, "1.0.0")).code).To(Equal(http.StatusOK))
		}
		// 1 (the creation) + 3, whichever of the bridge and the controller
		// recorded the creation: never 5, never 3. A flush that lost a
		// write race keeps what it holds for the next one: flush again
		// (on a loaded machine, one flush may come before the cache has
		// the report).
		Eventually(func() int64 {
			b.FlushHeartbeats(context.Background())
			return report(ns, clusterID).Status.CheckIns
		}).Should(BeEquivalentTo(4))
		Consistently(func() int64 { return report(ns, clusterID).Status.CheckIns }, time.Second).Should(BeEquivalentTo(4))
	})

	It("keeps held check-ins while its cache has not seen the report yet, and writes them", func() {
		// The cache lags behind every report (as a loaded machine's does for
		// moments): a flush must ask the API server before it drops what it
		// holds as belonging to a deleted report.
		ns := namespace()
		m := startManager(ns, time.Hour)
		DeferCleanup(func() { m.stop() })
		l, err := net.Listen("tcp", "127.0.0.1:0")
		Expect(err).NotTo(HaveOccurred())
		b := bridge.New(reportsUnseen{m.cache}, k8sClient, k8sClient, bridge.Options{Namespace: ns,
			CheckInAuth: bridge.CheckInOpen, Heartbeat: time.Hour, RateLimit: 1e6, RateBurst: 1e6, Listener: l})
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); _ = b.Start(ctx) }()
		DeferCleanup(func() { cancel(); <-done })
		base := "http://" + l.Addr().String()
		Eventually(func() int { return post(base+"/v3/clusters", checkinBody(clusterID, "1.0.0")).code }).
			Should(Equal(http.StatusOK))
		for range 3 {
			Expect(post(base+"/v3/clusters", checkinBody(clusterID, "1.0.0")).code).To(Equal(http.StatusOK))
		}
		b.FlushHeartbeats(context.Background())
		Expect(report(ns, clusterID).Status.CheckIns).To(BeEquivalentTo(4))
	})
})

// reportsUnseen is a cache that has seen no ClusterReport yet.
type reportsUnseen struct{ client.Reader }

func (r reportsUnseen) Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
	if _, ok := obj.(*trainyardv1.ClusterReport); ok {
		return apierrors.NewNotFound(trainyardv1.GroupVersion.WithResource("clusterreports").GroupResource(), key.Name)
	}
	return r.Reader.Get(ctx, key, obj, opts...)
}
