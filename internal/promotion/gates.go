// Package promotion evaluates the gates of a train's promotion policy: pure
// functions of the candidate, the fleet's counts, the approvals and the
// time, so every gate is tested without a server and the controller only
// gathers the inputs.
package promotion

import (
	"fmt"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	trainyardv1 "github.com/trainyard-dev/trainyard/api/v1alpha1"
)

// Input is what the gates look at.
type Input struct {
	// Since is when the candidate became the source train's latest.
	Since time.Time
	// Retracted is the candidate's retraction reason ("" when it is not).
	Retracted string
	// Following counts the non-stale clusters following the source train;
	// Running those of them that run the candidate. Neither counts a cluster
	// registered after the candidate was published: anyone holding a
	// registration token could otherwise invent clusters that run it and
	// pass the gate. Newer counts those.
	Following, Running, Newer int
	// Unhealthy names clusters running the candidate that are Stale or run
	// a retracted release.
	Unhealthy []string
	// Approvals in force for this candidate.
	Approvals []trainyardv1.PromotionApproval
	Now       time.Time
}

// Result is the gates' verdict.
type Result struct {
	Gates []trainyardv1.GateStatus
	// Pass: every gate passes (or is waived).
	Pass bool
	// Next is when a time-bound gate changes (zero: none will by itself).
	Next time.Time
}

// Evaluate applies the policy's gates, ANDed, in a fixed order.
func Evaluate(p *trainyardv1.PromotionPolicy, in Input) Result {
	var r Result
	add := func(name trainyardv1.GateName, state trainyardv1.GateState, reason string) {
		r.Gates = append(r.Gates, trainyardv1.GateStatus{Name: name, State: state, Reason: reason})
	}
	soon := func(t time.Time) {
		if t.After(in.Now) && (r.Next.IsZero() || t.Before(r.Next)) {
			r.Next = t
		}
	}

	if in.Retracted != "" {
		add(trainyardv1.GateNotRetracted, trainyardv1.GateFail, "retracted: "+in.Retracted)
	} else {
		add(trainyardv1.GateNotRetracted, trainyardv1.GatePass, "not retracted")
	}
	if p.Soak != nil {
		end := in.Since.Add(p.Soak.Duration)
		if !in.Now.Before(end) {
			add(trainyardv1.GateSoak, trainyardv1.GatePass, fmt.Sprintf("latest on %s since %s, soak %s", p.From, in.Since.UTC().Format(time.RFC3339), p.Soak.Duration))
		} else {
			add(trainyardv1.GateSoak, trainyardv1.GatePending, fmt.Sprintf("soaking until %s (%s left)", end.UTC().Format(time.RFC3339), end.Sub(in.Now).Round(time.Second)))
			soon(end)
		}
	}
	if a := p.Adoption; a != nil {
		pct := 0
		if in.Following > 0 {
			pct = in.Running * 100 / in.Following
		}
		msg := fmt.Sprintf("%d of %d non-stale clusters on %s run it (%d%%); needs %d%% and %d", in.Running, in.Following, p.From, pct, a.MinPercent, a.MinClusters)
		if in.Newer > 0 {
			msg += fmt.Sprintf("; %d registered after the candidate was published are not counted", in.Newer)
		}
		if in.Running >= int(a.MinClusters) && pct >= int(a.MinPercent) && (in.Following > 0 || a.MinPercent == 0) {
			add(trainyardv1.GateAdoption, trainyardv1.GatePass, msg)
		} else {
			add(trainyardv1.GateAdoption, trainyardv1.GatePending, msg)
		}
	}
	if p.HealthyClusters {
		switch n := len(in.Unhealthy); {
		case n == 0:
			add(trainyardv1.GateHealthyClusters, trainyardv1.GatePass, "no cluster running it is stale or runs a retracted release")
		case n <= 5:
			add(trainyardv1.GateHealthyClusters, trainyardv1.GateFail, "stale or running a retracted release: "+strings.Join(in.Unhealthy, ", "))
		default:
			add(trainyardv1.GateHealthyClusters, trainyardv1.GateFail, fmt.Sprintf("stale or running a retracted release: %s and %d more",
				strings.Join(in.Unhealthy[:5], ", "), n-5))
		}
	}
	if w := p.Window; w != nil {
		open, change, err := Window(w, in.Now)
		switch {
		case err != nil:
			add(trainyardv1.GateWindow, trainyardv1.GateFail, err.Error())
		case open:
			add(trainyardv1.GateWindow, trainyardv1.GatePass, "within the window "+Describe(w))
			soon(change)
		default:
			add(trainyardv1.GateWindow, trainyardv1.GatePending, fmt.Sprintf("outside the window %s; opens %s", Describe(w), change.UTC().Format(time.RFC3339)))
			soon(change)
		}
	}

	r.Pass = true
	for i := range r.Gates {
		g := &r.Gates[i]
		if g.State != trainyardv1.GatePass && g.Name != trainyardv1.GateNotRetracted {
			if a := waiver(in.Approvals, g.Name, in.Now); a != nil {
				g.State, g.WaivedBy = trainyardv1.GatePass, a.Name
				g.Reason = fmt.Sprintf("waived by %s until %s: %s (was: %s)", a.Name, a.Spec.Expires.UTC().Format(time.RFC3339), a.Spec.Reason, g.Reason)
				soon(a.Spec.Expires.Time)
			}
		}
		if g.State != trainyardv1.GatePass {
			r.Pass = false
		}
	}
	return r
}

