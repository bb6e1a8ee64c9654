package rollout_test

import (
	"fmt"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	trainyardv1 "github.com/trainyard-dev/trainyard/api/v1alpha1"
	"github.com/trainyard-dev/trainyard/internal/rollout"
)

var t0 = time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)

func selector(ring string) *metav1.LabelSelector {
	return &metav1.LabelSelector{MatchLabels: map[string]string{"ring": ring}}
}

func members(ring, version string, n int, ready trainyardv1.ReadyState, since time.Time) []rollout.Member {
	var out []rollout.Member
	for i := range n {
		out = append(out, rollout.Member{ClusterID: fmt.Sprintf("%s-%d", ring, i), Labels: map[string]string{"ring": ring},
			Installed: version, Since: since, Ready: ready, ReadySince: since})
	}
	return out
}

func ring(st trainyardv1.RolloutStatus, name string) trainyardv1.RingStatus {
	for _, r := range st.Rings {
		if r.Name == name {
			return r
		}
	}
	return trainyardv1.RingStatus{}
}

// evaluate runs the rollout from its baseline (1.0.0) to 1.1.0 becoming
// latest at t0, then once more at now with the members given.
func evaluate(t *testing.T, p *trainyardv1.RolloutPolicy, now time.Time, ms ...[]rollout.Member) rollout.Output {
	t.Helper()
	var all []rollout.Member
	for _, m := range ms {
		all = append(all, m...)
	}
	in := rollout.Input{Train: "app.stable", Policy: p, Latest: "1.0.0", LatestSince: t0.Add(-time.Hour), Now: t0.Add(-time.Hour),
		Retracted: func(string) bool { return false }}
	base := rollout.Evaluate(in)
	if base.Status.Phase != trainyardv1.RolloutComplete || len(base.Opened) != 0 {
		t.Fatalf("baseline: %+v", base)
	}
	in.Previous, in.Latest, in.LatestSince, in.Now, in.Members = &base.Status, "1.1.0", t0, t0, all
	start := rollout.Evaluate(in)
	in.Previous, in.Members, in.Now = &start.Status, all, now
	return rollout.Evaluate(in)
}

func TestClustersMatchingNoRingAreInTheLast(t *testing.T) {
	rings := []trainyardv1.Ring{{Name: "canary", ClusterSelector: selector("canary")}, {Name: "rest"}}
	if got := rollout.RingOf(rings, map[string]string{"ring": "canary"}); got != 0 {
		t.Fatalf("canary cluster in ring %d", got)
	}
	if got := rollout.RingOf(rings, nil); got != 1 {
		t.Fatalf("unlabelled cluster in ring %d", got)
	}
}

func TestAnEmptyRingIsSkipped(t *testing.T) {
	p := &trainyardv1.RolloutPolicy{Rings: []trainyardv1.Ring{
		{Name: "canary", ClusterSelector: selector("canary")},
		{Name: "early", ClusterSelector: selector("early"), After: &trainyardv1.RingGate{MinReportingPercent: 100}},
		{Name: "rest", After: &trainyardv1.RingGate{MinReportingPercent: 100, Soak: &metav1.Duration{Duration: time.Hour}}},
	}}
	// No early clusters: the rest waits on the canary alone.
	out := evaluate(t, p, t0.Add(2*time.Hour), members("canary", "1.1.0", 2, trainyardv1.Ready, t0.Add(time.Minute)), members("rest", "1.0.0", 3, trainyardv1.Ready, t0))
	if r := ring(out.Status, "early"); r.State != trainyardv1.RingOpen || r.Version != "1.1.0" || r.Clusters != 0 {
		t.Fatalf("empty ring: %+v", r)
	}
	if r := ring(out.Status, "rest"); r.State != trainyardv1.RingOpen || r.Version != "1.1.0" {
		t.Fatalf("the ring after an empty one waited: %+v", r)
	}
}

