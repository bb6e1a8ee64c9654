package promotion_test

import (
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	trainyardv1 "github.com/trainyard-dev/trainyard/api/v1alpha1"
	"github.com/trainyard-dev/trainyard/internal/promotion"
)

// Tuesday 2026-12-01 12:00 UTC.
var now = time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)

func gate(r promotion.Result, name trainyardv1.GateName) trainyardv1.GateStatus {
	for _, g := range r.Gates {
		if g.Name == name {
			return g
		}
	}
	return trainyardv1.GateStatus{}
}

func TestSoak(t *testing.T) {
	p := &trainyardv1.PromotionPolicy{From: "beta", Soak: &metav1.Duration{Duration: time.Hour}}
	r := promotion.Evaluate(p, promotion.Input{Since: now.Add(-30 * time.Minute), Now: now})
	if g := gate(r, trainyardv1.GateSoak); g.State != trainyardv1.GatePending || r.Pass || !r.Next.Equal(now.Add(30*time.Minute)) {
		t.Errorf("half-way: %+v, next %s", g, r.Next)
	}
	r = promotion.Evaluate(p, promotion.Input{Since: now.Add(-time.Hour), Now: now})
	if g := gate(r, trainyardv1.GateSoak); g.State != trainyardv1.GatePass || !r.Pass || !r.Next.IsZero() {
		t.Errorf("soaked: %+v", r)
	}
}

func TestAdoptionNeedsShareAndNumber(t *testing.T) {
	p := &trainyardv1.PromotionPolicy{From: "beta", Adoption: &trainyardv1.AdoptionGate{MinPercent: 50, MinClusters: 3}}
	for _, tc := range []struct {
		following, running int
		want               trainyardv1.GateState
	}{{10, 5, trainyardv1.GatePass}, {10, 4, trainyardv1.GatePending}, {4, 2, trainyardv1.GatePending}, {4, 3, trainyardv1.GatePass}, {0, 0, trainyardv1.GatePending}} {
		r := promotion.Evaluate(p, promotion.Input{Following: tc.following, Running: tc.running, Now: now})
		if g := gate(r, trainyardv1.GateAdoption); g.State != tc.want {
			t.Errorf("%d of %d: %s (%s)", tc.running, tc.following, g.State, g.Reason)
		}
	}
}

// Issue 27 #15: clusters registered after the candidate was published are
// not counted, and the reason says how many were left out.
func TestAdoptionLeavesOutClustersNewerThanTheCandidate(t *testing.T) {
	p := &trainyardv1.PromotionPolicy{From: "beta", Adoption: &trainyardv1.AdoptionGate{MinPercent: 50, MinClusters: 2}}
	r := promotion.Evaluate(p, promotion.Input{Following: 3, Running: 1, Newer: 40, Now: now})
	g := gate(r, trainyardv1.GateAdoption)
	if g.State != trainyardv1.GatePending || g.Reason != "1 of 3 non-stale clusters on beta run it (33%); needs 50% and 2; "+
		"40 registered after the candidate was published are not counted" {
		t.Errorf("%+v", g)
	}
}

func TestHealthAndRetraction(t *testing.T) {
	p := &trainyardv1.PromotionPolicy{From: "beta", HealthyClusters: true}
	r := promotion.Evaluate(p, promotion.Input{Unhealthy: []string{"a", "b", "c", "d", "e", "f", "g"}, Now: now})
	if g := gate(r, trainyardv1.GateHealthyClusters); g.State != trainyardv1.GateFail || g.Reason != "stale or running a retracted release: a, b, c, d, e and 2 more" {
		t.Errorf("unhealthy: %+v", g)
	}
	r = promotion.Evaluate(p, promotion.Input{Retracted: "leaks", Now: now})
	if g := gate(r, trainyardv1.GateNotRetracted); g.State != trainyardv1.GateFail || r.Pass {
		t.Errorf("retracted: %+v", g)
	}
	// NotRetracted cannot be waived, even by an approval that names it.
	r = promotion.Evaluate(p, promotion.Input{Retracted: "leaks", Now: now, Approvals: []trainyardv1.PromotionApproval{approval("x", now.Add(time.Hour), trainyardv1.GateNotRetracted)}})
	if r.Pass {
		t.Error("an approval waived NotRetracted")
	}
}

func approval(name string, expires time.Time, gates ...trainyardv1.GateName) trainyardv1.PromotionApproval {
	return trainyardv1.PromotionApproval{ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: trainyardv1.PromotionApprovalSpec{Waive: gates, Expires: metav1.NewTime(expires), Reason: "hotfix"}}
}

