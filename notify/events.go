// Package notify tells platform teams about the transitions that matter — a
// new latest release, a retraction, a cluster going stale, recovering,
// falling behind or running a retracted release — as CloudEvents, Slack or
// Microsoft Teams messages, following NotificationRules to
// NotificationTargets.
//
// Events are facts read from the objects' status (a condition's
// lastTransitionTime, a train's latest.since), so an event's id is derived
// from the transition and is the same whoever computes it, after a restart
// or on a new leader. Only transitions are sent: a fact that persists is
// one event. A rule's events are coalesced into digests, and its deliveries
// wait in its status until the receiver accepts them.
package notify

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	trainyardv1 "github.com/trainyard-dev/trainyard/api/v1alpha1"
)

// Event is one transition of one object.
type Event struct {
	// ID is derived from the transition: the object's UID, the event type
	// and the transition's time (or release).
	ID       string                `json:"id"`
	Type     trainyardv1.EventType `json:"type"`
	Severity trainyardv1.Severity  `json:"severity"`
	// Time is when the transition happened (as the object records it).
	Time time.Time `json:"time"`
	// Subject is the object: clusterreports/<name>, releasetrains/<name> or
	// componentreleases/<name>.
	Subject string `json:"subject"`
	// Summary is one line for people.
	Summary string `json:"summary"`

	Advisory   string            `json:"advisory,omitempty"`
	Cluster    string            `json:"cluster,omitempty"`
	Component  string            `json:"component,omitempty"`
	Train      string            `json:"train,omitempty"`
	Version    string            `json:"version,omitempty"`
	Previous   string            `json:"previous,omitempty"`
	Reason     string            `json:"reason,omitempty"`
	LastSeen   *time.Time        `json:"lastSeen,omitempty"`
	Clusters   *int              `json:"clustersRunning,omitempty"`
	Components []ComponentChange `json:"components,omitempty"`

	// labels of the object, for the rules' selectors (not sent).
	labels map[string]string
	// names of every component (and its train) the event concerns, for the
	// rules' component and train filters (not sent).
	concerns []componentTrain
}

// ComponentChange is one component of a cluster event.
type ComponentChange struct {
	Name      string `json:"name"`
	Train     string `json:"train"`
	Installed string `json:"installed"`
	Latest    string `json:"latest,omitempty"`
}

type componentTrain struct{ component, train string }

// eventID derives an id from the parts of a transition: 32 hex digits.
func eventID(parts ...string) string {
	h := sha256.Sum256([]byte(strings.Join(parts, "\x00")))
	return hex.EncodeToString(h[:16])
}

func stamp(t metav1.Time) string { return t.UTC().Format(time.RFC3339) }

