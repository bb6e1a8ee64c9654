package bridge

import (
	"reflect"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	trainyardv1 "github.com/trainyard-dev/trainyard/api/v1alpha1"
)

// slimFixture is a report whose components are in every state the bridge
// answers differently for.
func slimFixture(generation, observed int64) *trainyardv1.ClusterReport {
	t := metav1.NewTime(time.Date(2026, 12, 5, 4, 0, 0, 0, time.UTC))
	return &trainyardv1.ClusterReport{
		ObjectMeta: metav1.ObjectMeta{Name: "c1", Namespace: "ns", Generation: generation,
			Labels: map[string]string{trainyardv1.LabelStale: "false"}},
		Spec: trainyardv1.ClusterReportSpec{ClusterID: "c1", Components: []trainyardv1.ReportedComponent{
			{Name: "plain", Version: "1.0.0"},
			{Name: "plain-beta", Train: "beta", Version: "v2.0.0"},
			{Name: "behind", Version: "1.0.0"},
			{Name: "behind-no-path", Version: "1.0.0"},
			{Name: "held", Version: "1.0.0"},
			{Name: "ringed", Version: "1.1.0"},
			{Name: "retracted", Version: "0.9.0"},
			{Name: "unknown", Train: "nowhere", Version: "3.0.0"},
		}},
		Status: trainyardv1.ClusterReportStatus{ObservedGeneration: observed, FirstSeen: &t, LastSeen: &t, CheckIns: 3,
			Summary:    &trainyardv1.ComponentSummary{Total: 8},
			Conditions: []metav1.Condition{{Type: trainyardv1.ConditionReady, Status: metav1.ConditionTrue, Reason: "Reconciled"}},
			Components: []trainyardv1.ComponentStatus{
				{Name: "plain", Installed: "1.0.0", Latest: "1.0.0", State: trainyardv1.StateUpToDate, Since: &t, Ready: trainyardv1.Ready,
					ComponentStatusDetails: &trainyardv1.ComponentStatusDetails{History: []trainyardv1.VersionChange{{From: "0.9.0", To: "1.0.0", At: t}}}},
				{Name: "plain-beta", Installed: "v2.0.0", Latest: "2.0.0", State: trainyardv1.StateUpToDate},
				{Name: "behind", Installed: "1.0.0", Latest: "1.2.0", State: trainyardv1.StateUpdateAvailable, Recommended: "1.1.0",
					ComponentStatusDetails: &trainyardv1.ComponentStatusDetails{Path: []string{"1.1.0", "1.2.0"}, Advisories: []trainyardv1.ComponentAdvisory{{ID: "GHSA-1", Since: t}}}},
				{Name: "behind-no-path", Installed: "1.0.0", Latest: "1.2.0", State: trainyardv1.StateUpdateAvailable},
				{Name: "held", Installed: "1.0.0", Latest: "1.2.0", State: trainyardv1.StateUpdateAvailable,
					ComponentStatusDetails: &trainyardv1.ComponentStatusDetails{HeldBack: &trainyardv1.HeldBack{Version: "1.2.0", Ring: "late", Reason: "not opened"}}},
				{Name: "ringed", Installed: "1.1.0", Latest: "1.1.0", State: trainyardv1.StateUpToDate, Ring: "canary"},
				{Name: "retracted", Installed: "0.9.0", Latest: "1.2.0", State: trainyardv1.StateRetracted, Recommended: "1.2.0"},
				{Name: "unknown", Installed: "3.0.0", State: trainyardv1.StateUnknown},
			}},
	}
}

// A bridge with a slim cache answers as one with the whole report: the
// cluster's wire form, and the version offered for every component, every
// installed version asked about and every train latest.
func TestSlimReportAnswersAsTheWholeReport(t *testing.T) {
	for _, tc := range []struct {
		name                 string
		generation, observed int64
	}{{"current status", 2, 2}, {"status of an earlier spec", 3, 2}} {
		t.Run(tc.name, func(t *testing.T) {
			whole, slim := slimFixture(tc.generation, tc.observed), slimFixture(tc.generation, tc.observed)
			SlimReport(slim)
			if len(slim.Status.Components) >= len(whole.Status.Components) || slim.Status.Conditions != nil ||
				slim.Status.Summary != nil || slim.Labels != nil {
				t.Fatalf("SlimReport kept what the bridge never reads: %+v", slim.Status)
			}
			last := time.Date(2026, 12, 5, 5, 0, 0, 0, time.UTC)
			if a, b := clusterOf(whole, &last), clusterOf(slim, &last); !reflect.DeepEqual(a, b) {
				t.Errorf("clusterOf:\nwhole %+v\nslim  %+v", a, b)
			}
			rw, rs := recommendationsOf(whole), recommendationsOf(slim)
			if (rw == nil) != (tc.observed != tc.generation) {
				t.Fatalf("recommendations of %s: %v", tc.name, rw)
			}
			offers := 0
			for _, c := range whole.Spec.Components {
				train := whole.TrainOf(c.Name)
				for _, installed := range []string{c.Version, "0.1.0", ""} {
					for _, latest := range []string{c.Version, "1.2.0", "9.9.9"} {
						a, b := offer(rw, c.Name, train, installed, latest), offer(rs, c.Name, train, installed, latest)
						if a != b {
							t.Errorf("%s on %s running %q, latest %q: whole report offers %q, slim %q", c.Name, train, installed, latest, a, b)
						}
						if a != latest {
							offers++
						}
					}
				}
			}
			if tc.observed == tc.generation && offers == 0 {
				t.Fatal("no recommendation differed from the train's latest: the fixture tests nothing")
			}
		})
	}
}
