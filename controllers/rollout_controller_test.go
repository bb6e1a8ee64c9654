package controllers_test

import (
	"context"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	trainyardv1 "github.com/trainyard-dev/trainyard/api/v1alpha1"
	"github.com/trainyard-dev/trainyard/controllers"
)

// fleet is a spec's clusters: what each reports, so that all can check in
// again before the fake clock moves (the suite's stale threshold is an
// hour; a stale cluster neither counts nor blocks in a rollout).
type fleet struct {
	ns    string
	comps map[string]trainyardv1.ReportedComponent
}

// join creates a cluster's report with labels and checks it in.
func (f *fleet) join(id string, lbls map[string]string, c trainyardv1.ReportedComponent) {
	GinkgoHelper()
	Expect(k8sClient.Create(suiteCtx, &trainyardv1.ClusterReport{
		ObjectMeta: metav1.ObjectMeta{Namespace: f.ns, Name: id, Labels: lbls},
		Spec:       trainyardv1.ClusterReportSpec{ClusterID: id},
	})).To(Succeed())
	f.report(id, c)
}

// report checks a cluster in with c.
func (f *fleet) report(id string, c trainyardv1.ReportedComponent) {
	GinkgoHelper()
	f.comps[id] = c
	checkIn(f.ns, id, c)
}

// step checks every cluster in again, then moves the clock by d (< 1h).
func (f *fleet) step(d time.Duration) {
	GinkgoHelper()
	for id, c := range f.comps {
		checkIn(f.ns, id, c)
	}
	fakeClock.Step(d)
}

// app is component app at version, ready or not (readiness as the agent
// reports it).
func app(version string, ready bool) trainyardv1.ReportedComponent {
	c := comp("app", "stable", version)
	c.Readiness = &trainyardv1.WorkloadReadiness{Ready: 2, Desired: 2}
	if !ready {
		c.Readiness.Ready = 1
	}
	return c
}

// appStatus is the status of component app in a report.
func appStatus(ns, id string) func() *trainyardv1.ComponentStatus {
	return func() *trainyardv1.ComponentStatus {
		r := report(ns, id)
		if r == nil {
			return nil
		}
		for _, c := range r.Status.Components {
			if c.Name == "app" {
				return &c
			}
		}
		return nil
	}
}

func recommended(ns, id string) func() string {
	return func() string {
		if c := appStatus(ns, id)(); c != nil {
			return c.Recommended
		}
		return "<none>"
	}
}

// ringOf is a ring's status on the train.
func ringOf(ns, trainName, ring string) func() *trainyardv1.RingStatus {
	return func() *trainyardv1.RingStatus {
		t := train(ns, trainName)
		if t == nil || t.Status.Rollout == nil {
			return nil
		}
		for _, r := range t.Status.Rollout.Rings {
			if r.Name == ring {
				return &r
			}
		}
		return nil
	}
}

func rolloutOf(ns, name string) func() *trainyardv1.RolloutStatus {
	return func() *trainyardv1.RolloutStatus {
		if t := train(ns, name); t != nil {
			return t.Status.Rollout
		}
		return nil
	}
}

// count is how many times reason occurs among the events of an object.
func count(reasons []string, reason string) int {
	n := 0
	for _, r := range reasons {
		if r == reason {
			n++
		}
	}
	return n
}

// rings is the acceptance's policy: a canary ring, an early ring after a
// soak of an hour, and everyone else after an hour, once half of early
// runs it; two not-ready clusters of four or five halt it.
func rings() *trainyardv1.RolloutPolicy {
	hour := &metav1.Duration{Duration: time.Hour}
	pct := int32(25)
	return &trainyardv1.RolloutPolicy{
		Rings: []trainyardv1.Ring{
			{Name: "canary", ClusterSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"ring": "canary"}}},
			{Name: "early", ClusterSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"ring": "early"}},
				After: &trainyardv1.RingGate{Soak: hour, MinReportingPercent: 80}},
			{Name: "everyone", After: &trainyardv1.RingGate{Soak: hour, MinReportingPercent: 50}},
		},
		Halt: &trainyardv1.HaltPolicy{MaxNotReadyPercent: &pct, NotReadyFor: &metav1.Duration{Duration: 10 * time.Minute}},
	}
}

