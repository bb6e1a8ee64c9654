package controllers_test

import (
	"maps"
	"regexp"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	trainyardv1 "github.com/trainyard-dev/trainyard/api/v1alpha1"
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
func publish(ns, component, train, version string, day int, mutate ...func(*trainyardv1.ComponentRelease)) *trainyardv1.ComponentRelease {
	GinkgoHelper()
	r := &trainyardv1.ComponentRelease{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns,
			Name: unsafe.ReplaceAllString(strings.ToLower(component+"."+train+"."+version), "-")},
		Spec: trainyardv1.ComponentReleaseSpec{Component: component, Train: train, Version: version,
			Released: &metav1.Time{Time: day0.AddDate(0, 0, day)}},
	}
	for _, m := range mutate {
		m(r)
	}
	Expect(k8sClient.Create(suiteCtx, r)).To(Succeed())
	return r
}

func train(ns, name string) *trainyardv1.ReleaseTrain {
	t := &trainyardv1.ReleaseTrain{}
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

func release(ns, name string) *trainyardv1.ComponentRelease {
	GinkgoHelper()
	r := &trainyardv1.ComponentRelease{}
	Expect(k8sClient.Get(suiteCtx, types.NamespacedName{Namespace: ns, Name: name}, r)).To(Succeed())
	return r
}

// checkIn creates or updates a cluster's report and records a check-in at
// the fake clock's time, as the bridge does.
func checkIn(ns, id string, comps ...trainyardv1.ReportedComponent) *trainyardv1.ClusterReport {
	GinkgoHelper()
	r := &trainyardv1.ClusterReport{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: id}}
	err := k8sClient.Get(suiteCtx, client.ObjectKeyFromObject(r), r)
	if client.IgnoreNotFound(err) != nil {
		Expect(err).NotTo(HaveOccurred())
	}
	old := r.DeepCopy()
	r.Spec = trainyardv1.ClusterReportSpec{ClusterID: id, Components: comps}
	if err != nil {
		Expect(k8sClient.Create(suiteCtx, r)).To(Succeed())
	} else {
		// A merge patch: the controller may write the status meanwhile.
		Expect(k8sClient.Patch(suiteCtx, r, client.MergeFrom(old))).To(Succeed())
	}
	// The check-in's record, over the report as stored and under an
	// optimistic lock, as the bridge writes it: the controller may have
	// recorded the creation (firstSeen) meanwhile, and a patch from the
	// object as created would overwrite it.
	Eventually(func() error {
		cur := &trainyardv1.ClusterReport{}
		if err := k8sClient.Get(suiteCtx, client.ObjectKeyFromObject(r), cur); err != nil {
			return err
		}
		before := cur.DeepCopy()
		now := metav1.NewTime(fakeClock.Now())
		if cur.Status.FirstSeen == nil {
			cur.Status.FirstSeen = &now
		}
		cur.Status.LastSeen = &now
		cur.Status.CheckIns++
		if err := k8sClient.Status().Patch(suiteCtx, cur, client.MergeFromWithOptions(before, client.MergeFromWithOptimisticLock{})); err != nil {
			return err
		}
		r = cur
		return nil
	}).Should(Succeed())
	return r
}

func comp(name, train, version string) trainyardv1.ReportedComponent {
	return trainyardv1.ReportedComponent{Name: name, Train: train, Version: version}
}

func report(ns, id string) *trainyardv1.ClusterReport {
	r := &trainyardv1.ClusterReport{}
	if err := k8sClient.Get(suiteCtx, types.NamespacedName{Namespace: ns, Name: id}, r); err != nil {
		return nil
	}
	return r
}

// settled waits until the controller is done with a report: its status
// reflects its spec, and its stale label (a write after the status write)
// follows its Stale condition. (The fake clock runs ahead of the reports'
// creation times, so a report is often stale at once.) It returns the
// report as it then is.
func settled(ns, id string) *trainyardv1.ClusterReport {
	GinkgoHelper()
	var r *trainyardv1.ClusterReport
	Eventually(func(g Gomega) {
		r = report(ns, id)
		g.Expect(r).NotTo(BeNil())
		g.Expect(r.Status.ObservedGeneration).To(Equal(r.Generation))
		g.Expect(meta.FindStatusCondition(r.Status.Conditions, trainyardv1.ConditionReady)).NotTo(BeNil())
		// Stale as the clock says, from the last check-in: a report the
		// controller saw before the check-in's status write went stale, and
		// recovers in a write after it.
		g.Expect(r.Status.LastSeen).NotTo(BeNil())
		stale := meta.IsStatusConditionTrue(r.Status.Conditions, trainyardv1.ConditionStale)
		g.Expect(stale).To(Equal(fakeClock.Since(r.Status.LastSeen.Time) >= staleThreshold))
		_, labelled := r.Labels[trainyardv1.LabelStale]
		g.Expect(labelled).To(Equal(stale))
		// This suite runs no webhook, so a report is created with
		// managedFields, and the controller clears them in a write of its
		// own (reconcileLabels): one more write to wait for.
		g.Expect(r.ManagedFields).To(BeEmpty())
	}).Should(Succeed())
	return r
}

// selected names the reports of ns the API server lists for a field
// selector.
func selected(ns, fieldSelector string) []string {
	GinkgoHelper()
	sel, err := fields.ParseSelector(fieldSelector)
	Expect(err).NotTo(HaveOccurred())
	var list trainyardv1.ClusterReportList
	Expect(k8sClient.List(suiteCtx, &list, client.InNamespace(ns), client.MatchingFieldsSelector{Selector: sel})).To(Succeed())
	names := []string{}
	for _, r := range list.Items {
		names = append(names, r.Name)
	}
	return names
}

// stateOf is the state of one component in a report's status.
func stateOf(ns, id, component string) func() trainyardv1.ComponentState {
	return func() trainyardv1.ComponentState {
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
