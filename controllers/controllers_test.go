package controllers_test

import (
	"fmt"
	"maps"
	"regexp"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	v1 "github.com/trainyard-dev/trainyard/api/v1alpha1"
	"github.com/trainyard-dev/trainyard/controllers"
)

// metricValue reads one gauge from the manager's metrics registry: the
// series with all of labels plus the extra name/value pairs; -1 when absent.
func metricValue(name string, labels map[string]string, extra ...string) func() float64 {
	want := maps.Clone(labels)
	for i := 0; i+1 < len(extra); i += 2 {
		want[extra[i]] = extra[i+1]
	}
	return func() float64 {
		families, err := ctrlmetrics.Registry.Gather()
		Expect(err).NotTo(HaveOccurred())
		for _, f := range families {
			if f.GetName() != name {
				continue
			}
		series:
			for _, m := range f.GetMetric() {
				got := map[string]string{}
				for _, l := range m.GetLabel() {
					got[l.GetName()] = l.GetValue()
				}
				for k, v := range want {
					if got[k] != v {
						continue series
					}
				}
				if len(got) != len(want) {
					continue
				}
				return m.GetGauge().GetValue()
			}
		}
		return -1
	}
}

var unsafe = regexp.MustCompile(`[^a-z0-9.-]+`)

var day0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// publish creates a release, released on day0 plus `day` days.
func publish(ns, component, train, version string, day int, mutate ...func(*v1.ComponentRelease)) *v1.ComponentRelease {
	GinkgoHelper()
	r := &v1.ComponentRelease{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns,
			Name: unsafe.ReplaceAllString(strings.ToLower(component+"."+train+"."+version), "-")},
		Spec: v1.ComponentReleaseSpec{Component: component, Train: train, Version: version,
			Released: &metav1.Time{Time: day0.AddDate(0, 0, day)}},
	}
	for _, m := range mutate {
		m(r)
	}
	Expect(k8sClient.Create(suiteCtx, r)).To(Succeed())
	return r
}

func train(ns, name string) *v1.ReleaseTrain {
	t := &v1.ReleaseTrain{}
	if err := k8sClient.Get(suiteCtx, types.NamespacedName{Namespace: ns, Name: name}, t); err != nil {
		return nil
	}
	return t
}

// latestOf is the train's latest version, "" when it has none or is missing.
func latestOf(ns, name string) func() string {
	return func() string {
		t := train(ns, name)
		if t == nil || t.Status.Latest == nil {
			return ""
		}
		return t.Status.Latest.Version
	}
}

// adoptionSummary is the train's "up-to-date/clusters", "" before it has one.
func adoptionSummary(ns, name string) func() string {
	return func() string {
		if t := train(ns, name); t != nil && t.Status.Adoption != nil {
			return t.Status.Adoption.Summary
		}
		return ""
	}
}

func release(ns, name string) *v1.ComponentRelease {
	GinkgoHelper()
	r := &v1.ComponentRelease{}
	Expect(k8sClient.Get(suiteCtx, types.NamespacedName{Namespace: ns, Name: name}, r)).To(Succeed())
	return r
}

// checkIn creates or updates a cluster's report and records a check-in at
// the fake clock's time, as the bridge does.
func checkIn(ns, id string, comps ...v1.ReportedComponent) *v1.ClusterReport {
	GinkgoHelper()
	r := &v1.ClusterReport{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: id}}
	err := k8sClient.Get(suiteCtx, client.ObjectKeyFromObject(r), r)
	if client.IgnoreNotFound(err) != nil {
		Expect(err).NotTo(HaveOccurred())
	}
	old := r.DeepCopy()
	r.Spec = v1.ClusterReportSpec{ClusterID: id, Components: comps}
	if err != nil {
		Expect(k8sClient.Create(suiteCtx, r)).To(Succeed())
	} else {
		// A merge patch: the controller may write the status meanwhile.
		Expect(k8sClient.Patch(suiteCtx, r, client.MergeFrom(old))).To(Succeed())
	}
	before := r.DeepCopy()
	now := metav1.NewTime(fakeClock.Now())
	if r.Status.FirstSeen == nil {
		r.Status.FirstSeen = &now
	}
	r.Status.LastSeen = &now
	r.Status.CheckIns++
	Expect(k8sClient.Status().Patch(suiteCtx, r, client.MergeFrom(before))).To(Succeed())
	return r
}

