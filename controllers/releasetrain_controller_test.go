package controllers_test

import (
	"fmt"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	trainyardv1 "github.com/trainyard-dev/trainyard/api/v1alpha1"
	"github.com/trainyard-dev/trainyard/controllers"
)

var _ = Describe("ReleaseTrain controller", func() {
	var ns string
	BeforeEach(func() { ns = newNamespace() })

	It("creates a train with the default policy for releases published out of order, highest semver latest", func() {
		publish(ns, "router", "stable", "v1.10.0", 1)
		publish(ns, "router", "stable", "v1.2.0", 9)
		publish(ns, "router", "stable", "v1.9.3", 5)
		Eventually(latestOf(ns, "router.stable")).Should(Equal("v1.10.0"))
		Eventually(func() int32 { return train(ns, "router.stable").Status.ReleaseCount }).Should(BeEquivalentTo(3))
		t := train(ns, "router.stable")
		Expect(t.Labels).To(HaveKeyWithValue(controllers.LabelCreatedBy, "controller"))
		Expect(t.Spec.Ordering).To(Equal(trainyardv1.OrderingSemver))
		Expect(meta.IsStatusConditionTrue(t.Status.Conditions, trainyardv1.ConditionReady)).To(BeTrue())
		Expect(t.Status.ObservedGeneration).To(Equal(t.Generation))

		Eventually(func() bool { return release(ns, "router.stable.v1.10.0").Status.Latest }).Should(BeTrue())
		Expect(release(ns, "router.stable.v1.2.0").Status.Latest).To(BeFalse())
		// Each release's status is written by its own reconcile: it may come
		// after the train's.
		Eventually(func() *trainyardv1.ParsedVersion { return release(ns, "router.stable.v1.2.0").Status.Semver }).
			Should(HaveValue(Equal(trainyardv1.ParsedVersion{Major: 1, Minor: 2})))
		Eventually(eventReasons(ns, "router.stable")).Should(ContainElement("NewLatest"))
	})

	It("orders by release time when the train says so", func() {
		Expect(k8sClient.Create(suiteCtx, &trainyardv1.ReleaseTrain{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "router.stable"},
			Spec:       trainyardv1.ReleaseTrainSpec{Component: "router", Train: "stable", Ordering: trainyardv1.OrderingReleaseTime},
		})).To(Succeed())
		publish(ns, "router", "stable", "v1.10.0", 1)
		publish(ns, "router", "stable", "v1.9.3", 5)
		Eventually(latestOf(ns, "router.stable")).Should(Equal("v1.9.3"))
		publish(ns, "router", "stable", "v1.2.0", 9)
		Eventually(latestOf(ns, "router.stable")).Should(Equal("v1.2.0"))
		Expect(train(ns, "router.stable").Status.Previous.Version).To(Equal("v1.9.3"))
		Expect(train(ns, "router.stable").Labels).NotTo(HaveKey(controllers.LabelCreatedBy))
	})

	It("counts pre-releases on their train unless the train excludes them", func() {
		publish(ns, "router", "beta", "v2.0.0", 1)
		publish(ns, "router", "beta", "v2.1.0-beta.1", 2)
		Eventually(latestOf(ns, "router.beta")).Should(Equal("v2.1.0-beta.1"))

		Expect(k8sClient.Create(suiteCtx, &trainyardv1.ReleaseTrain{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "router.stable"},
			Spec:       trainyardv1.ReleaseTrainSpec{Component: "router", Train: "stable", Prereleases: trainyardv1.PrereleasesExclude},
		})).To(Succeed())
		publish(ns, "router", "stable", "v2.0.0", 1)
		publish(ns, "router", "stable", "v2.1.0-rc.1", 2)
		Eventually(latestOf(ns, "router.stable")).Should(Equal("v2.0.0"))
		Consistently(latestOf(ns, "router.stable"), "300ms").Should(Equal("v2.0.0"))
	})

	It("pins the latest to the versionRange, and follows a range change", func() {
		Expect(k8sClient.Create(suiteCtx, &trainyardv1.ReleaseTrain{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "db.stable"},
			Spec:       trainyardv1.ReleaseTrainSpec{Component: "db", Train: "stable", VersionRange: "~14.2"},
		})).To(Succeed())
		publish(ns, "db", "stable", "14.2.3", 1)
		publish(ns, "db", "stable", "14.3.0", 2)
		publish(ns, "db", "stable", "15.0.0", 3)
		Eventually(latestOf(ns, "db.stable")).Should(Equal("14.2.3"))

		t := train(ns, "db.stable")
		before := t.DeepCopy()
		t.Spec.VersionRange = "<15"
		Expect(k8sClient.Patch(suiteCtx, t, client.MergeFrom(before))).To(Succeed())
		Eventually(latestOf(ns, "db.stable")).Should(Equal("14.3.0"))
	})

	It("stalls a train whose versionRange does not parse, keeping its last latest", func() {
		publish(ns, "db", "stable", "14.2.3", 1)
		Eventually(latestOf(ns, "db.stable")).Should(Equal("14.2.3"))
		t := train(ns, "db.stable")
		before := t.DeepCopy()
		t.Spec.VersionRange = ">>14"
		Expect(k8sClient.Patch(suiteCtx, t, client.MergeFrom(before))).To(Succeed())
		Eventually(func() string {
			c := meta.FindStatusCondition(train(ns, "db.stable").Status.Conditions, trainyardv1.ConditionStalled)
			if c == nil {
				return ""
			}
			return c.Reason + ": " + c.Message
		}).Should(ContainSubstring(`InvalidVersionRange: versionRange ">>14" is not a semantic-version constraint`))
		Expect(latestOf(ns, "db.stable")()).To(Equal("14.2.3"))
	})

	It("falls back when the latest is retracted, and says so", func() {
		publish(ns, "router", "stable", "v1.0.0", 1)
		Eventually(latestOf(ns, "router.stable")).Should(Equal("v1.0.0"))
		publish(ns, "router", "stable", "v1.1.0", 2)
		Eventually(latestOf(ns, "router.stable")).Should(Equal("v1.1.0"))

		r := release(ns, "router.stable.v1.1.0")
		before := r.DeepCopy()
		r.Spec.Retracted = &trainyardv1.Retraction{Reason: "corrupts the cache"}
		Expect(k8sClient.Patch(suiteCtx, r, client.MergeFrom(before))).To(Succeed())
		Eventually(latestOf(ns, "router.stable")).Should(Equal("v1.0.0"))
		t := train(ns, "router.stable")
		Expect(t.Status.Previous.Version).To(Equal("v1.1.0"))
		Expect(t.Status.History).To(HaveLen(3)) // v1.0.0, v1.1.0, v1.0.0
		Eventually(func() bool {
			return meta.IsStatusConditionTrue(release(ns, "router.stable.v1.1.0").Status.Conditions, trainyardv1.ConditionRetracted)
		}).Should(BeTrue())
		Eventually(func() bool { return release(ns, "router.stable.v1.0.0").Status.Latest }).Should(BeTrue())
		Eventually(func() bool { return release(ns, "router.stable.v1.1.0").Status.Latest }).Should(BeFalse())
		Eventually(eventReasons(ns, "router.stable.v1.1.0")).Should(ContainElement("Retracted"))
	})

	It("flags a non-semver version with a condition and an event, and never makes it latest", func() {
		publish(ns, "tool", "stable", "1.0.0", 1)
		publish(ns, "tool", "stable", "nightly-20261124", 9)
		Eventually(func() string {
			c := meta.FindStatusCondition(release(ns, "tool.stable.nightly-20261124").Status.Conditions, trainyardv1.ConditionSemver)
			if c == nil {
				return ""
			}
			return string(c.Status) + " " + c.Reason
		}).Should(Equal("False NotSemver"))
		Expect(release(ns, "tool.stable.nightly-20261124").Status.Semver).To(BeNil())
		Eventually(eventReasons(ns, "tool.stable.nightly-20261124")).Should(ContainElement("NotSemver"))
		Expect(latestOf(ns, "tool.stable")()).To(Equal("1.0.0"))
	})

	It("falls back when the latest is deleted, and deletes its own train with the last release", func() {
		a := publish(ns, "router", "stable", "v1.0.0", 1)
		b := publish(ns, "router", "stable", "v1.1.0", 2)
		Eventually(latestOf(ns, "router.stable")).Should(Equal("v1.1.0"))
		Expect(k8sClient.Delete(suiteCtx, b)).To(Succeed())
		Eventually(latestOf(ns, "router.stable")).Should(Equal("v1.0.0"))
		Expect(train(ns, "router.stable").Status.ReleaseCount).To(BeEquivalentTo(1))
		Expect(k8sClient.Delete(suiteCtx, a)).To(Succeed())
		Eventually(func() *trainyardv1.ReleaseTrain { return train(ns, "router.stable") }).Should(BeNil())
	})

	It("re-creates a train a user deletes while releases exist", func() {
		publish(ns, "router", "stable", "v1.0.0", 1)
		Eventually(latestOf(ns, "router.stable")).Should(Equal("v1.0.0"))
		old := train(ns, "router.stable")
		Expect(k8sClient.Delete(suiteCtx, old)).To(Succeed())
		Eventually(func() types.UID {
			if t := train(ns, "router.stable"); t != nil && t.Status.Latest != nil {
				return t.UID
			}
			return ""
		}).ShouldNot(Or(BeEmpty(), Equal(old.UID)))
	})

	It("keeps only historyLimit entries of history", func() {
		limit := int32(2)
		Expect(k8sClient.Create(suiteCtx, &trainyardv1.ReleaseTrain{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "router.stable"},
			Spec:       trainyardv1.ReleaseTrainSpec{Component: "router", Train: "stable", HistoryLimit: &limit},
		})).To(Succeed())
		for i, v := range []string{"1.0.0", "1.1.0", "1.2.0", "1.3.0"} {
			publish(ns, "router", "stable", v, i)
			Eventually(latestOf(ns, "router.stable")).Should(Equal(v))
		}
		h := train(ns, "router.stable").Status.History
		Expect(h).To(HaveLen(2))
		Expect(h[0].Version).To(Equal("1.3.0"))
		Expect(h[1].Version).To(Equal("1.2.0"))
	})
})