// rolledOut publishes app 1.1.0, gives its train the policy, and checks in
// one canary, four early clusters and five others, all on 1.1.0 and ready.
func rolledOut(ns string, p *trainyardv1.RolloutPolicy) *fleet {
	GinkgoHelper()
	f := &fleet{ns: ns, comps: map[string]trainyardv1.ReportedComponent{}}
	publish(ns, "app", "stable", "1.1.0", 1)
	Eventually(latestOf(ns, "app.stable")).Should(Equal("1.1.0"))
	t := train(ns, "app.stable")
	before := t.DeepCopy()
	t.Spec.Rollout = p
	Expect(k8sClient.Patch(suiteCtx, t, client.MergeFrom(before))).To(Succeed())
	Eventually(func() trainyardv1.RolloutPhase {
		if st := rolloutOf(ns, "app.stable")(); st != nil {
			return st.Phase
		}
		return ""
	}).Should(Equal(trainyardv1.RolloutComplete), "every ring starts with the latest when the rollout is configured")
	f.join("canary-1", map[string]string{"ring": "canary"}, app("1.1.0", true))
	for _, id := range []string{"early-1", "early-2", "early-3", "early-4"} {
		f.join(id, map[string]string{"ring": "early"}, app("1.1.0", true))
	}
	for _, id := range []string{"other-1", "other-2", "other-3", "other-4"} {
		f.join(id, map[string]string{"ring": "everyone"}, app("1.1.0", true))
	}
	f.join("unlabelled", nil, app("1.1.0", true))
	return f
}