// ClusterEvents are the facts a report's status holds now: stale or
// recovered, behind, running a retracted release.
func ClusterEvents(r *trainyardv1.ClusterReport) []Event {
	base := Event{
		Subject: "clusterreports/" + r.Name, Cluster: r.Spec.ClusterID, labels: r.Labels,
	}
	if r.Status.LastSeen != nil {
		t := r.Status.LastSeen.UTC()
		base.LastSeen = &t
	}
	var out []Event
	conds := r.Status.Conditions
	if c := meta.FindStatusCondition(conds, trainyardv1.ConditionStale); c != nil {
		e := base
		e.Time = c.LastTransitionTime.UTC()
		e.concerns = reported(r)
		switch {
		case c.Status == metav1.ConditionTrue:
			e.Type, e.Severity = trainyardv1.EventClusterStale, trainyardv1.SeverityWarning
			e.Summary = fmt.Sprintf("cluster %s stopped checking in (last seen %s)", r.Spec.ClusterID, lastSeen(r))
		case c.Reason == trainyardv1.ReasonRecovered:
			e.Type, e.Severity = trainyardv1.EventClusterRecovered, trainyardv1.SeverityInfo
			e.Summary = fmt.Sprintf("cluster %s checks in again", r.Spec.ClusterID)
		}
		if e.Type != "" {
			e.ID = eventID(string(e.Type), string(r.UID), stamp(c.LastTransitionTime))
			out = append(out, e)
		}
	}
	// Components' states: each fact lists the components it is about.
	for _, k := range []struct {
		cond, reason string // the condition, and its reason when False is meant
		typ          trainyardv1.EventType
		sev          trainyardv1.Severity
		state        trainyardv1.ComponentState
		phrase       string
	}{
		{trainyardv1.ConditionUpToDate, "UpdatesAvailable", trainyardv1.EventClusterBehind, trainyardv1.SeverityInfo, trainyardv1.StateUpdateAvailable, "cluster %s is behind: %s"},
		{trainyardv1.ConditionRunningRetracted, "", trainyardv1.EventClusterRunningRetracted, trainyardv1.SeverityCritical, trainyardv1.StateRetracted, "cluster %s runs a retracted release: %s"},
	} {
		c := meta.FindStatusCondition(conds, k.cond)
		if c == nil || (k.reason == "" && c.Status != metav1.ConditionTrue) ||
			(k.reason != "" && (c.Status != metav1.ConditionFalse || c.Reason != k.reason)) {
			continue
		}
		e := base
		e.Type, e.Severity, e.Time = k.typ, k.sev, c.LastTransitionTime.UTC()
		e.Components = components(r, k.state)
		e.concerns = concerns(e.Components)
		e.Summary = fmt.Sprintf(k.phrase, r.Spec.ClusterID, changes(e.Components, k.state == trainyardv1.StateUpdateAvailable))
		e.ID = eventID(string(e.Type), string(r.UID), stamp(c.LastTransitionTime))
		out = append(out, e)
	}
	return append(out, exposedEvents(r, base)...)
}

// exposedEvents are a report's advisories: one fact per advisory that
// applies to any of its components, since the earliest of them, listing
// those components. A cluster exposed again later (after an upgrade, an
// acceptance's expiry) is a new fact: its since is new.
func exposedEvents(r *trainyardv1.ClusterReport, base Event) []Event {
	var out []Event
	for _, c := range r.Status.Components {
		for _, a := range c.GetAdvisories() {
			i := slices.IndexFunc(out, func(e Event) bool { return e.Advisory == a.ID })
			if i < 0 {
				e := base
				e.Type, e.Severity, e.Advisory, e.Time = trainyardv1.EventAdvisoryExposed, trainyardv1.SeverityWarning, a.ID, a.Since.UTC()
				out = append(out, e)
				i = len(out) - 1
			}
			e := &out[i]
			if a.Since.UTC().Before(e.Time) {
				e.Time = a.Since.UTC()
			}
			e.Components = append(e.Components, ComponentChange{Name: c.Name, Train: r.TrainOf(c.Name), Installed: c.Installed, Latest: c.Recommended})
		}
	}
	for i := range out {
		e := &out[i]
		e.concerns = concerns(e.Components)
		e.Summary = fmt.Sprintf("cluster %s runs a version %s affects: %s", r.Spec.ClusterID, e.Advisory, changes(e.Components, false))
		e.ID = eventID(string(e.Type), string(r.UID), e.Advisory, stamp(metav1.NewTime(e.Time)))
	}
	return out
}

// AdvisoryEvents are the facts an advisory's status holds now: resolved,
// once no cluster it exposed is exposed any more.
func AdvisoryEvents(a *trainyardv1.Advisory) []Event {
	c := meta.FindStatusCondition(a.Status.Conditions, trainyardv1.ConditionExposed)
	if c == nil || c.Status != metav1.ConditionFalse || c.Reason != trainyardv1.ReasonResolved {
		return nil
	}
	e := Event{Type: trainyardv1.EventAdvisoryResolved, Severity: trainyardv1.SeverityInfo, Time: c.LastTransitionTime.UTC(),
		Subject: "advisories/" + a.Name, Advisory: a.Spec.ID, labels: a.Labels,
		Summary: fmt.Sprintf("no cluster runs a version %s affects any more", a.Spec.ID)}
	for _, ac := range a.Spec.Affected {
		trains := ac.Trains
		if len(trains) == 0 {
			trains = []string{""}
		}
		for _, t := range trains {
			e.concerns = append(e.concerns, componentTrain{ac.Component, t})
		}
	}
	e.ID = eventID(string(e.Type), string(a.UID), stamp(c.LastTransitionTime))
	return []Event{e}
}

