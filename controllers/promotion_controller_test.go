package controllers_test

import (
	"context"
	"fmt"
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

// promoting creates the stable train of component with a promotion policy.
func promoting(ns, component string, p trainyardv1.PromotionPolicy) {
	GinkgoHelper()
	Expect(k8sClient.Create(suiteCtx, &trainyardv1.ReleaseTrain{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: component + ".stable"},
		Spec:       trainyardv1.ReleaseTrainSpec{Component: component, Train: "stable", Promotion: &p},
	})).To(Succeed())
}

// candidate is the status of the candidate of version on the stable train.
func candidate(ns, component, version string) func() *trainyardv1.PromotionCandidate {
	return func() *trainyardv1.PromotionCandidate {
		t := train(ns, component+".stable")
		if t == nil || t.Status.Promotion == nil {
			return nil
		}
		for _, c := range t.Status.Promotion.Candidates {
			if c.Version == version {
				return &c
			}
		}
		return nil
	}
}

// onStable lists the stable train's releases of a version (the promoted ones).
func onStable(ns, component, version string) func() []trainyardv1.ComponentRelease {
	return func() []trainyardv1.ComponentRelease {
		var rels trainyardv1.ComponentReleaseList
		Expect(k8sClient.List(suiteCtx, &rels, client.InNamespace(ns))).To(Succeed())
		var out []trainyardv1.ComponentRelease
		for _, r := range rels.Items {
			if r.Spec.Component == component && r.Spec.Train == "stable" && r.Spec.Version == version {
				out = append(out, r)
			}
		}
		return out
	}
}

func gateState(c *trainyardv1.PromotionCandidate, name trainyardv1.GateName) trainyardv1.GateState {
	if c == nil {
		return ""
	}
	for _, g := range c.Gates {
		if g.Name == name {
			return g.State
		}
	}
	return ""
}