func TestARingWaitsForItsShareThenSoaks(t *testing.T) {
	half := int32(50)
	p := &trainyardv1.RolloutPolicy{Rings: []trainyardv1.Ring{
		{Name: "canary", ClusterSelector: selector("canary")},
		{Name: "rest", After: &trainyardv1.RingGate{MinReportingPercent: 50, Soak: &metav1.Duration{Duration: time.Hour}}},
	}, Halt: &trainyardv1.HaltPolicy{MaxNotReadyPercent: &half}} // one not-ready canary of four must not halt it
	// One of four canaries ready on 1.1.0, one not ready, one unknown
	// (counts), one behind: 2 of 4 = 50 %, reached when the second got there.
	canaries := []rollout.Member{
		{ClusterID: "c1", Labels: map[string]string{"ring": "canary"}, Installed: "1.1.0", Since: t0.Add(5 * time.Minute), Ready: trainyardv1.Ready, ReadySince: t0.Add(10 * time.Minute)},
		{ClusterID: "c2", Labels: map[string]string{"ring": "canary"}, Installed: "1.1.0", Since: t0.Add(20 * time.Minute), Ready: trainyardv1.ReadyUnknown},
		{ClusterID: "c3", Labels: map[string]string{"ring": "canary"}, Installed: "1.1.0", Since: t0, Ready: trainyardv1.NotReady, ReadySince: t0},
		{ClusterID: "c4", Labels: map[string]string{"ring": "canary"}, Installed: "1.0.0", Since: t0, Ready: trainyardv1.Ready},
	}
	rest := members("rest", "1.0.0", 3, trainyardv1.Ready, t0)
	out := evaluate(t, p, t0.Add(time.Hour), canaries, rest)
	r := ring(out.Status, "rest")
	if r.State != trainyardv1.RingSoaking || r.NextEvaluation == nil || !r.NextEvaluation.Time.Equal(t0.Add(80*time.Minute)) {
		t.Fatalf("want soaking until t0+80m: %+v", r)
	}
	if !out.Next.Equal(t0.Add(80 * time.Minute)) {
		t.Fatalf("the controller wakes at %s", out.Next)
	}
	h, ok := rollout.HoldOf(p, &out.Status, "app.stable", "", "x", nil)
	if !ok || h.Ring != "rest" || h.Limit != "1.0.0" || h.Until == nil || !h.Until.Time.Equal(t0.Add(80*time.Minute)) {
		t.Fatalf("hold: %+v", h)
	}
	out = evaluate(t, p, t0.Add(80*time.Minute), canaries, rest)
	if r := ring(out.Status, "rest"); r.State != trainyardv1.RingOpen || len(out.Opened) != 1 || out.Opened[0] != "rest" {
		t.Fatalf("want rest opened at the end of the soak: %+v %v", r, out.Opened)
	}
	if h, _ := rollout.HoldOf(p, &out.Status, "app.stable", "", "x", nil); h.Limit != "1.1.0" {
		t.Fatalf("hold after opening: %+v", h)
	}
	// One canary fewer: 1 of 4 is below 50 %; the ring waits.
	out = evaluate(t, p, t0.Add(2*time.Hour), canaries[:1], canaries[2:], rest)
	if r := ring(out.Status, "rest"); r.State != trainyardv1.RingWaiting || r.Reason != rollout.ReasonWaitingForShare {
		t.Fatalf("want waiting for the share: %+v", r)
	}
}

func TestAnApprovalOpensARingUntilItExpires(t *testing.T) {
	p := &trainyardv1.RolloutPolicy{Rings: []trainyardv1.Ring{
		{Name: "canary", ClusterSelector: selector("canary")},
		{Name: "rest", After: &trainyardv1.RingGate{Approval: true}},
	}}
	in := func(expires time.Time, ringName, version string) []trainyardv1.PromotionApproval {
		return []trainyardv1.PromotionApproval{{ObjectMeta: metav1.ObjectMeta{Name: "ok"},
			Spec: trainyardv1.PromotionApprovalSpec{Train: "app.stable", Version: version, Ring: ringName, Expires: metav1.NewTime(expires), Reason: "reviewed"}}}
	}
	base := rollout.Evaluate(rollout.Input{Train: "app.stable", Policy: p, Latest: "1.0.0", Now: t0})
	for _, tc := range []struct {
		name      string
		approvals []trainyardv1.PromotionApproval
		open      bool
	}{
		{"none", nil, false},
		{"expired", in(t0, "rest", "1.1.0"), false},
		{"other ring", in(t0.Add(time.Hour), "canary", "1.1.0"), false},
		{"other version", in(t0.Add(time.Hour), "rest", "1.0.9"), false},
		{"in force", in(t0.Add(time.Hour), "rest", "v1.1.0"), true},
	} {
		out := rollout.Evaluate(rollout.Input{Train: "app.stable", Policy: p, Latest: "1.1.0", LatestSince: t0, Previous: &base.Status,
			Members: members("rest", "1.0.0", 2, trainyardv1.Ready, t0), Approvals: tc.approvals, Now: t0})
		r := ring(out.Status, "rest")
		if (r.State == trainyardv1.RingOpen) != tc.open {
			t.Errorf("%s: %+v", tc.name, r)
		}
		if tc.open && r.ApprovedBy != "ok" {
			t.Errorf("%s: approvedBy %q", tc.name, r.ApprovedBy)
		}
	}
}