func comp(name, train, version string) v1.ReportedComponent {
	return v1.ReportedComponent{Name: name, Train: train, Version: version}
}

func report(ns, id string) *v1.ClusterReport {
	r := &v1.ClusterReport{}
	if err := k8sClient.Get(suiteCtx, types.NamespacedName{Namespace: ns, Name: id}, r); err != nil {
		return nil
	}
	return r
}

// stateOf is the state of one component in a report's status.
func stateOf(ns, id, component string) func() v1.ComponentState {
	return func() v1.ComponentState {
		r := report(ns, id)
		if r == nil {
			return ""
		}
		for _, c := range r.Status.Components {
			if c.Name == component {
				return c.State
			}
		}
		return ""
	}
}

func conditionOf(ns, id, typ string) func() metav1.ConditionStatus {
	return func() metav1.ConditionStatus {
		r := report(ns, id)
		if r == nil {
			return ""
		}
		if c := meta.FindStatusCondition(r.Status.Conditions, typ); c != nil {
			return c.Status
		}
		return ""
	}
}

// eventReasons lists the reasons of the events about one object.
func eventReasons(ns, name string) func() []string {
	return func() []string {
		var evs eventsv1.EventList
		Expect(k8sClient.List(suiteCtx, &evs, client.InNamespace(ns))).To(Succeed())
		var reasons []string
		for _, e := range evs.Items {
			if e.Regarding.Name == name {
				reasons = append(reasons, e.Reason)
			}
		}
		return reasons
	}
}

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
		Expect(t.Spec.Ordering).To(Equal(v1.OrderingSemver))
		Expect(meta.IsStatusConditionTrue(t.Status.Conditions, v1.ConditionReady)).To(BeTrue())
		Expect(t.Status.ObservedGeneration).To(Equal(t.Generation))

		Eventually(func() bool { return release(ns, "router.stable.v1.10.0").Status.Latest }).Should(BeTrue())
		Expect(release(ns, "router.stable.v1.2.0").Status.Latest).To(BeFalse())
		// Each release's status is written by its own reconcile: it may come
		// after the train's.
		Eventually(func() *v1.ParsedVersion { return release(ns, "router.stable.v1.2.0").Status.Semver }).
			Should(HaveValue(Equal(v1.ParsedVersion{Major: 1, Minor: 2})))
		Eventually(eventReasons(ns, "router.stable")).Should(ContainElement("NewLatest"))
	})

	It("orders by release time when the train says so", func() {
		Expect(k8sClient.Create(suiteCtx, &v1.ReleaseTrain{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "router.stable"},
			Spec:       v1.ReleaseTrainSpec{Component: "router", Train: "stable", Ordering: v1.OrderingReleaseTime},
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

		Expect(k8sClient.Create(suiteCtx, &v1.ReleaseTrain{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "router.stable"},
			Spec:       v1.ReleaseTrainSpec{Component: "router", Train: "stable", Prereleases: v1.PrereleasesExclude},
		})).To(Succeed())
		publish(ns, "router", "stable", "v2.0.0", 1)
		publish(ns, "router", "stable", "v2.1.0-rc.1", 2)
		Eventually(latestOf(ns, "router.stable")).Should(Equal("v2.0.0"))
		Consistently(latestOf(ns, "router.stable"), "300ms").Should(Equal("v2.0.0"))
	})

	It("pins the latest to the versionRange, and follows a range change", func() {
		Expect(k8sClient.Create(suiteCtx, &v1.ReleaseTrain{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "db.stable"},
			Spec:       v1.ReleaseTrainSpec{Component: "db", Train: "stable", VersionRange: "~14.2"},
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
			c := meta.FindStatusCondition(train(ns, "db.stable").Status.Conditions, v1.ConditionStalled)
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
		r.Spec.Retracted = &v1.Retraction{Reason: "corrupts the cache"}
		Expect(k8sClient.Patch(suiteCtx, r, client.MergeFrom(before))).To(Succeed())
		Eventually(latestOf(ns, "router.stable")).Should(Equal("v1.0.0"))
		t := train(ns, "router.stable")
		Expect(t.Status.Previous.Version).To(Equal("v1.1.0"))
		Expect(t.Status.History).To(HaveLen(3)) // v1.0.0, v1.1.0, v1.0.0
		Eventually(func() bool {
			return meta.IsStatusConditionTrue(release(ns, "router.stable.v1.1.0").Status.Conditions, v1.ConditionRetracted)
		}).Should(BeTrue())
		Eventually(func() bool { return release(ns, "router.stable.v1.0.0").Status.Latest }).Should(BeTrue())
		Eventually(func() bool { return release(ns, "router.stable.v1.1.0").Status.Latest }).Should(BeFalse())
		Eventually(eventReasons(ns, "router.stable.v1.1.0")).Should(ContainElement("Retracted"))
	})

	It("flags a non-semver version with a condition and an event, and never makes it latest", func() {
		publish(ns, "tool", "stable", "1.0.0", 1)
		publish(ns, "tool", "stable", "nightly-20261124", 9)
		Eventually(func() string {
			c := meta.FindStatusCondition(release(ns, "tool.stable.nightly-20261124").Status.Conditions, v1.ConditionSemver)
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
		Eventually(func() *v1.ReleaseTrain { return train(ns, "router.stable") }).Should(BeNil())
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
		Expect(k8sClient.Create(suiteCtx, &v1.ReleaseTrain{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "router.stable"},
			Spec:       v1.ReleaseTrainSpec{Component: "router", Train: "stable", HistoryLimit: &limit},
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

var _ = Describe("ClusterReport controller", func() {
	var ns string
	BeforeEach(func() { ns = newNamespace() })

	It("computes each component's state, the summary and the conditions", func() {
		publish(ns, "router", "stable", "v1.0.0", 1)
		publish(ns, "router", "stable", "v1.1.0", 2)
		publish(ns, "ctl", "stable", "2.0.0", 1, func(r *v1.ComponentRelease) {
			r.Spec.Retracted = &v1.Retraction{Reason: "bad"}
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
		Eventually(func() *v1.ComponentSummary { return report(ns, "c1").Status.Summary }).Should(HaveValue(Equal(
			v1.ComponentSummary{Total: 5, UpToDate: 1, UpdateAvailable: 1, Retracted: 1, Unknown: 2})))
		r := report(ns, "c1")
		Expect(r.Status.Components).To(ContainElements(
			v1.ComponentStatus{Name: "router", Train: "stable", Installed: "v1.0.0", Latest: "v1.1.0", State: v1.StateUpdateAvailable,
				Recommended: "v1.1.0", Path: []string{"v1.1.0"}},
			v1.ComponentStatus{Name: "ctl", Train: "stable", Installed: "2.0.0", Latest: "2.0.1", State: v1.StateRetracted,
				Recommended: "2.0.1", Path: []string{"2.0.1"}},
			v1.ComponentStatus{Name: "dns", Train: "stable", Installed: "v3.0.0", Latest: "3.0.0", State: v1.StateUpToDate},
			v1.ComponentStatus{Name: "gpu", Train: "beta", Installed: "0.1.0", State: v1.StateUnknown},
		))
		Expect(conditionOf(ns, "c1", v1.ConditionUpToDate)()).To(Equal(metav1.ConditionFalse))
		Expect(conditionOf(ns, "c1", v1.ConditionRunningRetracted)()).To(Equal(metav1.ConditionTrue))
		Expect(conditionOf(ns, "c1", v1.ConditionStale)()).To(Equal(metav1.ConditionFalse))
		Expect(conditionOf(ns, "c1", v1.ConditionReady)()).To(Equal(metav1.ConditionTrue))
	})

	It("marks a version the train does not know as Unknown, then known once published", func() {
		publish(ns, "router", "stable", "v1.0.0", 1)
		Eventually(latestOf(ns, "router.stable")).Should(Equal("v1.0.0"))
		checkIn(ns, "c1", comp("router", "stable", "v0.9.0"))
		Eventually(stateOf(ns, "c1", "router")).Should(Equal(v1.StateUnknown))
		publish(ns, "router", "stable", "v0.9.0", 0)
		Eventually(stateOf(ns, "c1", "router")).Should(Equal(v1.StateUpdateAvailable))
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
			Eventually(stateOf(ns, id, "router")).Should(Equal(v1.StateUpToDate))
		}
		Eventually(stateOf(ns, "only-dns", "dns")).Should(Equal(v1.StateUpToDate))
		untouched := report(ns, "only-dns").ResourceVersion

		publish(ns, "router", "stable", "v1.1.0", 2)
		for _, id := range []string{"a", "b", "c"} {
			Eventually(stateOf(ns, id, "router")).Should(Equal(v1.StateUpdateAvailable))
			Expect(conditionOf(ns, id, v1.ConditionUpToDate)()).To(Equal(metav1.ConditionFalse))
		}
		Expect(report(ns, "only-dns").ResourceVersion).To(Equal(untouched))
	})

	It("turns Stale exactly at the threshold and fresh again on the next check-in", func() {
		publish(ns, "router", "stable", "v1.0.0", 1)
		checkIn(ns, "c1", comp("router", "stable", "v1.0.0"))
		Eventually(conditionOf(ns, "c1", v1.ConditionStale)).Should(Equal(metav1.ConditionFalse))
		req := reconcile.Request{NamespacedName: types.NamespacedName{Namespace: ns, Name: "c1"}}

		// Just before the threshold: still fresh.
		fakeClock.Step(staleThreshold - time.Millisecond)
		_, err := reportRec.Reconcile(suiteCtx, req)
		Expect(err).NotTo(HaveOccurred())
		Expect(conditionOf(ns, "c1", v1.ConditionStale)()).To(Equal(metav1.ConditionFalse))

		// At the threshold the scheduled wake-up fires: nobody touches the report.
		fakeClock.Step(time.Millisecond)
		Eventually(conditionOf(ns, "c1", v1.ConditionStale)).Should(Equal(metav1.ConditionTrue))
		Eventually(eventReasons(ns, "c1")).Should(ContainElement("Stale"))

		checkIn(ns, "c1", comp("router", "stable", "v1.0.0"))
		Eventually(conditionOf(ns, "c1", v1.ConditionStale)).Should(Equal(metav1.ConditionFalse))
	})

	It("fills in the check-in record of a report written with kubectl", func() {
		r := &v1.ClusterReport{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "manual"},
			Spec:       v1.ClusterReportSpec{ClusterID: "manual"},
		}
		Expect(k8sClient.Create(suiteCtx, r)).To(Succeed())
		Eventually(func() int64 { return report(ns, "manual").Status.CheckIns }).Should(BeEquivalentTo(1))
		r = report(ns, "manual")
		Expect(r.Status.FirstSeen.Time).To(BeTemporally("==", r.CreationTimestamp.Time))
		Expect(r.Status.LastSeen.Time).To(BeTemporally("==", r.CreationTimestamp.Time))
		Expect(conditionOf(ns, "manual", v1.ConditionUpToDate)()).To(Equal(metav1.ConditionTrue))
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
		Eventually(func() *v1.FleetAdoption { return train(ns, "router.stable").Status.Adoption }).Should(HaveValue(Equal(v1.FleetAdoption{
			Clusters: 3, UpToDate: 2, Behind: 1, Summary: "2/3",
			Versions: []v1.VersionAdoption{{Version: "v1.1.0", Clusters: 2}, {Version: "v1.0.0", Clusters: 1}},
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
		publish(ns, "ctl", "stable", "1.0.0", 1, func(r *v1.ComponentRelease) { r.Spec.Retracted = &v1.Retraction{Reason: "bad"} })
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

var _ = Describe("Writes", func() {
	It("writes nothing when a forced resync changes nothing", func() {
		ns := newNamespace()
		publish(ns, "router", "stable", "v1.0.0", 1)
		publish(ns, "router", "stable", "v1.1.0", 2)
		publish(ns, "router", "stable", "nightly", 3)
		checkIn(ns, "a", comp("router", "stable", "v1.0.0"))
		checkIn(ns, "b", comp("router", "stable", "v1.1.0"))
		Eventually(adoptionSummary(ns, "router.stable")).Should(Equal("1/2"))
		Eventually(stateOf(ns, "a", "router")).Should(Equal(v1.StateUpdateAvailable))
		Eventually(stateOf(ns, "b", "router")).Should(Equal(v1.StateUpToDate))
		for _, id := range []string{"a", "b"} {
			Eventually(conditionOf(ns, id, v1.ConditionStale)).Should(Equal(metav1.ConditionFalse))
		}
		Eventually(func() bool { return release(ns, "router.stable.v1.1.0").Status.Latest }).Should(BeTrue())
		for _, name := range []string{"router.stable.v1.0.0", "router.stable.v1.1.0", "router.stable.nightly"} {
			Eventually(func() bool {
				return meta.IsStatusConditionTrue(release(ns, name).Status.Conditions, v1.ConditionReady)
			}).Should(BeTrue(), name)
		}

		versions := func() map[string]string {
			rv := map[string]string{}
			var rels v1.ComponentReleaseList
			var trains v1.ReleaseTrainList
			var reps v1.ClusterReportList
			for _, l := range []client.ObjectList{&rels, &trains, &reps} {
				Expect(k8sClient.List(suiteCtx, l, client.InNamespace(ns))).To(Succeed())
			}
			for _, o := range rels.Items {
				rv["release/"+o.Name] = o.ResourceVersion
			}
			for _, o := range trains.Items {
				rv["train/"+o.Name] = o.ResourceVersion
			}
			for _, o := range reps.Items {
				rv["report/"+o.Name] = o.ResourceVersion
			}
			return rv
		}
		before := versions()
		Expect(before).To(HaveLen(3 + 1 + 2))
		for _, name := range []string{"router.stable", "a", "b"} {
			req := reconcile.Request{NamespacedName: types.NamespacedName{Namespace: ns, Name: name}}
			if strings.Contains(name, ".") {
				_, err := trainRec.Reconcile(suiteCtx, req)
				Expect(err).NotTo(HaveOccurred())
			} else {
				_, err := reportRec.Reconcile(suiteCtx, req)
				Expect(err).NotTo(HaveOccurred())
			}
		}
		Expect(versions()).To(Equal(before))
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
			u.SetGroupVersionKind(v1.GroupVersion.WithKind("ComponentRelease"))
			Expect(k8sClient.Get(suiteCtx, types.NamespacedName{Namespace: ns, Name: "lb.stable.1.0.0"}, u)).To(Succeed())
			latest, found, _ := unstructured.NestedFieldNoCopy(u.Object, "status", "latest")
			return fmt.Sprintf("%v %v", found, latest)
		}).Should(Equal("true false"))
	})
})