func TestApprovalsWaiveNamedGatesUntilTheyExpire(t *testing.T) {
	p := &trainyardv1.PromotionPolicy{From: "beta", Soak: &metav1.Duration{Duration: 24 * time.Hour}, HealthyClusters: true}
	in := promotion.Input{Since: now, Now: now, Unhealthy: []string{"edge-1"},
		Approvals: []trainyardv1.PromotionApproval{approval("ok-soak", now.Add(time.Hour), trainyardv1.GateSoak)}}
	r := promotion.Evaluate(p, in)
	if g := gate(r, trainyardv1.GateSoak); g.State != trainyardv1.GatePass || g.WaivedBy != "ok-soak" || !strings.HasPrefix(g.Reason, "waived by ok-soak until 2026-12-01T13:00:00Z: hotfix") {
		t.Errorf("waived soak: %+v", g)
	}
	if r.Pass {
		t.Error("an approval of Soak waived HealthyClusters too")
	}
	if !r.Next.Equal(now.Add(time.Hour)) {
		t.Errorf("the approval's expiry is the next evaluation: %s", r.Next)
	}
	in.Now = now.Add(time.Hour)
	if g := gate(promotion.Evaluate(p, in), trainyardv1.GateSoak); g.State != trainyardv1.GatePending || g.WaivedBy != "" {
		t.Errorf("expired approval still waives: %+v", g)
	}
}

func TestWindow(t *testing.T) {
	w := &trainyardv1.PromotionWindow{Days: []trainyardv1.Weekday{"Mon", "Tue", "Wed", "Thu", "Fri"}, Hours: "09:00-17:00"}
	open, change, err := promotion.Window(w, now) // Tuesday 12:00
	if err != nil || !open || !change.Equal(time.Date(2026, 12, 1, 17, 0, 0, 0, time.UTC)) {
		t.Errorf("Tuesday noon: %v %s %v", open, change, err)
	}
	fri := time.Date(2026, 12, 4, 18, 0, 0, 0, time.UTC)
	open, change, _ = promotion.Window(w, fri)
	if open || !change.Equal(time.Date(2026, 12, 7, 9, 0, 0, 0, time.UTC)) {
		t.Errorf("Friday evening: %v, opens %s (want Monday 09:00)", open, change)
	}
	// A window over midnight belongs to the day it starts on.
	night := &trainyardv1.PromotionWindow{Days: []trainyardv1.Weekday{"Fri"}, Hours: "22:00-02:00"}
	if open, _, _ := promotion.Window(night, time.Date(2026, 12, 5, 1, 0, 0, 0, time.UTC)); !open {
		t.Error("Saturday 01:00 is in Friday's night window")
	}
	if open, _, _ := promotion.Window(night, time.Date(2026, 12, 6, 1, 0, 0, 0, time.UTC)); open {
		t.Error("Sunday 01:00 is in no window")
	}
	berlin := &trainyardv1.PromotionWindow{Hours: "09:00-10:00", TimeZone: "Europe/Berlin"}
	if open, _, _ := promotion.Window(berlin, time.Date(2026, 12, 1, 8, 30, 0, 0, time.UTC)); !open {
		t.Error("08:30 UTC is 09:30 in Berlin in December")
	}
	if _, _, err := promotion.Window(&trainyardv1.PromotionWindow{TimeZone: "Mars/Olympus"}, now); err == nil {
		t.Error("an unknown time zone is accepted")
	}
	p := &trainyardv1.PromotionPolicy{From: "beta", Window: w}
	r := promotion.Evaluate(p, promotion.Input{Now: fri})
	if g := gate(r, trainyardv1.GateWindow); g.State != trainyardv1.GatePending || !strings.Contains(g.Reason, "opens 2026-12-07T09:00:00Z") {
		t.Errorf("window gate: %+v", g)
	}
}

func TestKeepSince(t *testing.T) {
	then := metav1.NewTime(now.Add(-time.Hour))
	before := []trainyardv1.GateStatus{{Name: trainyardv1.GateSoak, State: trainyardv1.GatePending, Since: &then}, {Name: trainyardv1.GateAdoption, State: trainyardv1.GatePending, Since: &then}}
	gates := []trainyardv1.GateStatus{{Name: trainyardv1.GateSoak, State: trainyardv1.GatePending}, {Name: trainyardv1.GateAdoption, State: trainyardv1.GatePass}}
	promotion.Keep(gates, before, now)
	if !gates[0].Since.Equal(&then) || !gates[1].Since.Time.Equal(now) {
		t.Errorf("since: %+v", gates)
	}
}