var _ = Describe("Rollout rings", func() {
	var ns string
	BeforeEach(func() { ns = newNamespace() })

	It("opens each ring after the one before it runs the release, ready, for the soak; halts on not-ready clusters and resumes", func() {
		f := rolledOut(ns, rings())
		Eventually(appStatus(ns, "unlabelled")).Should(HaveField("Ring", "everyone"),
			"a cluster matching no ring is in the last one")

		publish(ns, "app", "stable", "1.2.0", 2)
		Eventually(recommended(ns, "canary-1")).Should(Equal("1.2.0"))
		Eventually(appStatus(ns, "early-1")).Should(And(HaveField("Recommended", ""),
			HaveField("GetHeldBack()", And(Not(BeNil()), HaveField("Version", "1.2.0"), HaveField("Ring", "early"),
				HaveField("Reason", ContainSubstring("once 80% of the ring before it run it ready")))),
		))
		Expect(appStatus(ns, "other-1")()).To(HaveField("GetHeldBack().Ring", "everyone"))

		// The canary runs 1.2.0, ready, at t1.
		f.step(5 * time.Minute)
		t1 := fakeClock.Now()
		f.report("canary-1", app("1.2.0", true))
		Eventually(ringOf(ns, "app.stable", "early")).Should(And(HaveField("State", trainyardv1.RingSoaking),
			HaveField("NextEvaluation.Time", BeTemporally("==", t1.Add(time.Hour)))))
		Eventually(appStatus(ns, "early-1")).Should(HaveField("GetHeldBack().Until.Time", BeTemporally("==", t1.Add(time.Hour))))

		f.step(59 * time.Minute) // t1+59m
		Consistently(recommended(ns, "early-1"), 2*time.Second).Should(Equal(""))
		f.step(2 * time.Minute) // t1+61m
		Eventually(recommended(ns, "early-1")).Should(Equal("1.2.0"))
		Eventually(appStatus(ns, "early-1")).Should(HaveField("GetHeldBack()", BeNil()))
		Expect(recommended(ns, "other-1")()).To(Equal(""))

		// A cluster that joins the early ring mid-rollout gets its target at once.
		f.join("early-5", map[string]string{"ring": "early"}, app("1.1.0", true))
		Eventually(recommended(ns, "early-5")).Should(Equal("1.2.0"))

		// Three early clusters run it ready; two run it not ready, for longer than 10m.
		for _, id := range []string{"early-1", "early-2", "early-3"} {
			f.report(id, app("1.2.0", true))
		}
		for _, id := range []string{"early-4", "early-5"} {
			f.report(id, app("1.2.0", false))
		}
		Eventually(ringOf(ns, "app.stable", "everyone")).Should(HaveField("State", trainyardv1.RingSoaking))
		f.step(11 * time.Minute)
		Eventually(rolloutOf(ns, "app.stable")).Should(And(HaveField("Phase", trainyardv1.RolloutHalted),
			HaveField("Halts", ConsistOf(And(HaveField("Reason", "NotReady"), HaveField("Version", "1.2.0"),
				HaveField("Message", ContainSubstring("2 of 5 clusters of ring early")), HaveField("Resumed", BeNil()))))))
		Eventually(eventReasons(ns, "app.stable")).Should(ContainElement("RolloutHalted"))
		// The soak of everyone passes; the halt keeps it shut.
		f.step(30 * time.Minute)
		f.step(30 * time.Minute)
		Eventually(appStatus(ns, "other-1")).Should(HaveField("GetHeldBack().Reason", ContainSubstring("halted")))
		Consistently(ringOf(ns, "app.stable", "everyone"), 2*time.Second).Should(And(
			HaveField("State", trainyardv1.RingHalted), HaveField("Version", "1.1.0")))
		Expect(recommended(ns, "other-1")()).To(Equal(""))

		// Ready again: the rollout resumes, and everyone (soaked) opens.
		for _, id := range []string{"early-4", "early-5"} {
			f.report(id, app("1.2.0", true))
		}
		Eventually(rolloutOf(ns, "app.stable")).Should(And(HaveField("Phase", trainyardv1.RolloutComplete),
			HaveField("Halts", ConsistOf(HaveField("Resumed", Not(BeNil()))))))
		Eventually(recommended(ns, "other-1")).Should(Equal("1.2.0"))
		Eventually(recommended(ns, "unlabelled")).Should(Equal("1.2.0"))
		reasons := eventReasons(ns, "app.stable")()
		Expect(count(reasons, "RingOpened")).To(Equal(3), "one event per ring opened: %v", reasons)
		Expect(count(reasons, "RolloutHalted")).To(Equal(1), "%v", reasons)
		Expect(count(reasons, "RolloutResumed")).To(Equal(1), "%v", reasons)
	})

	It("halts when the rolling release is retracted and moves nobody further", func() {
		f := rolledOut(ns, rings())
		rel := publish(ns, "app", "stable", "1.2.0", 2)
		Eventually(recommended(ns, "canary-1")).Should(Equal("1.2.0"))
		f.report("canary-1", app("1.2.0", true))
		Eventually(ringOf(ns, "app.stable", "early")).Should(HaveField("State", trainyardv1.RingSoaking))

		before := rel.DeepCopy()
		rel.Spec.Retracted = &trainyardv1.Retraction{Reason: "corrupts data"}
		Expect(k8sClient.Patch(suiteCtx, rel, client.MergeFrom(before))).To(Succeed())
		Eventually(rolloutOf(ns, "app.stable")).Should(And(HaveField("Phase", trainyardv1.RolloutHalted),
			HaveField("Version", "1.2.0"), HaveField("Halts", ConsistOf(HaveField("Reason", "Retracted")))))
		f.step(40 * time.Minute)
		f.step(40 * time.Minute) // past the soak
		Consistently(ringOf(ns, "app.stable", "early"), 2*time.Second).Should(And(
			HaveField("State", trainyardv1.RingHalted), HaveField("Version", "1.1.0")))
		for _, id := range []string{"early-1", "other-1"} {
			Expect(appStatus(ns, id)()).To(And(HaveField("Recommended", ""), HaveField("GetHeldBack()", BeNil())), id)
		}
		Expect(count(eventReasons(ns, "app.stable")(), "RingOpened")).To(Equal(1))
	})

	It("opens each ring exactly once with two managers racing", func() {
		b := openRace.race(ns, func(_ context.Context, mgr ctrl.Manager) error {
			return (&controllers.RolloutReconciler{Client: rolloutClient{mgr.GetClient(), "second"},
				Recorder: mgr.GetEventRecorder("second"), Clock: fakeClock}).SetupWithManager(mgr)
		})

		f := rolledOut(ns, rings())
		publish(ns, "app", "stable", "1.2.0", 2)
		Eventually(recommended(ns, "canary-1")).Should(Equal("1.2.0"))
		f.report("canary-1", app("1.2.0", true))
		Eventually(ringOf(ns, "app.stable", "early")).Should(HaveField("State", trainyardv1.RingSoaking))
		f.step(61 * time.Minute / 2)
		f.step(61 * time.Minute / 2)
		Eventually(recommended(ns, "early-1")).Should(Equal("1.2.0"))

		for _, ring := range []string{"canary", "early"} {
			Eventually(func(g Gomega) { b.raced(g, "app.stable/"+ring+"/1.2.0", apierrors.IsConflict) }).Should(Succeed())
		}
		Consistently(func() int { return count(eventReasons(ns, "app.stable")(), "RingOpened") }, 2*time.Second).Should(Equal(2))
	})
})
