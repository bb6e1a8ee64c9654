package manager

import (
	"reflect"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	trainyardv1 "github.com/trainyard-dev/trainyard/api/v1alpha1"
)

func cachedReport(labels map[string]string, since ...time.Time) *trainyardv1.ClusterReport {
	r := &trainyardv1.ClusterReport{ObjectMeta: metav1.ObjectMeta{Namespace: "fleet", Name: "a", Labels: labels}}
	first := metav1.NewTime(since[0])
	r.Status.FirstSeen, r.Status.LastSeen = &first, first.DeepCopy()
	for i, t := range since {
		at := metav1.NewTime(t)
		r.Status.Components = append(r.Status.Components, trainyardv1.ComponentStatus{Name: string(rune('a' + i)), Since: &at})
	}
	return r
}

func mapID(m map[string]string) uintptr { return reflect.ValueOf(m).Pointer() }

// The transform keeps what the report says and shares what repeats: equal
// timestamps within a report, and the label maps of reports that carry
// status labels only.
func TestCompactReportSharesWhatRepeatsAndKeepsWhatItSays(t *testing.T) {
	t0 := time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC)
	compact := func(r *trainyardv1.ClusterReport) *trainyardv1.ClusterReport {
		t.Helper()
		want := r.DeepCopy()
		out, err := compactReport(r)
		if err != nil {
			t.Fatal(err)
		}
		got := out.(*trainyardv1.ClusterReport)
		if !equality.Semantic.DeepEqual(got, want) {
			t.Fatalf("the transform changed the report:\n got %+v\nwant %+v", got, want)
		}
		return got
	}

	a := compact(cachedReport(map[string]string{trainyardv1.LabelStale: "true"}, t0, t0, t0.Add(time.Hour)))
	if a.Status.FirstSeen != a.Status.LastSeen || a.Status.Components[0].Since != a.Status.FirstSeen ||
		a.Status.Components[1].Since != a.Status.FirstSeen {
		t.Error("equal timestamps of one report are not one copy")
	}
	if a.Status.Components[2].Since == a.Status.FirstSeen {
		t.Error("a different timestamp was shared")
	}
	b := compact(cachedReport(map[string]string{trainyardv1.LabelStale: "true"}, t0))
	if mapID(a.Labels) != mapID(b.Labels) {
		t.Error("two reports with the same status labels do not share their map")
	}
	for name, labels := range map[string]map[string]string{
		"a user's label too":        {trainyardv1.LabelStale: "true", "team": "edge"},
		"a value not true or false": {trainyardv1.LabelStale: "maybe"},
		"a retired status label":    {trainyardv1.LabelStale: "true", trainyardv1.RetiredStatusLabels[0]: "true"},
	} {
		c := compact(cachedReport(labels, t0))
		if mapID(c.Labels) == mapID(a.Labels) {
			t.Errorf("%s: shares the map of other labels", name)
		}
	}
}