func TestHaltsAboveTheShareOfNotReadyAndResumes(t *testing.T) {
	pct := int32(25)
	p := &trainyardv1.RolloutPolicy{
		Rings: []trainyardv1.Ring{{Name: "canary", ClusterSelector: selector("canary")}, {Name: "rest", After: &trainyardv1.RingGate{MinReportingPercent: 100}}},
		Halt:  &trainyardv1.HaltPolicy{MaxNotReadyPercent: &pct, NotReadyFor: &metav1.Duration{Duration: 10 * time.Minute}},
	}
	ready := append(members("canary", "1.1.0", 3, trainyardv1.Ready, t0), members("rest", "1.0.0", 2, trainyardv1.Ready, t0)...)
	notReady := func(n int, since time.Time) []rollout.Member {
		ms := members("canary", "1.1.0", n, trainyardv1.NotReady, since)
		for i := range ms {
			ms[i].ClusterID = fmt.Sprintf("bad-%d", i)
		}
		return ms
	}
	// 1 of 4 canaries (25 %) is not more than 25 %.
	if out := evaluate(t, p, t0.Add(time.Hour), ready, notReady(1, t0)); out.Status.Phase == trainyardv1.RolloutHalted {
		t.Fatalf("halted at the limit: %+v", out.Status)
	}
	// 2 of 5, but not for 10 minutes yet: no halt, and a wake-up then.
	out := evaluate(t, p, t0.Add(5*time.Minute), ready, notReady(2, t0))
	if out.Status.Phase == trainyardv1.RolloutHalted || !out.Next.Equal(t0.Add(10*time.Minute)) {
		t.Fatalf("want no halt before 10m and a wake-up at t0+10m: %+v next %s", out.Status, out.Next)
	}
	out = evaluate(t, p, t0.Add(11*time.Minute), ready, notReady(2, t0))
	if out.Status.Phase != trainyardv1.RolloutHalted || out.Halted == nil || out.Halted.Reason != rollout.ReasonNotReady {
		t.Fatalf("want halted: %+v", out)
	}
	if r := ring(out.Status, "rest"); r.State != trainyardv1.RingHalted || r.Version != "1.0.0" {
		t.Fatalf("the next ring opened during a halt: %+v", r)
	}
	// Evaluated again, still halted: the same halt, not a new one.
	again := rollout.Evaluate(rollout.Input{Train: "app.stable", Policy: p, Latest: "1.1.0", LatestSince: t0, Previous: &out.Status,
		Members: append(ready, notReady(2, t0)...), Now: t0.Add(20 * time.Minute)})
	if again.Halted != nil || len(again.Status.Halts) != 1 {
		t.Fatalf("halt recorded twice: %+v", again.Status.Halts)
	}
	// Ready again: resumed, and the next ring opens.
	resumed := rollout.Evaluate(rollout.Input{Train: "app.stable", Policy: p, Latest: "1.1.0", LatestSince: t0, Previous: &again.Status,
		Members: append(ready, members("canary", "1.1.0", 0, trainyardv1.Ready, t0)...), Now: t0.Add(30 * time.Minute)})
	if resumed.Resumed == nil || resumed.Status.Halts[0].Resumed == nil || ring(resumed.Status, "rest").State != trainyardv1.RingOpen {
		t.Fatalf("want resumed and rest open: %+v", resumed.Status)
	}
}