func waiver(approvals []trainyardv1.PromotionApproval, gate trainyardv1.GateName, now time.Time) *trainyardv1.PromotionApproval {
	for i := range approvals {
		a := &approvals[i]
		if !now.Before(a.Spec.Expires.Time) {
			continue
		}
		for _, w := range a.Spec.Waive {
			if w == gate {
				return a
			}
		}
	}
	return nil
}

// Describe says a window in words: "Mon,Tue 09:00-17:00 UTC".
func Describe(w *trainyardv1.PromotionWindow) string {
	days := "every day"
	if len(w.Days) > 0 {
		parts := make([]string, len(w.Days))
		for i, d := range w.Days {
			parts[i] = string(d)
		}
		days = strings.Join(parts, ",")
	}
	hours := w.Hours
	if hours == "" {
		hours = "all day"
	}
	tz := w.TimeZone
	if tz == "" {
		tz = "UTC"
	}
	return fmt.Sprintf("%s %s %s", days, hours, tz)
}

var weekdays = map[trainyardv1.Weekday]time.Weekday{"Sun": time.Sunday, "Mon": time.Monday, "Tue": time.Tuesday,
	"Wed": time.Wednesday, "Thu": time.Thursday, "Fri": time.Friday, "Sat": time.Saturday}

// Window tells whether now is within the window, and when that changes
// next (within the next eight days; zero if never).
func Window(w *trainyardv1.PromotionWindow, now time.Time) (open bool, change time.Time, err error) {
	loc := time.UTC
	if w.TimeZone != "" {
		if loc, err = time.LoadLocation(w.TimeZone); err != nil {
			return false, time.Time{}, fmt.Errorf("timeZone %q: %v", w.TimeZone, err)
		}
	}
	from, to := 0, 24*60
	if w.Hours != "" {
		var fh, fm, th, tm int
		if _, err := fmt.Sscanf(w.Hours, "%d:%d-%d:%d", &fh, &fm, &th, &tm); err != nil {
			return false, time.Time{}, fmt.Errorf("hours %q: want HH:MM-HH:MM", w.Hours)
		}
		from, to = fh*60+fm, th*60+tm
	}
	allowed := func(d time.Weekday) bool {
		if len(w.Days) == 0 {
			return true
		}
		for _, x := range w.Days {
			if weekdays[x] == d {
				return true
			}
		}
		return false
	}
	// in says whether a minute of a local day is open; a window that wraps
	// midnight belongs to the day it starts on.
	in := func(t time.Time) bool {
		m := t.Hour()*60 + t.Minute()
		if from <= to {
			return allowed(t.Weekday()) && m >= from && m < to
		}
		if m >= from {
			return allowed(t.Weekday())
		}
		return m < to && allowed(t.AddDate(0, 0, -1).Weekday())
	}
	local := now.In(loc)
	open = in(local)
	// Walk minute boundaries to the next change, a week and a day at most.
	t := local.Truncate(time.Minute)
	for i := 0; i < 8*24*60; i++ {
		t = t.Add(time.Minute)
		if in(t) != open {
			return open, t, nil
		}
	}
	return open, time.Time{}, nil
}

// Keep carries each gate's since over from the last status when its state
// did not change, and stamps now on those that did.
func Keep(gates, before []trainyardv1.GateStatus, now time.Time) {
	for i := range gates {
		g := &gates[i]
		for _, b := range before {
			if b.Name == g.Name && b.State == g.State && b.Since != nil {
				g.Since = b.Since
			}
		}
		if g.Since == nil {
			t := metav1.NewTime(now.Truncate(time.Second))
			g.Since = &t
		}
	}
}
