package controllers_test

import (
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	trainyardv1 "github.com/trainyard-dev/trainyard/api/v1alpha1"
)

// Issue 30's scenario against a real API server: five clusters on 1.0.0,
// 1.1.0, 1.2.0, 1.2.1 and 1.3.0 and an advisory (introduced 1.0.0, fixed
// 1.2.1). Exactly the three below 1.2.1 are exposed; a risk acceptance
// takes one out until it expires; withdrawn clears everything.
var _ = Describe("Advisory exposure", func() {
	var ns string
	BeforeEach(func() { ns = newNamespace() })

	exposed := func(name string) func() *trainyardv1.Exposure {
		return func() *trainyardv1.Exposure {
			a := &trainyardv1.Advisory{}
			if err := k8sClient.Get(suiteCtx, client.ObjectKey{Namespace: ns, Name: name}, a); err != nil || a.Status.ObservedGeneration != a.Generation {
				return nil
			}
			return a.Status.Exposed
		}
	}

	ids := func(name string) func() []string {
		return func() []string {
			if e := exposed(name)(); e != nil {
				return e.ClusterIDs
			}
			return nil
		}
	}

	It("lists the clusters below the fix, less those accepted until the acceptance expires, and none once withdrawn", func() {
		for i, v := range []string{"1.0.0", "1.1.0", "1.2.0", "1.2.1", "1.3.0"} {
			checkIn(ns, []string{"c0", "c1", "c2", "c3", "c4"}[i], comp("app", "stable", v))
		}
		checkIn(ns, "other", comp("db", "stable", "1.0.0")) // another component, same versions
		adv := &trainyardv1.Advisory{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "ghsa-1"},
			Spec: trainyardv1.AdvisorySpec{ID: "GHSA-1111-2222-3333", Aliases: []string{"CVE-2026-1"},
				Affected: []trainyardv1.AffectedComponent{{Component: "app", Ranges: []trainyardv1.AffectedRange{{Type: "SEMVER",
					Events: []trainyardv1.RangeEvent{{Introduced: "1.0.0"}, {Fixed: "1.2.1"}}}}}}}}
		Expect(k8sClient.Create(suiteCtx, adv)).To(Succeed())
		Eventually(exposed("ghsa-1")).Should(Equal(&trainyardv1.Exposure{Clusters: 3,
			ByTrain: []trainyardv1.TrainExposure{{Train: "stable", Clusters: 3}}, ClusterIDs: []string{"c0", "c1", "c2"}}))

		// A cluster that upgrades past the fix leaves the list.
		checkIn(ns, "c2", comp("app", "stable", "1.2.1"))
		Eventually(ids("ghsa-1")).Should(Equal([]string{"c0", "c1"}))

		// The team says c1 is not affected, by the advisory's alias, for an hour.
		Expect(k8sClient.Create(suiteCtx, &trainyardv1.RiskAcceptance{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "c1-not-affected"},
			Spec: trainyardv1.RiskAcceptanceSpec{Risks: []string{"CVE-2026-1"}, Component: "app", Clusters: []string{"c1"},
				Expires: metav1.NewTime(fakeClock.Now().Add(time.Hour)), Reason: "the vulnerable handler is disabled"}})).To(Succeed())
		Eventually(ids("ghsa-1")).Should(Equal([]string{"c0"}))
		// An acceptance of another risk takes nobody out.
		Expect(k8sClient.Create(suiteCtx, &trainyardv1.RiskAcceptance{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "other-risk"},
			Spec: trainyardv1.RiskAcceptanceSpec{Risks: []string{"full-restart"}, Clusters: []string{"c0"},
				Expires: metav1.NewTime(fakeClock.Now().Add(time.Hour)), Reason: "unrelated"}})).To(Succeed())
		Consistently(ids("ghsa-1"), time.Second).Should(Equal([]string{"c0"}))

		// When it expires, c1 is exposed again.
		fakeClock.Step(time.Hour + time.Second)
		Eventually(ids("ghsa-1")).Should(Equal([]string{"c0", "c1"}))
		a := &trainyardv1.Advisory{}
		Expect(k8sClient.Get(suiteCtx, client.ObjectKeyFromObject(adv), a)).To(Succeed())
		Expect(a.Status.Conditions).To(ContainElement(And(HaveField("Type", trainyardv1.ConditionExposed),
			HaveField("Status", metav1.ConditionTrue), HaveField("Message", "2 clusters run an affected version: c0, c1"))))

		// Withdrawn: nobody.
		patch := client.MergeFrom(a.DeepCopy())
		a.Spec.Withdrawn = &metav1.Time{Time: fakeClock.Now()}
		Expect(k8sClient.Patch(suiteCtx, a, patch)).To(Succeed())
		Eventually(exposed("ghsa-1")).Should(Equal(&trainyardv1.Exposure{}))
		Expect(k8sClient.Get(suiteCtx, client.ObjectKeyFromObject(adv), a)).To(Succeed())
		Expect(a.Status.Conditions).To(ContainElement(And(HaveField("Type", trainyardv1.ConditionExposed),
			HaveField("Status", metav1.ConditionFalse), HaveField("Reason", "Withdrawn"))))
	})

	// advisoryIDs are the advisories a report lists for app.
	advisoryIDs := func(id string) func() []string {
		return func() []string {
			c := appStatus(ns, id)()
			if c == nil {
				return nil
			}
			var out []string
			for _, a := range c.GetAdvisories() {
				out = append(out, a.ID)
			}
			return out
		}
	}
	affectedCondition := func(name string) func() string {
		return func() string {
			c := meta.FindStatusCondition(release(ns, name).Status.Conditions, trainyardv1.ConditionAffected)
			if c == nil {
				return "absent"
			}
			return string(c.Status) + " " + c.Message
		}
	}
	ghsa := func(expedite bool, fixed string) *trainyardv1.Advisory {
		return &trainyardv1.Advisory{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "ghsa-1"},
			Spec: trainyardv1.AdvisorySpec{ID: "GHSA-1111-2222-3333", Summary: "a flaw", Expedite: expedite,
				References: []trainyardv1.AdvisoryReference{{Type: "ADVISORY", URL: "https://example.com/GHSA-1111-2222-3333"}},
				Affected: []trainyardv1.AffectedComponent{{Component: "app", Ranges: []trainyardv1.AffectedRange{{Type: "SEMVER",
					Events: []trainyardv1.RangeEvent{{Introduced: "1.0.0"}, {Fixed: fixed}}}}}}}}
	}

	It("recommends the exposed clusters the nearest fixed version by a path that avoids affected versions, and marks the affected releases", func() {
		for i, v := range []string{"1.0.0", "1.1.0", "1.2.0", "1.2.1", "1.3.0"} {
			publish(ns, "app", "stable", v, i, func(r *trainyardv1.ComponentRelease) {
				if v == "1.3.0" {
					r.Spec.UpgradeFrom = ">=1.2.1"
				}
			})
		}
		Eventually(latestOf(ns, "app.stable")).Should(Equal("1.3.0"))
		for i, v := range []string{"1.0.0", "1.1.0", "1.2.0", "1.2.1", "1.3.0"} {
			checkIn(ns, []string{"c0", "c1", "c2", "c3", "c4"}[i], comp("app", "stable", v))
		}
		// Without the advisory, the highest: 1.3.0 through 1.2.1 (or 1.2.0).
		Eventually(recommended(ns, "c1")).Should(Equal("1.3.0"))
		Expect(release(ns, "app.stable.1.1.0").Status.Conditions).NotTo(ContainElement(HaveField("Type", trainyardv1.ConditionAffected)),
			"no advisory of app: no Affected condition")

		Expect(k8sClient.Create(suiteCtx, ghsa(false, "1.2.1"))).To(Succeed())
		for _, id := range []string{"c0", "c1", "c2"} {
			Eventually(advisoryIDs(id)).Should(Equal([]string{"GHSA-1111-2222-3333"}), id)
			Eventually(appStatus(ns, id)).Should(And(HaveField("Recommended", "1.2.1"), HaveField("GetPath()", []string{"1.2.1"})),
				"%s: the nearest fix, not 1.3.0, and no affected hop", id)
			Expect(report(ns, id).Status.Summary.Exposed).To(Equal(int32(1)))
		}
		for _, id := range []string{"c3", "c4"} {
			Expect(advisoryIDs(id)()).To(BeEmpty(), id)
		}
		Expect(recommended(ns, "c3")()).To(Equal("1.3.0"))
		Eventually(affectedCondition("app.stable.1.1.0")).Should(Equal("True affected by GHSA-1111-2222-3333"))
		Eventually(affectedCondition("app.stable.1.2.1")).Should(Equal("False no advisory of app affects this version"))

		// 1.2.1 turns out affected too. The nearest fix is 1.3.0, which
		// takes only 1.2.1 and up: the clusters below 1.2.1 cannot reach it
		// without an affected hop, so they are recommended nothing; 1.2.1's
		// cluster is exposed now, and goes to 1.3.0 directly.
		a := &trainyardv1.Advisory{}
		Expect(k8sClient.Get(suiteCtx, client.ObjectKey{Namespace: ns, Name: "ghsa-1"}, a)).To(Succeed())
		patch := client.MergeFrom(a.DeepCopy())
		a.Spec.Affected[0].Ranges[0].Events[1].Fixed = "1.3.0"
		Expect(k8sClient.Patch(suiteCtx, a, patch)).To(Succeed())
		Eventually(advisoryIDs("c3")).Should(Equal([]string{"GHSA-1111-2222-3333"}))
		for _, id := range []string{"c0", "c1", "c2"} {
			Eventually(appStatus(ns, id)).Should(And(HaveField("Recommended", ""), HaveField("GetPath()", BeEmpty()),
				HaveField("GetConditional()", ContainElement(HaveField("Version", "1.2.1"))),
			), id)
		}
		Expect(appStatus(ns, "c3")()).To(And(HaveField("Recommended", "1.3.0"), HaveField("GetPath()", []string{"1.3.0"})))
		Eventually(affectedCondition("app.stable.1.2.1")).Should(Equal("True affected by GHSA-1111-2222-3333"))
		Eventually(exposed("ghsa-1")).Should(HaveField("Clusters", int32(4)))

		// Withdrawn: no advisory on any report, recommendations as before.
		Expect(k8sClient.Get(suiteCtx, client.ObjectKey{Namespace: ns, Name: "ghsa-1"}, a)).To(Succeed())
		patch = client.MergeFrom(a.DeepCopy())
		a.Spec.Withdrawn = &metav1.Time{Time: fakeClock.Now()}
		Expect(k8sClient.Patch(suiteCtx, a, patch)).To(Succeed())
		for _, id := range []string{"c0", "c1", "c2", "c3"} {
			Eventually(advisoryIDs(id)).Should(BeEmpty(), id)
			Eventually(recommended(ns, id)).Should(Equal("1.3.0"), id)
		}
		Eventually(affectedCondition("app.stable.1.1.0")).Should(Equal("False no advisory of app affects this version"))

		// Deleted: the condition goes with the component's last advisory.
		Expect(k8sClient.Delete(suiteCtx, a)).To(Succeed())
		Eventually(affectedCondition("app.stable.1.1.0")).Should(Equal("absent"))
	})

	It("expedites the fix past the rollout's rings, on the record, only when the advisory says so", func() {
		rolledOut(ns, rings()) // every cluster on 1.1.0
		publish(ns, "app", "stable", "1.2.0", 2)
		Eventually(appStatus(ns, "early-1")).Should(And(HaveField("Recommended", ""), HaveField("GetHeldBack().Version", "1.2.0")))

		// A cluster on a train trainyard does not know is exposed all the same.
		checkIn(ns, "untracked", comp("app", "edge", "1.1.0"))
		Eventually(stateOf(ns, "untracked", "app")).Should(Equal(trainyardv1.StateUnknown))

		// Not expedited: exposed, and still held by the ring.
		Expect(k8sClient.Create(suiteCtx, ghsa(false, "1.2.0"))).To(Succeed())
		Eventually(advisoryIDs("early-1")).Should(Equal([]string{"GHSA-1111-2222-3333"}))
		Eventually(advisoryIDs("untracked")).Should(Equal([]string{"GHSA-1111-2222-3333"}))
		Consistently(recommended(ns, "early-1"), time.Second).Should(Equal(""))

		a := &trainyardv1.Advisory{}
		Expect(k8sClient.Get(suiteCtx, client.ObjectKey{Namespace: ns, Name: "ghsa-1"}, a)).To(Succeed())
		patch := client.MergeFrom(a.DeepCopy())
		a.Spec.Expedite = true
		Expect(k8sClient.Patch(suiteCtx, a, patch)).To(Succeed())
		for _, id := range []string{"early-1", "other-1", "unlabelled"} {
			Eventually(appStatus(ns, id)).Should(And(HaveField("Recommended", "1.2.0"), HaveField("GetHeldBack()", BeNil())), id)
		}
		Eventually(func() []trainyardv1.ExpeditedFix {
			Expect(k8sClient.Get(suiteCtx, client.ObjectKey{Namespace: ns, Name: "ghsa-1"}, a)).To(Succeed())
			return a.Status.Expedited
		}).Should(ConsistOf(And(HaveField("Train", "app.stable"), HaveField("Version", "1.2.0"))))
		Eventually(eventReasons(ns, "ghsa-1")).Should(ContainElement("Expedited"))
		// The ring itself is as it was: only the exposed clusters skip it.
		Expect(ringOf(ns, "app.stable", "everyone")()).To(HaveField("Version", "1.1.0"))
	})
})