func TestARetractedRollingReleaseHaltsUntilANewerOne(t *testing.T) {
	p := &trainyardv1.RolloutPolicy{Rings: []trainyardv1.Ring{{Name: "canary", ClusterSelector: selector("canary")}, {Name: "rest"}}}
	retracted := map[string]bool{}
	in := rollout.Input{Train: "app.stable", Policy: p, Latest: "1.0.0", Now: t0, Retracted: func(v string) bool { return retracted[v] }}
	st := rollout.Evaluate(in).Status
	// 1.1.0 rolls out to the canary; rest waits (no clusters in canary → skipped? no: one canary).
	in.Previous, in.Latest, in.Members = &st, "1.1.0", members("canary", "1.0.0", 1, trainyardv1.Ready, t0)
	in.Members = append(in.Members, members("rest", "1.0.0", 1, trainyardv1.Ready, t0)...)
	p.Rings[1].After = &trainyardv1.RingGate{MinReportingPercent: 100}
	st = rollout.Evaluate(in).Status
	retracted["1.1.0"] = true
	in.Previous, in.Latest = &st, "1.0.0" // the train falls back
	out := rollout.Evaluate(in)
	if out.Status.Phase != trainyardv1.RolloutHalted || out.Status.Version != "1.1.0" || out.Halted == nil || out.Halted.Reason != rollout.ReasonRetracted {
		t.Fatalf("want halted on 1.1.0: %+v", out.Status)
	}
	in.Previous, in.Latest = &out.Status, "1.1.1"
	out = rollout.Evaluate(in)
	if out.Status.Phase == trainyardv1.RolloutHalted || out.Status.Version != "1.1.1" || ring(out.Status, "canary").Version != "1.1.1" {
		t.Fatalf("want a new rollout of 1.1.1: %+v", out.Status)
	}
	// 1.1.0's halt ended because 1.1.1 replaced it: on the record, but
	// nothing resumed (no event).
	if h := out.Status.Halts[0]; out.Resumed != nil || h.Resumed == nil || !h.Superseded {
		t.Fatalf("want the halt superseded, not resumed: %+v %+v", out.Resumed, h)
	}
}

func TestMaxConcurrentBoundsTheClustersInFlight(t *testing.T) {
	quarter := intstr.FromString("25%")
	p := &trainyardv1.RolloutPolicy{Rings: []trainyardv1.Ring{{Name: "all", MaxConcurrent: &quarter}}}
	fleet := members("all", "1.0.0", 400, trainyardv1.Ready, t0)
	in := rollout.Input{Train: "app.stable", Policy: p, Latest: "1.0.0", Now: t0, Members: fleet}
	st := rollout.Evaluate(in).Status
	in.Previous, in.Latest = &st, "1.1.0"
	out := rollout.Evaluate(in)
	shown := func(st trainyardv1.RolloutStatus) (ids []int) {
		for i, m := range fleet {
			if h, _ := rollout.HoldOf(p, &st, "app.stable", "", m.ClusterID, m.Labels); h.Limit == "1.1.0" {
				ids = append(ids, i)
			}
		}
		return ids
	}
	first := shown(out.Status)
	if len(first) != 100 {
		t.Fatalf("25%% of 400 shown at once: %d", len(first))
	}
	// 60 of them move, and one cluster nobody showed it to moves by itself
	// (it is done, not in flight): 60 more are shown.
	for _, i := range first[:60] {
		fleet[i].Installed = "1.1.0"
	}
	in.Previous = &out.Status
	out = rollout.Evaluate(in)
	second := shown(out.Status)
	if len(second) != 160 {
		t.Fatalf("after 60 moved, 160 shown: %d", len(second))
	}
	// One cluster that never moves holds one place, not the ring.
	for _, i := range second {
		if i != first[60] {
			fleet[i].Installed = "1.1.0"
		}
	}
	for range 10 {
		in.Previous = &out.Status
		out = rollout.Evaluate(in)
		for _, i := range shown(out.Status) {
			if i != first[60] {
				fleet[i].Installed = "1.1.0"
			}
		}
	}
	if r := ring(out.Status, "all"); r.ShownBasisPoints != rollout.All || out.Status.Phase != trainyardv1.RolloutComplete {
		t.Fatalf("a stuck cluster stopped the ring: %+v %s", r, out.Status.Phase)
	}
}

func TestANewerReleaseMidSliceKeepsTheUnshownWhereTheyWere(t *testing.T) {
	one := intstr.FromInt32(1)
	p := &trainyardv1.RolloutPolicy{Rings: []trainyardv1.Ring{{Name: "all", MaxConcurrent: &one}}}
	fleet := members("all", "1.0.0", 20, trainyardv1.Ready, t0)
	in := rollout.Input{Train: "app.stable", Policy: p, Latest: "1.0.0", Now: t0, Members: fleet}
	st := rollout.Evaluate(in).Status
	in.Previous, in.Latest = &st, "1.1.0"
	st = rollout.Evaluate(in).Status
	in.Previous, in.Latest = &st, "1.2.0"
	st = rollout.Evaluate(in).Status
	n := 0
	for _, m := range fleet {
		h, _ := rollout.HoldOf(p, &st, "app.stable", "", m.ClusterID, m.Labels)
		switch h.Limit {
		case "1.2.0":
			n++
		case "1.0.0":
		default:
			t.Fatalf("%s may go to %s: 1.1.0 was shown to one cluster only", m.ClusterID, h.Limit)
		}
	}
	if n != 1 {
		t.Fatalf("1.2.0 shown to %d clusters, want 1", n)
	}
}

