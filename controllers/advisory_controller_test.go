package controllers_test

import (
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
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
})