func lastSeen(r *trainyardv1.ClusterReport) string {
	if r.Status.LastSeen == nil {
		return "never"
	}
	return stamp(*r.Status.LastSeen)
}

func reported(r *trainyardv1.ClusterReport) []componentTrain {
	out := make([]componentTrain, 0, len(r.Spec.Components))
	for _, c := range r.Spec.Components {
		train := c.Train
		if train == "" {
			train = trainyardv1.DefaultTrain
		}
		out = append(out, componentTrain{c.Name, train})
	}
	return out
}

func components(r *trainyardv1.ClusterReport, state trainyardv1.ComponentState) []ComponentChange {
	var out []ComponentChange
	for _, c := range r.Status.Components {
		if c.State == state {
			out = append(out, ComponentChange{Name: c.Name, Train: r.TrainOf(c.Name), Installed: c.Installed, Latest: c.GetLatest()})
		}
	}
	return out
}

func concerns(cs []ComponentChange) []componentTrain {
	out := make([]componentTrain, len(cs))
	for i, c := range cs {
		out[i] = componentTrain{c.Name, c.Train}
	}
	return out
}

// changes lists components for a summary, at most three.
func changes(cs []ComponentChange, arrow bool) string {
	var parts []string
	for i, c := range cs {
		if i == 3 {
			parts = append(parts, fmt.Sprintf("and %d more", len(cs)-3))
			break
		}
		if arrow {
			parts = append(parts, fmt.Sprintf("%s %s → %s", c.Name, c.Installed, c.Latest))
		} else {
			parts = append(parts, fmt.Sprintf("%s %s", c.Name, c.Installed))
		}
	}
	return strings.Join(parts, ", ")
}

// TrainEvents are the facts a train's status holds now: its latest release
// since latest.since, and its rollout's ring openings, halts and resumes.
func TrainEvents(t *trainyardv1.ReleaseTrain) []Event {
	l := t.Status.Latest
	if l == nil || l.Since == nil {
		return rolloutEvents(t)
	}
	e := Event{
		Type: trainyardv1.EventReleaseLatest, Severity: trainyardv1.SeverityInfo, Time: l.Since.UTC(),
		Subject: "releasetrains/" + t.Name, Component: t.Spec.Component, Train: t.Spec.Train, Version: l.Version,
		concerns: []componentTrain{{t.Spec.Component, t.Spec.Train}},
	}
	e.Summary = fmt.Sprintf("%s %s is the latest release on %s", t.Spec.Component, l.Version, t.Spec.Train)
	if p := t.Status.Previous; p != nil {
		e.Previous = p.Version
		e.Summary += fmt.Sprintf(" (was %s)", p.Version)
	}
	e.ID = eventID(string(e.Type), string(t.UID), l.Name, stamp(*l.Since))
	return append([]Event{e}, rolloutEvents(t)...)
}

// rolloutEvents are the facts of a train's rollout: each ring that opened
// the rolling release (not the baseline a rollout starts from), each halt,
// and each halt's end.
func rolloutEvents(t *trainyardv1.ReleaseTrain) []Event {
	st := t.Status.Rollout
	if st == nil {
		return nil
	}
	base := Event{Subject: "releasetrains/" + t.Name, Component: t.Spec.Component, Train: t.Spec.Train,
		concerns: []componentTrain{{t.Spec.Component, t.Spec.Train}}}
	var out []Event
	for _, r := range st.Rings {
		if r.Opened == nil || r.Previous == "" || r.Version == "" || r.Version != st.Version {
			continue
		}
		e := base
		e.Type, e.Severity, e.Time, e.Version, e.Previous, e.Reason = trainyardv1.EventRolloutRingOpened, trainyardv1.SeverityInfo,
			r.Opened.UTC(), r.Version, r.Previous, r.Name
		e.Summary = fmt.Sprintf("%s %s opened to ring %s on %s (was %s)", t.Spec.Component, r.Version, r.Name, t.Spec.Train, r.Previous)
		e.ID = eventID(string(e.Type), string(t.UID), r.Name, r.Version, stamp(*r.Opened))
		out = append(out, e)
	}
	for _, h := range st.Halts {
		e := base
		e.Type, e.Severity, e.Time, e.Version, e.Reason = trainyardv1.EventRolloutHalted, trainyardv1.SeverityWarning, h.At.UTC(), h.Version, h.Reason
		e.Summary = fmt.Sprintf("the rollout of %s %s on %s halted: %s", t.Spec.Component, h.Version, t.Spec.Train, h.Message)
		e.ID = eventID(string(e.Type), string(t.UID), h.Version, h.Reason, stamp(h.At))
		out = append(out, e)
		if h.Resumed != nil && !h.Superseded {
			e := base
			e.Type, e.Severity, e.Time, e.Version, e.Reason = trainyardv1.EventRolloutResumed, trainyardv1.SeverityInfo, h.Resumed.UTC(), h.Version, h.Reason
			e.Summary = fmt.Sprintf("the rollout of %s %s on %s resumed (%s halt cleared)", t.Spec.Component, h.Version, t.Spec.Train, h.Reason)
			e.ID = eventID(string(e.Type), string(t.UID), h.Version, h.Reason, stamp(h.At), stamp(*h.Resumed))
			out = append(out, e)
		}
	}
	return out
}