var _ = Describe("Fleet adoption", func() {
	It("counts clusters per version, up to date and behind", func() {
		ns := newNamespace()
		publish(ns, "router", "stable", "v1.0.0", 1)
		publish(ns, "router", "stable", "v1.1.0", 2)
		Eventually(latestOf(ns, "router.stable")).Should(Equal("v1.1.0"))
		checkIn(ns, "a", comp("router", "stable", "v1.1.0"))
		checkIn(ns, "b", comp("router", "stable", "1.1.0"))
		checkIn(ns, "c", comp("router", "stable", "v1.0.0"))
		checkIn(ns, "d", comp("router", "beta", "v1.0.0")) // another train
		Eventually(func() *trainyardv1.FleetAdoption { return train(ns, "router.stable").Status.Adoption }).Should(HaveValue(Equal(trainyardv1.FleetAdoption{
			Clusters: 3, UpToDate: 2, Behind: 1, Summary: "2/3",
			Versions: []trainyardv1.VersionAdoption{{Version: "v1.1.0", Clusters: 2}, {Version: "v1.0.0", Clusters: 1}},
		})))

		labels := map[string]string{"namespace": ns, "component": "router", "train": "stable"}
		Eventually(metricValue("trainyard_train_clusters", labels, "version", "v1.1.0")).Should(Equal(2.0))
		Expect(metricValue("trainyard_train_clusters", labels, "version", "v1.0.0")()).To(Equal(1.0))
		Expect(metricValue("trainyard_train_clusters_behind", labels)()).To(Equal(1.0))
		Expect(metricValue("trainyard_train_latest_info", labels, "version", "v1.1.0")()).To(Equal(1.0))

		// A cluster that moves to another train is no longer counted here.
		checkIn(ns, "c", comp("router", "beta", "v1.0.0"))
		Eventually(adoptionSummary(ns, "router.stable")).Should(Equal("2/2"))
		Eventually(metricValue("trainyard_train_clusters", labels, "version", "v1.0.0")).Should(Equal(-1.0))
		Expect(metricValue("trainyard_train_clusters_behind", labels)()).To(Equal(0.0))
	})

	It("counts stale clusters and clusters running retracted releases", func() {
		ns := newNamespace()
		publish(ns, "ctl", "stable", "1.0.0", 1, func(r *trainyardv1.ComponentRelease) { r.Spec.Retracted = &trainyardv1.Retraction{Reason: "bad"} })
		publish(ns, "ctl", "stable", "1.0.1", 2)
		Eventually(latestOf(ns, "ctl.stable")).Should(Equal("1.0.1"))
		checkIn(ns, "a", comp("ctl", "stable", "1.0.0"))
		checkIn(ns, "b", comp("ctl", "stable", "1.0.0"))
		checkIn(ns, "c", comp("ctl", "stable", "1.0.1"))
		nsLabel := map[string]string{"namespace": ns}
		Eventually(metricValue("trainyard_clusters_running_retracted", nsLabel)).Should(Equal(2.0))
		Expect(k8sClient.Delete(suiteCtx, report(ns, "a"))).To(Succeed())
		Eventually(metricValue("trainyard_clusters_running_retracted", nsLabel)).Should(Equal(1.0))

		fakeClock.Step(staleThreshold)
		Eventually(metricValue("trainyard_clusters_stale", nsLabel)).Should(Equal(2.0))
		checkIn(ns, "b", comp("ctl", "stable", "1.0.1"))
		Eventually(metricValue("trainyard_clusters_stale", nsLabel)).Should(Equal(1.0))
		Eventually(metricValue("trainyard_clusters_running_retracted", nsLabel)).Should(Equal(0.0))
	})
})

var _ = Describe("ComponentRelease status", func() {
	It("spells out latest: false on a release that was never latest (kubectl's LATEST column)", func() {
		ns := newNamespace()
		publish(ns, "lb", "stable", "2.0.0", 2)
		Eventually(latestOf(ns, "lb.stable")).Should(Equal("2.0.0"))
		publish(ns, "lb", "stable", "1.0.0", 1) // older: never latest
		Eventually(func() string {
			u := &unstructured.Unstructured{}
			u.SetGroupVersionKind(trainyardv1.GroupVersion.WithKind("ComponentRelease"))
			Expect(k8sClient.Get(suiteCtx, types.NamespacedName{Namespace: ns, Name: "lb.stable.1.0.0"}, u)).To(Succeed())
			latest, found, _ := unstructured.NestedFieldNoCopy(u.Object, "status", "latest")
			return fmt.Sprintf("%v %v", found, latest)
		}).Should(Equal("true false"))
	})
})
