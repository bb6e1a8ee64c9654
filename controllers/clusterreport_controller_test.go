package controllers_test

import (
	"fmt"
	"slices"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	trainyardv1 "github.com/trainyard-dev/trainyard/api/v1alpha1"
	"github.com/trainyard-dev/trainyard/internal/conditions"
)

var _ = Describe("ClusterReport controller", func() {
	var ns string
	BeforeEach(func() { ns = newNamespace() })

	It("computes each component's state, the summary and the conditions", func() {
		publish(ns, "router", "stable", "v1.0.0", 1)
		publish(ns, "router", "stable", "v1.1.0", 2)
		publish(ns, "ctl", "stable", "2.0.0", 1, func(r *trainyardv1.ComponentRelease) {
			r.Spec.Retracted = &trainyardv1.Retraction{Reason: "bad"}
		})
		publish(ns, "ctl", "stable", "2.0.1", 2)
		publish(ns, "dns", "stable", "3.0.0", 1)
		Eventually(latestOf(ns, "router.stable")).Should(Equal("v1.1.0"))
		Eventually(latestOf(ns, "ctl.stable")).Should(Equal("2.0.1"))
		Eventually(latestOf(ns, "dns.stable")).Should(Equal("3.0.0"))

		checkIn(ns, "c1",
			comp("router", "stable", "v1.0.0"), // behind
			comp("ctl", "", "2.0.0"),           // retracted (train defaults to stable)
			comp("dns", "stable", "v3.0.0"),    // the same semver as 3.0.0
			comp("gpu", "beta", "0.1.0"),       // no such train
			comp("router2", "stable", "1.0.0")) // no such train either
		Eventually(func() *trainyardv1.ComponentSummary { return report(ns, "c1").Status.Summary }).Should(HaveValue(Equal(
			trainyardv1.ComponentSummary{Total: 5, UpToDate: 1, UpdateAvailable: 1, Retracted: 1, Unknown: 2})))
		r := report(ns, "c1")
		for i := range r.Status.Components {
			c := &r.Status.Components[i]
			// Each component is reported since the report's first check-in
			// (the history spec below checks the times), which is not
			// stored twice: since is absent, and reads as firstSeen.
			Expect(c.Since).To(BeNil(), c.Name)
			Expect(c.SinceOr(r.Status.FirstSeen)).To(Equal(r.Status.FirstSeen), c.Name)
			Expect(c.GetHistory()).To(BeEmpty(), c.Name)
			// The specs send no readiness, as Deis agents: unknown (absent),
			// never NotReady.
			Expect(c.Ready).To(BeEmpty(), c.Name)
			Expect(c.ReadyOf()).To(Equal(trainyardv1.ReadyUnknown), c.Name)
			Expect(c.ReadySince).To(BeNil(), c.Name)
			c.Since, c.Ready = nil, ""
		}
		// Stored without what the getters derive (issue 32): router's latest
		// is its recommendation and both one-hop paths are the hop to it;
		// dns's latest is not v3.0.0 as written, so it stays.
		Expect(r.Status.Components).To(ContainElements(
			trainyardv1.ComponentStatus{Name: "router", Installed: "v1.0.0", State: trainyardv1.StateUpdateAvailable, Recommended: "v1.1.0"},
			trainyardv1.ComponentStatus{Name: "ctl", Installed: "2.0.0", Latest: "2.0.1", State: trainyardv1.StateRetracted, Recommended: "2.0.1"},
			trainyardv1.ComponentStatus{Name: "dns", Installed: "v3.0.0", Latest: "3.0.0", State: trainyardv1.StateUpToDate},
			trainyardv1.ComponentStatus{Name: "gpu", Installed: "0.1.0", State: trainyardv1.StateUnknown},
		))
		for name, want := range map[string][]string{"router": {"v1.1.0"}, "ctl": {"2.0.1"}, "dns": nil, "gpu": nil} {
			i := slices.IndexFunc(r.Status.Components, func(c trainyardv1.ComponentStatus) bool { return c.Name == name })
			Expect(r.Status.Components[i].GetPath()).To(Equal(want), name)
		}
		Expect(r.Status.Components[slices.IndexFunc(r.Status.Components, func(c trainyardv1.ComponentStatus) bool { return c.Name == "router" })].GetLatest()).To(Equal("v1.1.0"))
		Expect(conditionOf(ns, "c1", trainyardv1.ConditionUpToDate)()).To(Equal(metav1.ConditionFalse))
		Expect(conditionOf(ns, "c1", trainyardv1.ConditionRunningRetracted)()).To(Equal(metav1.ConditionTrue))
		// Not stale. (Absent, or False if the controller saw the report
		// before the check-in's status and the suite's fake clock was past
		// its creation: the bridge's size spec, on a real clock, checks that
		// a cluster never stale has no Stale condition.)
		Eventually(conditionOf(ns, "c1", trainyardv1.ConditionStale)).ShouldNot(Equal(metav1.ConditionTrue))
		// No labels, and no managedFields: this suite runs no webhook, so
		// the controller cleared those of the create. A client selects on
		// the summary's counts instead (the CRD's selectable fields), which
		// the status write keeps: a new release costs no label write.
		Eventually(func(g Gomega) {
			r := report(ns, "c1")
			// (Stale or not: the fake clock may be past its first check-in.)
			delete(r.Labels, trainyardv1.LabelStale)
			g.Expect(r.Labels).To(BeEmpty())
			g.Expect(r.ManagedFields).To(BeEmpty())
		}).Should(Succeed())
		checkIn(ns, "current", comp("dns", "stable", "3.0.0"))
		Eventually(func() *trainyardv1.ComponentSummary { return report(ns, "current").Status.Summary }).Should(HaveValue(Equal(
			trainyardv1.ComponentSummary{Total: 1, UpToDate: 1})))
		Expect(selected(ns, trainyardv1.FieldRetracted+"!=0")).To(ConsistOf("c1"))
		Expect(selected(ns, trainyardv1.FieldUpdateAvailable+"!=0")).To(ConsistOf("c1"))
		Expect(selected(ns, trainyardv1.FieldUnknown+"=2")).To(ConsistOf("c1"))
		Expect(selected(ns, trainyardv1.FieldUpdateAvailable+"=0")).To(ConsistOf("current"))

		// Up to date: the summary's fields follow in the same status write;
		// RunningRetracted (abnormal-true) goes.
		checkIn(ns, "c1", comp("dns", "stable", "3.0.0"))
		Eventually(func(g Gomega) {
			r := report(ns, "c1")
			g.Expect(meta.FindStatusCondition(r.Status.Conditions, trainyardv1.ConditionRunningRetracted)).To(BeNil())
			g.Expect(conditions.IsTrue(r.Status.Conditions, trainyardv1.ConditionUpToDate)).To(BeTrue())
		}).Should(Succeed())
		Expect(selected(ns, trainyardv1.FieldRetracted+"!=0")).To(BeEmpty())
		Expect(selected(ns, trainyardv1.FieldUpdateAvailable+"=0")).To(ConsistOf("c1", "current"))
		Expect(report(ns, "c1").Labels).To(Or(BeEmpty(), Equal(map[string]string{trainyardv1.LabelStale: "true"})))
		Expect(conditionOf(ns, "c1", trainyardv1.ConditionReady)()).To(Equal(metav1.ConditionTrue))
	})

	It("keeps each component's last version changes, and since when it runs its version", func() {
		checkIn(ns, "c1", comp("router", "stable", "v1.0.0"), comp("dns", "stable", "1.0.0"))
		Eventually(sinceOf(ns, "c1", "router")).ShouldNot(BeNil())
		first := *sinceOf(ns, "c1", "router")()
		var want []trainyardv1.VersionChange
		from := "v1.0.0"
		for i := 1; i <= trainyardv1.MaxVersionChanges+3; i++ {
			fakeClock.Step(time.Minute)
			to := fmt.Sprintf("v1.%d.0", i)
			checkIn(ns, "c1", comp("router", "stable", to), comp("dns", "stable", "1.0.0"))
			at := metav1.NewTime(fakeClock.Now().UTC().Truncate(time.Second))
			want = append(want, trainyardv1.VersionChange{From: from, To: to, At: at})
			// Reconciled before the clock moves on.
			Eventually(func() string { return componentStatus(ns, "c1", "router")().Installed }).Should(Equal(to))
			from = to
		}
		router := componentStatus(ns, "c1", "router")()
		// The last 20 changes, oldest first, each at the check-in's reconcile.
		Expect(router.GetHistory()).To(HaveLen(trainyardv1.MaxVersionChanges))
		for i, c := range router.GetHistory() {
			w := want[len(want)-trainyardv1.MaxVersionChanges+i]
			Expect(c.From).To(Equal(w.From))
			Expect(c.To).To(Equal(w.To))
			Expect(c.At.Time).To(BeTemporally("~", w.At.Time, time.Second))
		}
		Expect(router.Since.Time).To(Equal(router.GetHistory()[len(router.GetHistory())-1].At.Time), "stored: it is not firstSeen")
		// A component whose version did not change keeps its start.
		dns := componentStatus(ns, "c1", "dns")()
		Expect(dns.GetHistory()).To(BeEmpty())
		Expect(sinceOf(ns, "c1", "dns")().Time).To(Equal(first.Time))
	})

	It("continues a timeline a previous manager recorded: it lives in the status, nowhere else", func() {
		checkIn(ns, "c2", comp("router", "stable", "v1.5.0"))
		Eventually(sinceOf(ns, "c2", "router")).ShouldNot(BeNil())
		// What a manager that ran before this one left in the status.
		earlier := []trainyardv1.VersionChange{
			{From: "v1.2.0", To: "v1.3.0", At: metav1.NewTime(day0)},
			{From: "v1.3.0", To: "v1.5.0", At: metav1.NewTime(day0.AddDate(0, 0, 1))},
		}
		Eventually(func() error {
			r := report(ns, "c2")
			r.Status.Components[0].Details().History = earlier
			since := metav1.NewTime(day0.AddDate(0, 0, 1))
			r.Status.Components[0].Since = &since
			return k8sClient.Status().Update(suiteCtx, r)
		}).Should(Succeed())
		fakeClock.Step(time.Minute)
		checkIn(ns, "c2", comp("router", "stable", "v1.6.0"))
		Eventually(func() []trainyardv1.VersionChange { return componentStatus(ns, "c2", "router")().GetHistory() }).Should(HaveLen(3))
		h := componentStatus(ns, "c2", "router")().GetHistory()
		for i, c := range h[:2] {
			Expect([]string{c.From, c.To, c.At.UTC().String()}).To(Equal([]string{earlier[i].From, earlier[i].To, earlier[i].At.UTC().String()}))
		}
		Expect([]string{h[2].From, h[2].To}).To(Equal([]string{"v1.5.0", "v1.6.0"}))
		Expect(h[2].At.Time).To(BeTemporally("~", fakeClock.Now(), time.Second))
	})

	It("marks a version the train does not know as Unknown, then known once published", func() {
		publish(ns, "router", "stable", "v1.0.0", 1)
		Eventually(latestOf(ns, "router.stable")).Should(Equal("v1.0.0"))
		checkIn(ns, "c1", comp("router", "stable", "v0.9.0"))
		Eventually(stateOf(ns, "c1", "router")).Should(Equal(trainyardv1.StateUnknown))
		publish(ns, "router", "stable", "v0.9.0", 0)
		Eventually(stateOf(ns, "c1", "router")).Should(Equal(trainyardv1.StateUpdateAvailable))
	})

	It("moves running clusters to UpdateAvailable when a new release becomes latest, touching no other report", func() {
		publish(ns, "router", "stable", "v1.0.0", 1)
		publish(ns, "dns", "stable", "1.0.0", 1)
		Eventually(latestOf(ns, "router.stable")).Should(Equal("v1.0.0"))
		Eventually(latestOf(ns, "dns.stable")).Should(Equal("1.0.0"))
		for _, id := range []string{"a", "b", "c"} {
			checkIn(ns, id, comp("router", "stable", "v1.0.0"), comp("dns", "stable", "1.0.0"))
		}
		checkIn(ns, "only-dns", comp("dns", "stable", "1.0.0"))
		for _, id := range []string{"a", "b", "c"} {
			Eventually(stateOf(ns, id, "router")).Should(Equal(trainyardv1.StateUpToDate))
		}
		Eventually(stateOf(ns, "only-dns", "dns")).Should(Equal(trainyardv1.StateUpToDate))
		untouched := settled(ns, "only-dns").ResourceVersion

		publish(ns, "router", "stable", "v1.1.0", 2)
		for _, id := range []string{"a", "b", "c"} {
			Eventually(stateOf(ns, id, "router")).Should(Equal(trainyardv1.StateUpdateAvailable))
			Expect(conditionOf(ns, id, trainyardv1.ConditionUpToDate)()).To(Equal(metav1.ConditionFalse))
		}
		Expect(report(ns, "only-dns").ResourceVersion).To(Equal(untouched))
	})

	It("turns Stale exactly at the threshold and fresh again on the next check-in", func() {
		publish(ns, "router", "stable", "v1.0.0", 1)
		checkIn(ns, "c1", comp("router", "stable", "v1.0.0"))
		Eventually(conditionOf(ns, "c1", trainyardv1.ConditionReady)).Should(Equal(metav1.ConditionTrue))
		// (Absent, or False once the check-in's status write is reconciled,
		// if the controller saw the report before it: the suite's fake clock
		// is ahead of the report's creation.)
		Eventually(conditionOf(ns, "c1", trainyardv1.ConditionStale)).ShouldNot(Equal(metav1.ConditionTrue))
		req := reconcile.Request{NamespacedName: types.NamespacedName{Namespace: ns, Name: "c1"}}

		// Just before the threshold: still fresh.
		fakeClock.Step(staleThreshold - time.Millisecond)
		_, err := reportRec.Reconcile(suiteCtx, req)
		Expect(err).NotTo(HaveOccurred())
		Expect(conditionOf(ns, "c1", trainyardv1.ConditionStale)()).NotTo(Equal(metav1.ConditionTrue))

		// At the threshold the scheduled wake-up fires: nobody touches the report.
		fakeClock.Step(time.Millisecond)
		Eventually(conditionOf(ns, "c1", trainyardv1.ConditionStale)).Should(Equal(metav1.ConditionTrue))
		Eventually(eventReasons(ns, "c1")).Should(ContainElement("Stale"))
		// Its label, for kubectl get -l trainyard.dev/stale.
		Eventually(func() map[string]string { return report(ns, "c1").Labels }).Should(Equal(map[string]string{trainyardv1.LabelStale: "true"}))

		checkIn(ns, "c1", comp("router", "stable", "v1.0.0"))
		Eventually(conditionOf(ns, "c1", trainyardv1.ConditionStale)).Should(Equal(metav1.ConditionFalse))
		// False once it has been True: notifications tell a recovery by it.
		Expect(meta.FindStatusCondition(report(ns, "c1").Status.Conditions, trainyardv1.ConditionStale).Reason).To(Equal(trainyardv1.ReasonRecovered))
		Eventually(func() map[string]string { return report(ns, "c1").Labels }).Should(BeEmpty())
	})

	It("removes the status labels an earlier manager kept, and only those", func() {
		publish(ns, "router", "stable", "v1.0.0", 1)
		r := &trainyardv1.ClusterReport{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "old", Labels: map[string]string{
			"team": "edge", "trainyard.dev/outdated": "false", "trainyard.dev/exposed": "true"}},
			Spec: trainyardv1.ClusterReportSpec{ClusterID: "old", Components: []trainyardv1.ReportedComponent{comp("router", "stable", "v1.0.0")}}}
		Expect(k8sClient.Create(suiteCtx, r)).To(Succeed())
		// (Stale or not: the fake clock may be past its first check-in.)
		Eventually(func(g Gomega) {
			labels := report(ns, "old").Labels
			g.Expect(labels).To(HaveKeyWithValue("team", "edge"))
			for _, k := range trainyardv1.RetiredStatusLabels {
				g.Expect(labels).NotTo(HaveKey(k))
			}
		}).Should(Succeed())
	})

	It("fills in the check-in record of a report written with kubectl", func() {
		r := &trainyardv1.ClusterReport{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "manual"},
			Spec:       trainyardv1.ClusterReportSpec{ClusterID: "manual"},
		}
		Expect(k8sClient.Create(suiteCtx, r)).To(Succeed())
		Eventually(func() int64 { return report(ns, "manual").Status.CheckIns }).Should(BeEquivalentTo(1))
		r = report(ns, "manual")
		Expect(r.Status.FirstSeen.Time).To(BeTemporally("==", r.CreationTimestamp.Time))
		Expect(r.Status.LastSeen.Time).To(BeTemporally("==", r.CreationTimestamp.Time))
		Expect(conditionOf(ns, "manual", trainyardv1.ConditionUpToDate)()).To(Equal(metav1.ConditionTrue))
	})
})