var _ = Describe("Promotion", func() {
	var ns string
	BeforeEach(func() { ns = newNamespace() })

	It("promotes within 2 s after a 3 s soak ends, with nothing else changing (Kargo #4586)", func() {
		beta := publish(ns, "api", "beta", "1.0.0", 1, func(r *trainyardv1.ComponentRelease) {
			r.Spec.Image = "registry.example.com/api:1.0.0"
			r.Spec.Data = map[string]string{"chart": "api-1.0.0.tgz"}
		})
		promoting(ns, "api", trainyardv1.PromotionPolicy{From: "beta", Soak: &metav1.Duration{Duration: 3 * time.Second}})
		Eventually(func() trainyardv1.GateState { return gateState(candidate(ns, "api", "1.0.0")(), trainyardv1.GateSoak) }).Should(Equal(trainyardv1.GatePending))
		c := candidate(ns, "api", "1.0.0")()
		Expect(c.Phase).To(Equal(trainyardv1.PromotionPending))
		Expect(c.NextEvaluation).NotTo(BeNil())
		Expect(c.Message).To(ContainSubstring("Soak (soaking until"))
		Consistently(onStable(ns, "api", "1.0.0"), time.Second).Should(BeEmpty())

		fakeClock.Step(3 * time.Second)
		Eventually(onStable(ns, "api", "1.0.0"), 2*time.Second, 20*time.Millisecond).Should(HaveLen(1))
		promoted := onStable(ns, "api", "1.0.0")()[0]
		Expect(promoted.Name).To(Equal(trainyardv1.ReleaseName("api", "stable", "1.0.0")))
		Expect(promoted.Spec.PromotedFrom).To(Equal(beta.Name))
		Expect(promoted.Spec.Image).To(Equal("registry.example.com/api:1.0.0"))
		Expect(promoted.Spec.Data).To(Equal(map[string]string{"chart": "api-1.0.0.tgz"}))
		Eventually(func() trainyardv1.PromotionPhase { return candidate(ns, "api", "1.0.0")().Phase }).Should(Equal(trainyardv1.PromotionPromoted))
		Eventually(eventReasons(ns, "api.stable")).Should(ContainElement("Promoted"))
		Eventually(latestOf(ns, "api.stable")).Should(Equal("1.0.0"))
	})

	It("waits for the window to open, and promotes when it does", func() {
		publish(ns, "ui", "beta", "4.0.0", 1)
		// A window of one hour that opens in two, on the controllers' clock.
		opens := fakeClock.Now().UTC().Add(2 * time.Hour).Truncate(time.Minute)
		closes := opens.Add(time.Hour)
		hours := fmt.Sprintf("%02d:%02d-%02d:%02d", opens.Hour(), opens.Minute(), closes.Hour(), closes.Minute())
		promoting(ns, "ui", trainyardv1.PromotionPolicy{From: "beta", Window: &trainyardv1.PromotionWindow{Hours: hours}})
		Eventually(func() trainyardv1.GateState { return gateState(candidate(ns, "ui", "4.0.0")(), trainyardv1.GateWindow) }).Should(Equal(trainyardv1.GatePending))
		c := candidate(ns, "ui", "4.0.0")()
		Expect(c.NextEvaluation.Time.Equal(opens)).To(BeTrue(), "next evaluation %s, the window opens %s", c.NextEvaluation, opens)
		Consistently(onStable(ns, "ui", "4.0.0"), time.Second).Should(BeEmpty())

		fakeClock.Step(opens.Sub(fakeClock.Now()))
		Eventually(onStable(ns, "ui", "4.0.0"), 2*time.Second, 20*time.Millisecond).Should(HaveLen(1))
	})

	It("waits for enough non-stale clusters to run the candidate", func() {
		// The clusters registered before the candidate was published.
		checkIn(ns, "a", comp("web", "beta", "2.0.0"))
		checkIn(ns, "b", comp("web", "beta", "1.9.0"))
		checkIn(ns, "c", comp("web", "beta", "1.9.0"))
		publish(ns, "web", "beta", "2.0.0", 1)
		promoting(ns, "web", trainyardv1.PromotionPolicy{From: "beta", Adoption: &trainyardv1.AdoptionGate{MinPercent: 50, MinClusters: 2}})
		Eventually(func() string {
			c := candidate(ns, "web", "2.0.0")()
			if c == nil || len(c.Gates) < 2 {
				return ""
			}
			return c.Gates[1].Reason
		}).Should(Equal("1 of 3 non-stale clusters on beta run it (33%); needs 50% and 2"))
		checkIn(ns, "b", comp("web", "beta", "2.0.0"))
		Eventually(onStable(ns, "web", "2.0.0")).Should(HaveLen(1))
	})

	It("does not count clusters registered after the candidate was published, and says so (issue 27 #15)", func() {
		checkIn(ns, "veteran", comp("svc", "beta", "1.0.0"))
		rel := publish(ns, "svc", "beta", "2.0.0", 1)
		// Creation times are the API server's, to the second: the invented
		// clusters come in a later second.
		Eventually(func() bool { return time.Now().Truncate(time.Second).After(rel.CreationTimestamp.Time) }).Should(BeTrue())
		for i := range 3 {
			checkIn(ns, fmt.Sprintf("invented-%d", i), comp("svc", "beta", "2.0.0"))
		}
		promoting(ns, "svc", trainyardv1.PromotionPolicy{From: "beta", Adoption: &trainyardv1.AdoptionGate{MinPercent: 50, MinClusters: 2}})
		Eventually(func() string {
			c := candidate(ns, "svc", "2.0.0")()
			if c == nil || len(c.Gates) < 2 {
				return ""
			}
			return c.Gates[1].Reason
		}).Should(Equal("0 of 1 non-stale clusters on beta run it (0%); needs 50% and 2; 3 registered after the candidate was published are not counted"))
		Consistently(onStable(ns, "svc", "2.0.0"), time.Second).Should(BeEmpty())
	})

	It("holds while a cluster running the candidate runs a retracted release, and promotes once it does not", func() {
		publish(ns, "db", "beta", "3.0.0", 1)
		publish(ns, "cache", "stable", "1.0.0", 1, func(r *trainyardv1.ComponentRelease) {
			r.Spec.Retracted = &trainyardv1.Retraction{Reason: "corrupts data"}
		})
		checkIn(ns, "edge", comp("db", "beta", "3.0.0"), comp("cache", "stable", "1.0.0"))
		Eventually(conditionOf(ns, "edge", trainyardv1.ConditionRunningRetracted)).Should(Equal(metav1.ConditionTrue))
		promoting(ns, "db", trainyardv1.PromotionPolicy{From: "beta", HealthyClusters: true})
		Eventually(func() trainyardv1.GateState {
			return gateState(candidate(ns, "db", "3.0.0")(), trainyardv1.GateHealthyClusters)
		}).Should(Equal(trainyardv1.GateFail))
		Consistently(onStable(ns, "db", "3.0.0"), time.Second).Should(BeEmpty())
		checkIn(ns, "edge", comp("db", "beta", "3.0.0"))
		Eventually(onStable(ns, "db", "3.0.0")).Should(HaveLen(1))
	})

	It("blocks a candidate retracted during its soak for good", func() {
		rel := publish(ns, "auth", "beta", "1.1.0", 1)
		promoting(ns, "auth", trainyardv1.PromotionPolicy{From: "beta", Soak: &metav1.Duration{Duration: time.Hour}})
		Eventually(func() trainyardv1.GateState { return gateState(candidate(ns, "auth", "1.1.0")(), trainyardv1.GateSoak) }).Should(Equal(trainyardv1.GatePending))

		before := rel.DeepCopy()
		rel.Spec.Retracted = &trainyardv1.Retraction{Reason: "fails on ARM"}
		Expect(k8sClient.Patch(suiteCtx, rel, client.MergeFrom(before))).To(Succeed())
		Eventually(func() trainyardv1.PromotionPhase {
			if c := candidate(ns, "auth", "1.1.0")(); c != nil {
				return c.Phase
			}
			return ""
		}).Should(Equal(trainyardv1.PromotionBlocked))
		// Withdrawn retraction, soak long over: still blocked.
		Expect(k8sClient.Get(suiteCtx, client.ObjectKeyFromObject(rel), rel)).To(Succeed())
		before = rel.DeepCopy()
		rel.Spec.Retracted = nil
		Expect(k8sClient.Patch(suiteCtx, rel, client.MergeFrom(before))).To(Succeed())
		Eventually(latestOf(ns, "auth.beta")).Should(Equal("1.1.0"))
		fakeClock.Step(2 * time.Hour)
		Consistently(onStable(ns, "auth", "1.1.0"), 2*time.Second).Should(BeEmpty())
		Expect(candidate(ns, "auth", "1.1.0")().Message).To(Equal("retracted before promotion: fails on ARM"))
	})

	It("lets an approval waive the soak until it expires, recorded in the status", func() {
		publish(ns, "pay", "beta", "5.0.1", 1)
		promoting(ns, "pay", trainyardv1.PromotionPolicy{From: "beta", Soak: &metav1.Duration{Duration: 24 * time.Hour}})
		Eventually(func() trainyardv1.GateState { return gateState(candidate(ns, "pay", "5.0.1")(), trainyardv1.GateSoak) }).Should(Equal(trainyardv1.GatePending))
		// An expired approval waives nothing.
		Expect(k8sClient.Create(suiteCtx, &trainyardv1.PromotionApproval{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "expired"},
			Spec: trainyardv1.PromotionApprovalSpec{Train: "pay.stable", Version: "5.0.1", Waive: []trainyardv1.GateName{trainyardv1.GateSoak},
				Expires: metav1.NewTime(fakeClock.Now().Add(-time.Minute)), Reason: "too late"},
		})).To(Succeed())
		Consistently(onStable(ns, "pay", "5.0.1"), time.Second).Should(BeEmpty())

		Expect(k8sClient.Create(suiteCtx, &trainyardv1.PromotionApproval{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "hotfix"},
			Spec: trainyardv1.PromotionApprovalSpec{Train: "pay.stable", Version: "5.0.1", Waive: []trainyardv1.GateName{trainyardv1.GateSoak},
				Expires: metav1.NewTime(fakeClock.Now().Add(time.Hour)), Reason: "CVE fix, tested by hand"},
		})).To(Succeed())
		Eventually(onStable(ns, "pay", "5.0.1")).Should(HaveLen(1))
		Eventually(func(g Gomega) {
			c := candidate(ns, "pay", "5.0.1")()
			g.Expect(c).NotTo(BeNil())
			g.Expect(c.Phase).To(Equal(trainyardv1.PromotionPromoted))
			g.Expect(c.Gates).To(ContainElement(And(HaveField("Name", trainyardv1.GateSoak), HaveField("WaivedBy", "hotfix"),
				HaveField("Reason", ContainSubstring("CVE fix, tested by hand")))))
		}).Should(Succeed())
	})

	It("refuses an approval that would waive NotRetracted", func() {
		err := k8sClient.Create(suiteCtx, &trainyardv1.PromotionApproval{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "bad"},
			Spec: trainyardv1.PromotionApprovalSpec{Train: "x.stable", Version: "1", Waive: []trainyardv1.GateName{trainyardv1.GateNotRetracted},
				Expires: metav1.NewTime(fakeClock.Now().Add(time.Hour)), Reason: "no"},
		})
		Expect(err).To(MatchError(ContainSubstring("NotRetracted cannot be waived")))
	})

	It("promotes exactly once with two managers racing", func() {
		// A second replica without leader election. Both replicas' creations
		// of a promoted release meet at a barrier (racingClient), so they
		// create it at the same moment, each from a cache that has not seen
		// the other's.
		b := promoteRace.race(ns, func(_ context.Context, mgr ctrl.Manager) error {
			return (&controllers.PromotionReconciler{Client: racingClient{mgr.GetClient(), "second"},
				Recorder: mgr.GetEventRecorder("second"), Clock: fakeClock}).SetupWithManager(mgr)
		})

		versions := []string{"1.0.0", "1.1.0", "1.2.0"}
		for i, v := range versions {
			publish(ns, "q", "beta", v, i+1)
			if i == 0 {
				promoting(ns, "q", trainyardv1.PromotionPolicy{From: "beta"})
			}
			Eventually(onStable(ns, "q", v)).Should(HaveLen(1))
			name := trainyardv1.ReleaseName("q", "stable", v)
			// Both replicas came to promote it, and the API server took one
			// creation: the other was told it exists.
			Eventually(func(g Gomega) { b.raced(g, name, apierrors.IsAlreadyExists) }).Should(Succeed())
		}
		// What a double promotion would change: a second release of a
		// version on stable, the stored release rewritten by the replica
		// that lost, or a second Promoted event.
		// (Its status is the train controller's: generations, not resource
		// versions, show a rewrite of what the promotion wrote.)
		stored := map[string]int64{}
		for _, v := range versions {
			rels := onStable(ns, "q", v)()
			Expect(rels).To(HaveLen(1))
			stored[rels[0].Name] = 1
		}
		Consistently(func(g Gomega) {
			var rels trainyardv1.ComponentReleaseList
			g.Expect(k8sClient.List(suiteCtx, &rels, client.InNamespace(ns))).To(Succeed())
			onStable := map[string]int64{}
			for _, r := range rels.Items {
				if r.Spec.Train == "stable" {
					onStable[r.Name] = r.Generation
				}
			}
			g.Expect(onStable).To(Equal(stored))
		}, 2*time.Second).Should(Succeed())
		reasons := eventReasons(ns, "q.stable")()
		n := 0
		for _, r := range reasons {
			if r == "Promoted" {
				n++
			}
		}
		Expect(n).To(Equal(3), "one Promoted event per promotion: %v", reasons)
		Expect(train(ns, "q.stable").Status.Promotion.Candidates).To(ConsistOf(HaveField("Version", "1.2.0")))
	})
})