func TestAnOpenedRingWithAnEmptyFirstSliceShowsTheNextAtOnce(t *testing.T) {
	fifth := intstr.FromString("20%")
	p := &trainyardv1.RolloutPolicy{Rings: []trainyardv1.Ring{{Name: "all", MaxConcurrent: &fifth}}}
	fleet := members("all", "1.0.0", 5, trainyardv1.Ready, t0)
	in := rollout.Input{Train: "app.stable", Policy: p, Latest: "1.0.0", Now: t0, Members: fleet}
	st := rollout.Evaluate(in).Status
	in.Previous, in.Latest = &st, "1.1.0"
	st = rollout.Evaluate(in).Status
	n := 0
	for _, m := range fleet {
		if h, _ := rollout.HoldOf(p, &st, "app.stable", "", m.ClusterID, m.Labels); h.Limit == "1.1.0" {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("one cluster of five shown on opening, whatever the hash: %d", n)
	}
}

func TestNotReadyCountsFromTheVersionNotFromTheAgentsClaim(t *testing.T) {
	p := &trainyardv1.RolloutPolicy{Rings: []trainyardv1.Ring{{Name: "canary", ClusterSelector: selector("canary")},
		{Name: "rest", After: &trainyardv1.RingGate{MinReportingPercent: 100}}}}
	// Not ready "since 2000" (its agent says so), but on 1.1.0 only since t0.
	bad := members("canary", "1.1.0", 1, trainyardv1.NotReady, time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC))
	bad[0].Since = t0
	out := evaluate(t, p, t0.Add(time.Minute), bad, members("rest", "1.0.0", 1, trainyardv1.Ready, t0))
	if out.Status.Phase == trainyardv1.RolloutHalted || !out.Next.Equal(t0.Add(rollout.DefaultNotReadyFor)) {
		t.Fatalf("halted before it was not ready on the release for 10m: %+v next %s", out.Status, out.Next)
	}
}

func TestAClusterKeepsItsPlaceInTheOrder(t *testing.T) {
	if rollout.Bucket("app.stable", "Cluster-A") != rollout.Bucket("app.stable", "cluster-a") {
		t.Fatal("the cluster ID's case moved it")
	}
	same := 0
	for i := range 100 {
		id := fmt.Sprintf("c%d", i)
		if rollout.Bucket("app.stable", id) == rollout.Bucket("web.stable", id) {
			same++
		}
	}
	if same > 5 {
		t.Fatalf("two trains order the fleet alike (%d of 100 equal)", same)
	}
}

func TestClustersSharingAPlaceAreShownTogether(t *testing.T) {
	// Two cluster IDs with one bucket, found by trying.
	seen := map[int32]string{}
	var a, b string
	for i := 0; a == ""; i++ {
		id := fmt.Sprintf("c%d", i)
		k := rollout.Bucket("app.stable", id)
		if other, ok := seen[k]; ok {
			a, b = other, id
		}
		seen[k] = id
	}
	one := intstr.FromInt32(1)
	p := &trainyardv1.RolloutPolicy{Rings: []trainyardv1.Ring{{Name: "all", MaxConcurrent: &one}}}
	fleet := []rollout.Member{{ClusterID: a, Installed: "1.0.0"}, {ClusterID: b, Installed: "1.0.0"}}
	in := rollout.Input{Train: "app.stable", Policy: p, Latest: "1.0.0", Now: t0, Members: fleet}
	st := rollout.Evaluate(in).Status
	in.Previous, in.Latest = &st, "1.1.0"
	st = rollout.Evaluate(in).Status
	for _, m := range fleet {
		if h, _ := rollout.HoldOf(p, &st, "app.stable", "", m.ClusterID, nil); h.Limit != "1.1.0" {
			t.Fatalf("%s not shown 1.1.0 (%+v): a cut between two clusters at one place shows neither", m.ClusterID, h)
		}
	}
}