// ReleaseEvents are the facts a release's status holds now: retracted since
// its Retracted condition turned True. running is how many clusters run it;
// while any do, the event is a warning.
func ReleaseEvents(r *trainyardv1.ComponentRelease, running int) []Event {
	out := unverifiedEvents(r)
	c := meta.FindStatusCondition(r.Status.Conditions, trainyardv1.ConditionRetracted)
	if c == nil || c.Status != metav1.ConditionTrue || r.Spec.Retracted == nil {
		return out
	}
	e := Event{
		Type: trainyardv1.EventReleaseRetracted, Severity: trainyardv1.SeverityInfo, Time: c.LastTransitionTime.UTC(),
		Subject: "componentreleases/" + r.Name, Component: r.Spec.Component, Train: r.Spec.Train,
		Version: r.Spec.Version, Reason: r.Spec.Retracted.Reason, Clusters: &running, labels: r.Labels,
		concerns: []componentTrain{{r.Spec.Component, r.Spec.Train}},
	}
	if running > 0 {
		e.Severity = trainyardv1.SeverityWarning
	}
	runs := fmt.Sprintf("%d clusters run it", running)
	if running == 1 {
		runs = "1 cluster runs it"
	}
	e.Summary = fmt.Sprintf("%s %s on %s was retracted (%s); %s",
		r.Spec.Component, r.Spec.Version, r.Spec.Train, r.Spec.Retracted.Reason, runs)
	e.ID = eventID(string(e.Type), string(r.UID), stamp(c.LastTransitionTime))
	return append(out, e)
}

// unverifiedEvents: a release whose Verified condition turned False (issue
// 31), once per transition.
func unverifiedEvents(r *trainyardv1.ComponentRelease) []Event {
	c := meta.FindStatusCondition(r.Status.Conditions, trainyardv1.ConditionVerified)
	if c == nil || c.Status != metav1.ConditionFalse {
		return nil
	}
	e := Event{
		Type: trainyardv1.EventReleaseUnverified, Severity: trainyardv1.SeverityWarning, Time: c.LastTransitionTime.UTC(),
		Subject: "componentreleases/" + r.Name, Component: r.Spec.Component, Train: r.Spec.Train,
		Version: r.Spec.Version, Reason: c.Reason, labels: r.Labels,
		concerns: []componentTrain{{r.Spec.Component, r.Spec.Train}},
		Summary:  fmt.Sprintf("%s %s on %s is not verified (%s): it is never latest or recommended", r.Spec.Component, r.Spec.Version, r.Spec.Train, c.Reason),
	}
	e.ID = eventID(string(e.Type), string(r.UID), stamp(c.LastTransitionTime))
	return []Event{e}
}

// newFacts returns the events of now that were not facts before: the
// transitions between two states of one object.
func newFacts(before, now []Event) []Event {
	var out []Event
	for _, e := range now {
		seen := false
		for _, b := range before {
			if b.ID == e.ID {
				seen = true
				break
			}
		}
		if !seen {
			out = append(out, e)
		}
	}
	return out
}
