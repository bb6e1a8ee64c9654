package controllers_test

import (
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	trainyardv1 "github.com/trainyard-dev/trainyard/api/v1alpha1"
)

// componentStatus is a report's status of one component.
func componentStatus(ns, id, component string) func() trainyardv1.ComponentStatus {
	return func() trainyardv1.ComponentStatus {
		for _, c := range report(ns, id).Status.Components {
			if c.Name == component {
				return c
			}
		}
		return trainyardv1.ComponentStatus{}
	}
}

// sinceOf is since when a report's component runs its version, stored or
// not (absent: the report's firstSeen).
func sinceOf(ns, id, component string) func() *metav1.Time {
	return func() *metav1.Time {
		r := report(ns, id)
		if r == nil {
			return nil
		}
		for _, c := range r.Status.Components {
			if c.Name == component {
				return c.SinceOr(r.Status.FirstSeen)
			}
		}
		return nil
	}
}

func pathOf(ns, id, component string) func() []string {
	return func() []string { cs := componentStatus(ns, id, component)(); return cs.GetPath() }
}

var _ = Describe("Recommended upgrades", func() {
	var ns string
	BeforeEach(func() { ns = newNamespace() })

	It("gives each cluster its path: upgradeFrom, retractions and risks (the issue's graph)", func() {
		for i, v := range []string{"1.0.0", "1.1.0", "1.2.0", "1.3.0", "1.4.0"} {
			publish(ns, "app", "stable", v, i+1)
		}
		var v22 *trainyardv1.ComponentRelease
		for i, v := range []string{"2.0.0", "2.1.0", "2.2.0", "2.3.0"} {
			rel := publish(ns, "app", "stable", v, 10+i, func(r *trainyardv1.ComponentRelease) {
				r.Spec.UpgradeFrom = ">=1.4.0"
				if r.Spec.Version == "2.1.0" {
					r.Spec.Retracted = &trainyardv1.Retraction{Reason: "broken migration"}
				}
				if r.Spec.Version == "2.3.0" {
					r.Spec.Risks = []trainyardv1.UpgradeRisk{{Name: "old-kubernetes", Message: "2.3 needs Kubernetes 1.29 or later",
						URL: "https://example.com/kb/23", Rule: `compareVersions(cluster.properties.kubernetesVersion, "1.29") < 0`}}
				}
			})
			if v == "2.2.0" {
				v22 = rel
			}
		}
		old := checkIn(ns, "k128", comp("app", "stable", "1.2.0"))
		setProperties(old, map[string]string{"kubernetesVersion": "1.28"})
		recent := checkIn(ns, "k130", comp("app", "stable", "1.2.0"))
		setProperties(recent, map[string]string{"kubernetesVersion": "v1.30.1"})

		Eventually(pathOf(ns, "k128", "app")).Should(Equal([]string{"1.4.0", "2.2.0"}))
		Eventually(pathOf(ns, "k130", "app")).Should(Equal([]string{"1.4.0", "2.3.0"}))
		cs := componentStatus(ns, "k128", "app")()
		Expect(cs.Recommended).To(Equal("2.2.0"))
		Expect(cs.State).To(Equal(trainyardv1.StateUpdateAvailable))
		Expect(cs.Latest).To(Equal("2.3.0"))
		Expect(cs.GetConditional()).To(HaveLen(1))
		Expect(cs.GetConditional()[0].Version).To(Equal("2.3.0"))
		Expect(cs.GetConditional()[0].Risks).To(ConsistOf(trainyardv1.AppliedRisk{Name: "old-kubernetes",
			Message: "2.3 needs Kubernetes 1.29 or later", URL: "https://example.com/kb/23", Reason: "applies to this cluster"}))
		Expect(componentStatus(ns, "k130", "app")().GetConditional()).To(BeEmpty())

		// A retraction moves the affected cluster within 2 s, and leaves the
		// other's status as it was (once it reflects its last spec: the
		// properties' write may still be on its way when the path is right).
		before := settled(ns, "k130").ResourceVersion
		patch := client.MergeFrom(v22.DeepCopy())
		v22.Spec.Retracted = &trainyardv1.Retraction{Reason: "data loss"}
		Expect(k8sClient.Patch(suiteCtx, v22, patch)).To(Succeed())
		Eventually(pathOf(ns, "k128", "app"), 2*time.Second, 20*time.Millisecond).Should(Equal([]string{"1.4.0", "2.0.0"}))
		Consistently(func() string { return report(ns, "k130").ResourceVersion }, time.Second).Should(Equal(before))
	})

	It("moves a conditional target into the recommendation while a risk acceptance is in force", func() {
		publish(ns, "mq", "stable", "1.0.0", 1)
		publish(ns, "mq", "stable", "1.1.0", 2, func(r *trainyardv1.ComponentRelease) {
			r.Spec.Risks = []trainyardv1.UpgradeRisk{{Name: "full-restart", Message: "restarts every broker at once", Rule: `true`}}
		})
		checkIn(ns, "by-id", comp("mq", "stable", "1.0.0"))
		canary := checkIn(ns, "by-label", comp("mq", "stable", "1.0.0"))
		patch := client.MergeFrom(canary.DeepCopy())
		canary.Labels = map[string]string{"ring": "canary"}
		Expect(k8sClient.Patch(suiteCtx, canary, patch)).To(Succeed())
		checkIn(ns, "neither", comp("mq", "stable", "1.0.0"))
		recommended := func(id string) func() string {
			return func() string { return componentStatus(ns, id, "mq")().Recommended }
		}
		Eventually(func() []trainyardv1.ConditionalUpdate { return componentStatus(ns, "by-id", "mq")().GetConditional() }).Should(HaveLen(1))

		// An acceptance of another component's risk accepts nothing here.
		Expect(k8sClient.Create(suiteCtx, &trainyardv1.RiskAcceptance{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "db-restart-ok"},
			Spec: trainyardv1.RiskAcceptanceSpec{Risks: []string{"full-restart"}, Component: "db", Clusters: []string{"by-id"},
				Expires: metav1.NewTime(fakeClock.Now().Add(time.Hour)), Reason: "db only"},
		})).To(Succeed())
		Consistently(recommended("by-id"), time.Second).Should(BeEmpty())

		Expect(k8sClient.Create(suiteCtx, &trainyardv1.RiskAcceptance{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "restart-ok"},
			Spec: trainyardv1.RiskAcceptanceSpec{Risks: []string{"full-restart"}, Component: "mq", Clusters: []string{"BY-ID"},
				ClusterSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"ring": "canary"}},
				Expires:         metav1.NewTime(fakeClock.Now().Add(30 * time.Minute)), Reason: "maintenance window tonight"},
		})).To(Succeed())
		Eventually(recommended("by-id")).Should(Equal("1.1.0"))
		Eventually(recommended("by-label")).Should(Equal("1.1.0"))
		Expect(componentStatus(ns, "by-id", "mq")().GetConditional()).To(BeEmpty())
		Consistently(recommended("neither"), time.Second).Should(BeEmpty())

		// At its expiry, with nothing else changing, the risk holds back again.
		fakeClock.Step(30 * time.Minute)
		Eventually(recommended("by-id")).Should(BeEmpty())
		Eventually(recommended("by-label")).Should(BeEmpty())

		// One that names no component accepts the risk of any.
		Expect(k8sClient.Create(suiteCtx, &trainyardv1.RiskAcceptance{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "any-restart-ok"},
			Spec: trainyardv1.RiskAcceptanceSpec{Risks: []string{"full-restart"}, Clusters: []string{"neither"},
				Expires: metav1.NewTime(fakeClock.Now().Add(time.Hour)), Reason: "any component"},
		})).To(Succeed())
		Eventually(recommended("neither")).Should(Equal("1.1.0"))
		Expect(recommended("by-id")()).To(BeEmpty())
	})

	It("refuses a risk acceptance that names no cluster", func() {
		err := k8sClient.Create(suiteCtx, &trainyardv1.RiskAcceptance{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "everyone"},
			Spec:       trainyardv1.RiskAcceptanceSpec{Risks: []string{"x"}, Expires: metav1.NewTime(fakeClock.Now().Add(time.Hour)), Reason: "r"},
		})
		Expect(err).To(MatchError(ContainSubstring("name the clusters: clusters, clusterSelector or both")))
	})

	It("holds back a target whose risk cannot be evaluated on the cluster, saying why", func() {
		publish(ns, "db", "stable", "1.0.0", 1)
		publish(ns, "db", "stable", "1.1.0", 2, func(r *trainyardv1.ComponentRelease) {
			r.Spec.Risks = []trainyardv1.UpgradeRisk{{Name: "arm", Message: "crashes on arm64", Rule: `cluster.properties.arch == "arm64"`}}
		})
		checkIn(ns, "noarch", comp("db", "stable", "1.0.0"))
		Eventually(func() []trainyardv1.ConditionalUpdate { return componentStatus(ns, "noarch", "db")().GetConditional() }).Should(HaveLen(1))
		cs := componentStatus(ns, "noarch", "db")()
		Expect(cs.Recommended).To(BeEmpty())
		Expect(cs.GetConditional()[0].Risks[0].Reason).To(Equal("cannot be evaluated on this cluster: no such key: arch"))
	})
})

// setProperties writes a report's spec.properties (what an agent reports).
func setProperties(r *trainyardv1.ClusterReport, props map[string]string) {
	GinkgoHelper()
	Expect(k8sClient.Get(suiteCtx, client.ObjectKeyFromObject(r), r)).To(Succeed())
	patch := client.MergeFrom(r.DeepCopy())
	r.Spec.Properties = props
	Expect(k8sClient.Patch(suiteCtx, r, patch)).To(Succeed())
}
