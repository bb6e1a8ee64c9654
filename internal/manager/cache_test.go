package manager

import (
	"fmt"
	"maps"
	"reflect"
	"slices"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/cache"

	trainyardv1 "github.com/trainyard-dev/trainyard/api/v1alpha1"
	"github.com/trainyard-dev/trainyard/internal/index"
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

// Each process's cache keeps what it reads: the controllers' (the bridge
// apart) drops a report's identity annotations and nothing else; the
// bridge's slims the status (bridge.SlimReport, tested in its package).
func TestEachProcessCachesWhatItReads(t *testing.T) {
	t0 := time.Date(2026, 12, 5, 4, 0, 0, 0, time.UTC)
	report := func() *trainyardv1.ClusterReport {
		r := cachedReport(map[string]string{trainyardv1.LabelStale: "false", "team": "edge"}, t0)
		r.Annotations = map[string]string{"owner": "platform", trainyardv1.AnnotationCheckInsRecorded: "bridge"}
		for _, k := range trainyardv1.IdentityAnnotations {
			r.Annotations[k] = "x"
		}
		r.Status.Components[0].State = trainyardv1.StateUpToDate
		r.Status.Conditions = []metav1.Condition{{Type: trainyardv1.ConditionReady, Status: metav1.ConditionTrue}}
		return r
	}
	byObject := func(o cache.Options) cache.ByObject {
		for obj, b := range o.ByObject {
			if _, ok := obj.(*trainyardv1.ClusterReport); ok {
				return b
			}
		}
		t.Fatal("no report transform")
		return cache.ByObject{}
	}
	run := func(o cache.Options, r *trainyardv1.ClusterReport) *trainyardv1.ClusterReport {
		t.Helper()
		out, err := byObject(o).Transform(r)
		if err != nil {
			t.Fatal(err)
		}
		return out.(*trainyardv1.ClusterReport)
	}

	whole := run(CacheOptions(), report())
	if !equality.Semantic.DeepEqual(whole, report()) {
		t.Errorf("the manager with the bridge in it changed the report: %+v", whole)
	}
	controllers := run(ControllersCacheOptions(), report())
	want := report()
	for _, k := range trainyardv1.IdentityAnnotations {
		delete(want.Annotations, k)
	}
	if len(want.Annotations) != 2 || !equality.Semantic.DeepEqual(controllers, want) {
		t.Errorf("the controllers' cache:\n got %+v\nwant %+v", controllers, want)
	}
	slim := run(BridgeCacheOptions(), report())
	if len(slim.Annotations) != len(report().Annotations) || slim.Status.Components != nil || slim.Status.Conditions != nil ||
		!equality.Semantic.DeepEqual(slim.Spec, report().Spec) || !slim.Status.LastSeen.Equal(report().Status.LastSeen) {
		t.Errorf("the bridge's cache: %+v", slim)
	}
}

// The manager keeps what its bridge reads while the bridge runs in it, and
// drops it only when the bridge runs apart.
func TestTheManagerDropsIdentityOnlyWithTheBridgeApart(t *testing.T) {
	withIdentity := func(o cache.Options) bool {
		t.Helper()
		for obj, b := range o.ByObject {
			if _, ok := obj.(*trainyardv1.ClusterReport); ok {
				r := &trainyardv1.ClusterReport{ObjectMeta: metav1.ObjectMeta{Annotations: map[string]string{
					trainyardv1.AnnotationCredentialHash: "h"}}}
				out, err := b.Transform(r)
				if err != nil {
					t.Fatal(err)
				}
				return out.(*trainyardv1.ClusterReport).Annotations[trainyardv1.AnnotationCredentialHash] == "h"
			}
		}
		t.Fatal("no report transform")
		return false
	}
	o, indexes := cacheAndIndexes(true)
	if !withIdentity(o) || indexes != nil {
		t.Errorf("with the bridge in the manager: identity kept %v, indexes %v (want true, all)", withIdentity(o), indexes)
	}
	o, indexes = cacheAndIndexes(false)
	if withIdentity(o) || slices.Contains(indexes, index.ReportCredential) || !slices.Contains(indexes, index.ReportTrain) {
		t.Errorf("with the bridge apart: identity kept %v, indexes %v (want false, all but the credential index)", withIdentity(o), indexes)
	}
}

// Reports with the same few annotations share one map, and the table of
// shared maps, keyed by what clients write, stays bounded.
func TestSharedAnnotationsAreBounded(t *testing.T) {
	t0 := time.Date(2026, 12, 5, 7, 0, 0, 0, time.UTC)
	with := func(a map[string]string) *trainyardv1.ClusterReport {
		t.Helper()
		r := cachedReport(nil, t0)
		r.Annotations = a
		want := r.DeepCopy()
		out, err := compactReport(r)
		if err != nil {
			t.Fatal(err)
		}
		if got := out.(*trainyardv1.ClusterReport); !equality.Semantic.DeepEqual(got, want) {
			t.Fatalf("the transform changed the report:\n got %+v\nwant %+v", got, want)
		}
		return out.(*trainyardv1.ClusterReport)
	}
	recorded := map[string]string{trainyardv1.AnnotationCheckInsRecorded: "bridge"}
	a, b := with(maps.Clone(recorded)), with(maps.Clone(recorded))
	if mapID(a.Annotations) != mapID(b.Annotations) {
		t.Error("two reports with the same annotations do not share their map")
	}
	hashed := map[string]string{trainyardv1.AnnotationCheckInsRecorded: "bridge", trainyardv1.AnnotationCredentialHash: "x"}
	if c, d := with(maps.Clone(hashed)), with(maps.Clone(hashed)); mapID(c.Annotations) == mapID(d.Annotations) {
		t.Error("annotations holding a credential hash are shared")
	}
	for i := range 2 * maxAnnotationSets {
		with(map[string]string{"owner": fmt.Sprint("team-", i)})
	}
	annotationSets.Lock()
	n := len(annotationSets.m)
	annotationSets.Unlock()
	if n > maxAnnotationSets {
		t.Errorf("%d shared annotation sets, the bound is %d", n, maxAnnotationSets)
	}
}

// An informer may transform an object twice (client-go's watch-list does),
// and after the first pass the report's maps are shared with other cached
// reports, which readers may be reading: the second pass must not write to
// them (go test -race fails this when it does), and must leave the report
// as the first did.
func TestTransformingTwiceWritesNoSharedMap(t *testing.T) {
	t0 := time.Date(2026, 12, 5, 7, 0, 0, 0, time.UTC)
	report := func() *trainyardv1.ClusterReport {
		r := cachedReport(map[string]string{trainyardv1.LabelStale: "false"}, t0)
		r.Annotations = map[string]string{trainyardv1.AnnotationCheckInsRecorded: "bridge", trainyardv1.AnnotationCredentialHash: "x"}
		r.Status.Components[0].Details().Path = []string{} // stored as "path": []
		return r
	}
	for name, o := range map[string]cache.Options{"controllers": ControllersCacheOptions(), "whole": CacheOptions(), "bridge": BridgeCacheOptions()} {
		var transform func(any) (any, error)
		for obj, b := range o.ByObject {
			if _, ok := obj.(*trainyardv1.ClusterReport); ok {
				transform = b.Transform
			}
		}
		first, err := transform(report())
		if err != nil {
			t.Fatal(err)
		}
		r := first.(*trainyardv1.ClusterReport)
		if name != "bridge" && r.Status.Components[0].ComponentStatusDetails != nil {
			t.Errorf("%s: empty details kept", name)
		}
		once := r.DeepCopy()
		// Another cached report reading the maps it shares with r.
		other, _ := transform(report())
		stop, started, done := make(chan struct{}), make(chan struct{}), make(chan struct{})
		go func() {
			defer close(done)
			o := other.(*trainyardv1.ClusterReport)
			for i := 0; ; i++ {
				if i == 1 {
					close(started)
				}
				select {
				case <-stop:
					return
				default:
					for range o.Annotations {
					}
					for range o.Labels {
					}
				}
			}
		}()
		<-started
		again, err := transform(r)
		close(stop)
		<-done
		if err != nil {
			t.Fatal(err)
		}
		if !equality.Semantic.DeepEqual(again, once) {
			t.Errorf("%s: a second pass changed the report:\n got %+v\nwant %+v", name, again, once)
		}
	}
}
