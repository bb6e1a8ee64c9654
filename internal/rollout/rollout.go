// Package rollout decides a train's rollout in rings: which ring a cluster
// is in, which rings have opened the rolling release, when the next one
// opens or why it waits, when the rollout halts, and what a cluster may be
// recommended meanwhile. Pure functions of the policy, the previous status,
// the fleet's reports, the approvals and the time: every gate is tested
// without a server, and the controllers only gather the inputs.
package rollout

import (
	"fmt"
	"hash/fnv"
	"math"
	"slices"
	"sort"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/Masterminds/semver/v3"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"

	trainyardv1 "github.com/trainyard-dev/trainyard/api/v1alpha1"
	"github.com/trainyard-dev/trainyard/internal/ordering"
)

// All is ShownBasisPoints of a ring shown whole.
const All = 10000

// Defaults of spec.rollout.halt: halting is on unless configured otherwise.
const (
	DefaultMaxNotReadyPercent = 20
	DefaultNotReadyFor        = 10 * time.Minute
)

// Halt reasons.
const (
	ReasonRetracted = "Retracted"
	ReasonNotReady  = "NotReady"
)

// Ring reasons (RingStatus.Reason).
const (
	ReasonNoLatest           = "NoLatest"
	ReasonWaitingForRing     = "WaitingForRing"
	ReasonWaitingForShare    = "WaitingForShare"
	ReasonSoaking            = "Soaking"
	ReasonWaitingForApproval = "WaitingForApproval"
	ReasonSuspended          = "Suspended"
	ReasonHalted             = "Halted"
	ReasonOpened             = "Opened"
	ReasonSkipped            = "Skipped"
	ReasonBaseline           = "Baseline"
)

// RingOf is the index of the ring a cluster with these labels is in: the
// first whose selector matches, else the last.
func RingOf(rings []trainyardv1.Ring, lbls map[string]string) int {
	for i, r := range rings {
		if r.ClusterSelector == nil {
			continue
		}
		sel, err := metav1.LabelSelectorAsSelector(r.ClusterSelector)
		if err == nil && sel.Matches(labels.Set(lbls)) {
			return i
		}
	}
	return len(rings) - 1
}

// Bucket is a cluster's place in a train's stable order, 0 to All-1: a ring
// shows a release to the clusters whose bucket is below its
// ShownBasisPoints. The train is part of the hash so that not every train
// starts with the same clusters.
func Bucket(train, clusterID string) int32 {
	h := fnv.New32a()
	h.Write([]byte(train))
	h.Write([]byte{0})
	h.Write([]byte(strings.ToLower(clusterID)))
	return int32(h.Sum32() % All)
}

// Newer tells whether version a is newer than b, as semantic versions (a
// version that does not parse is older than any that does).
func Newer(a, b string) bool {
	va, ea := ordering.Parse(a)
	vb, eb := ordering.Parse(b)
	switch {
	case ea != nil:
		return false
	case eb != nil:
		return true
	}
	return va.GreaterThan(vb)
}

// AtMost tells whether version v may be recommended under cap.
func AtMost(v *semver.Version, limit string) bool {
	if limit == "" {
		return false
	}
	c, err := ordering.Parse(limit)
	return err == nil && !v.GreaterThan(c)
}

// Member is what the rollout needs of one cluster following the train.
type Member struct {
	ClusterID string
	Labels    map[string]string
	// Installed is the version the cluster runs of the train's component.
	Installed string
	// Since is when Installed was first reported.
	Since time.Time
	// Ready and ReadySince are the component's readiness and since when.
	Ready      trainyardv1.ReadyState
	ReadySince time.Time
	// Stale clusters neither count nor block.
	Stale bool
}

// Input is what a rollout is decided on.
type Input struct {
	// Train is the ReleaseTrain's name (the stable order's seed).
	Train  string
	Policy *trainyardv1.RolloutPolicy
	// Latest is the train's latest version ("" when it has none) and since
	// when it is.
	Latest      string
	LatestSince time.Time
	// Previous is the rollout's status as it was (nil: first evaluation).
	Previous *trainyardv1.RolloutStatus
	Members  []Member
	// Approvals of this train's rings (any version; expired ones included).
	Approvals []trainyardv1.PromotionApproval
	// Retracted tells whether a version of the train is retracted.
	Retracted func(version string) bool
	Now       time.Time
}

// Output is the rollout's new state and what changed.
type Output struct {
	Status trainyardv1.RolloutStatus
	// Opened are the rings that opened the rolling release now.
	Opened []string
	// Halted is a halt that began now; Resumed one that ended now.
	Halted, Resumed *trainyardv1.RolloutHalt
	// Next is when a time-bound gate changes (zero: none will by itself).
	Next time.Time
}

// ringCount is one ring's share of the fleet for the rolling version.
type ringCount struct {
	clusters int
	// onVersion: when each cluster running the version, ready, got there.
	onVersion []time.Time
	// notReadySince: since when each cluster running the version has not
	// been ready on it.
	notReadySince []time.Time
	// members in the ring's stable order (by bucket).
	members []placed
}

// placed is a member's place in its ring's order, and whether it runs the
// rolling version, ready.
type placed struct {
	bucket int32
	done   bool
}

// shown counts the members below a ShownBasisPoints.
func (c *ringCount) shown(bp int32) int {
	return sort.Search(len(c.members), func(k int) bool { return c.members[k].bucket >= bp })
}

// advance shows the ring's release to more of its clusters, in the stable
// order, while at most maxConcurrent shown clusters do not run it ready yet
// (at least the next one when none is in flight).
func (c *ringCount) advance(rs *trainyardv1.RingStatus, maxConcurrent *intstr.IntOrString) {
	if rs.ShownBasisPoints >= All {
		return
	}
	limit := inFlight(maxConcurrent, len(c.members))
	busy, k := 0, 0
	for ; k < len(c.members) && c.members[k].bucket < rs.ShownBasisPoints; k++ {
		if !c.members[k].done {
			busy++
		}
	}
	for ; k < len(c.members); k++ {
		if !c.members[k].done {
			if busy >= limit {
				break
			}
			busy++
		}
	}
	switch {
	case k == len(c.members):
		rs.ShownBasisPoints = All
	case k > 0 && c.members[k-1].bucket == c.members[k].bucket:
		// Clusters that share a place are shown together: cutting between
		// them would show neither, for ever.
		rs.ShownBasisPoints = max(rs.ShownBasisPoints, c.members[k].bucket+1)
	default:
		rs.ShownBasisPoints = max(rs.ShownBasisPoints, c.members[k].bucket)
	}
}

// inFlight is how many of a ring's n clusters may be shown the release and
// not yet run it ready.
func inFlight(maxConcurrent *intstr.IntOrString, n int) int {
	if maxConcurrent == nil {
		return max(n, 1)
	}
	if maxConcurrent.Type == intstr.String {
		var pct int
		if _, err := fmt.Sscanf(maxConcurrent.StrVal, "%d%%", &pct); err != nil || pct <= 0 {
			return max(n, 1)
		}
		return max(int(math.Ceil(float64(pct)*float64(n)/100)), 1)
	}
	return max(maxConcurrent.IntValue(), 1)
}

// Evaluate decides the rollout.
func Evaluate(in Input) Output {
	p := in.Policy
	now := metav1.NewTime(in.Now.UTC().Truncate(time.Second))
	var out Output
	soon := func(t time.Time) {
		if t.After(in.Now) && (out.Next.IsZero() || t.Before(out.Next)) {
			out.Next = t
		}
	}
	prev := in.Previous
	st := trainyardv1.RolloutStatus{}
	if prev != nil {
		st.Version, st.Started = prev.Version, prev.Started
		st.Halts = slices.Clone(prev.Halts)
	}
	prevRing := func(name string) *trainyardv1.RingStatus {
		if prev == nil {
			return nil
		}
		for i := range prev.Rings {
			if prev.Rings[i].Name == name {
				return &prev.Rings[i]
			}
		}
		return nil
	}
	// A ring new to the status has opened what the whole fleet had: the
	// oldest version every ring has opened to all of its clusters.
	baseline := in.Latest
	if prev != nil {
		baseline = prev.Version
		for _, r := range prev.Rings {
			v := r.Version
			if r.ShownBasisPoints < All {
				v = r.Previous
			}
			if v == "" {
				baseline = ""
				break
			}
			if Newer(baseline, v) {
				baseline = v
			}
		}
	}
	rings := make([]trainyardv1.RingStatus, len(p.Rings))
	for i, r := range p.Rings {
		if old := prevRing(r.Name); old != nil {
			rings[i] = *old.DeepCopy()
		} else {
			rings[i] = trainyardv1.RingStatus{Name: r.Name, Version: baseline, ShownBasisPoints: All,
				State: trainyardv1.RingOpen, Since: &now, Reason: ReasonBaseline}
			if baseline != "" {
				rings[i].Opened = &now
			}
		}
	}
	// A newer latest starts a new rollout; an older one (the rolling
	// release was retracted) does not.
	switch {
	case prev == nil:
		st.Version = in.Latest // the baseline: every ring has opened it
		if in.Latest != "" {
			st.Started = &now
		}
	case in.Latest != "" && (st.Version == "" || Newer(in.Latest, st.Version)):
		st.Version, st.Started = in.Latest, &now
		for i := range rings {
			if rings[i].ShownBasisPoints < All {
				// Shown to a slice only: the rest of the ring keeps what it had.
				rings[i].Version = rings[i].Previous
			}
			rings[i].Previous, rings[i].ShownBasisPoints = rings[i].Version, All
		}
	}

	counts := make([]ringCount, len(p.Rings))
	for _, m := range in.Members {
		if m.Stale {
			continue
		}
		i := RingOf(p.Rings, m.Labels)
		c := &counts[i]
		c.clusters++
		at := placed{bucket: Bucket(in.Train, m.ClusterID)}
		if st.Version != "" && ordering.Canonical(m.Installed) == ordering.Canonical(st.Version) {
			switch m.Ready {
			case trainyardv1.NotReady:
				// Not ready on this version: since it got it, at the earliest.
				since := m.ReadySince
				if m.Since.After(since) {
					since = m.Since
				}
				c.notReadySince = append(c.notReadySince, since)
			default: // Ready, or Unknown: an agent that cannot tell never blocks
				t := m.Since
				if m.Ready == trainyardv1.Ready && m.ReadySince.After(t) {
					t = m.ReadySince
				}
				c.onVersion = append(c.onVersion, t)
				at.done = true
			}
		}
		c.members = append(c.members, at)
	}
	for i := range rings {
		c := &counts[i]
		rings[i].Clusters = int32(c.clusters)
		rings[i].OnVersion = int32(len(c.onVersion))
		rings[i].NotReady = int32(len(c.notReadySince))
		slices.SortFunc(c.onVersion, func(a, b time.Time) int { return a.Compare(b) })
		slices.SortFunc(c.members, func(a, b placed) int { return int(a.bucket) - int(b.bucket) })
	}
	opened := func(i int) bool {
		return st.Version != "" && ordering.Canonical(rings[i].Version) == ordering.Canonical(st.Version)
	}
	settled := st.Version != ""
	for i := range rings {
		settled = settled && opened(i) && rings[i].ShownBasisPoints >= All
	}

	// Halts: a retracted rolling release, or, while it rolls out, too many
	// of the clusters an opened ring shows it to not ready on it for too long.
	var halt *trainyardv1.RolloutHalt
	if st.Version != "" && in.Retracted != nil && in.Retracted(st.Version) {
		halt = &trainyardv1.RolloutHalt{Version: st.Version, Reason: ReasonRetracted,
			Message: fmt.Sprintf("%s was retracted", st.Version)}
	} else if !settled && st.Version != "" {
		maxPct, notReadyFor := int32(DefaultMaxNotReadyPercent), DefaultNotReadyFor
		if h := p.Halt; h != nil {
			if h.MaxNotReadyPercent != nil {
				maxPct = *h.MaxNotReadyPercent
			}
			if h.NotReadyFor != nil {
				notReadyFor = h.NotReadyFor.Duration
			}
		}
		for i := range rings {
			shown := counts[i].shown(rings[i].ShownBasisPoints)
			if !opened(i) || shown == 0 {
				continue
			}
			long := 0
			for _, since := range counts[i].notReadySince {
				if !in.Now.Before(since.Add(notReadyFor)) {
					long++
				} else {
					soon(since.Add(notReadyFor))
				}
			}
			if long > 0 && long*100 > int(maxPct)*shown {
				halt = &trainyardv1.RolloutHalt{Version: st.Version, Reason: ReasonNotReady,
					Message: fmt.Sprintf("%d of %d clusters of ring %s run %s and have not been ready for %s (more than %d%%)",
						long, shown, rings[i].Name, st.Version, notReadyFor, maxPct)}
				break
			}
		}
	}
	var last *trainyardv1.RolloutHalt
	if n := len(st.Halts); n > 0 && st.Halts[n-1].Resumed == nil {
		last = &st.Halts[n-1]
	}
	switch {
	case halt != nil && last != nil && last.Version == halt.Version && last.Reason == halt.Reason:
		halt = last // still halted, for the same cause: its start stands
	case halt != nil:
		if last != nil {
			// Another cause took over: ended, but nothing resumed.
			last.Resumed, last.Superseded = &now, true
		}
		halt.At, halt.Message = now, clip(halt.Message)
		st.Halts = append(st.Halts, *halt)
		if len(st.Halts) > trainyardv1.MaxRolloutHalts {
			st.Halts = st.Halts[len(st.Halts)-trainyardv1.MaxRolloutHalts:]
		}
		halt = &st.Halts[len(st.Halts)-1]
		out.Halted = halt.DeepCopy()
	case last != nil:
		last.Resumed = &now
		if last.Version == st.Version {
			out.Resumed = last.DeepCopy()
		} else {
			last.Superseded = true // a newer release's rollout replaced it
		}
	}

	// Rings open in order, each once the rings before it have.
	for i := range rings {
		r, rs, c := p.Rings[i], &rings[i], &counts[i]
		if st.Version == "" {
			setState(rs, trainyardv1.RingWaiting, ReasonNoLatest, "the train has no latest release", now)
			continue
		}
		if opened(i) {
			if halt == nil && !p.Suspend {
				c.advance(rs, r.MaxConcurrent)
			}
			rs.NextEvaluation = nil
			switch {
			case halt != nil && rs.ShownBasisPoints < All:
				setState(rs, trainyardv1.RingHalted, ReasonHalted, "rollout halted: "+halt.Message, now)
			case rs.ShownBasisPoints < All:
				setState(rs, trainyardv1.RingOpen, ReasonOpened, fmt.Sprintf("%s shown to %d of %d clusters (at most %d at a time not yet on it); %d run it ready",
					st.Version, c.shown(rs.ShownBasisPoints), c.clusters, inFlight(r.MaxConcurrent, c.clusters), len(c.onVersion)), now)
			default:
				setState(rs, trainyardv1.RingOpen, ReasonOpened, fmt.Sprintf("%s open; %d of %d clusters run it ready", st.Version, len(c.onVersion), c.clusters), now)
			}
			continue
		}
		state, reason, msg, next, approvedBy := gate(in, st, rings, counts, i)
		rs.NextEvaluation = nil
		if !next.IsZero() {
			t := metav1.NewTime(next.UTC().Truncate(time.Second))
			rs.NextEvaluation = &t
			soon(next)
		}
		switch {
		case halt != nil:
			setState(rs, trainyardv1.RingHalted, ReasonHalted, "rollout halted: "+halt.Message, now)
		case state != trainyardv1.RingOpen:
			setState(rs, state, reason, msg, now)
		case p.Suspend:
			setState(rs, trainyardv1.RingWaiting, ReasonSuspended, "rollout suspended; "+msg, now)
		default:
			rs.Previous, rs.Version, rs.Opened, rs.ApprovedBy = rs.Version, st.Version, &now, approvedBy
			rs.ShownBasisPoints = All
			if r.MaxConcurrent != nil {
				rs.ShownBasisPoints = 0
				c.advance(rs, r.MaxConcurrent)
			}
			rs.NextEvaluation = nil
			if reason == ReasonSkipped {
				rs.Previous = "" // nothing was shown to anyone: no opening to announce
			} else {
				out.Opened = append(out.Opened, rs.Name)
			}
			rs.State, rs.Since = trainyardv1.RingOpen, &now // a new opening, even from Open
			setState(rs, trainyardv1.RingOpen, reason, msg, now)
			if rs.ShownBasisPoints < All {
				rs.Message = clip(fmt.Sprintf("%s; shown to at most %d clusters at a time not yet on it", msg, inFlight(r.MaxConcurrent, c.clusters)))
			}
		}
	}

	st.Rings = rings
	complete := st.Version != ""
	for i := range rings {
		complete = complete && opened(i) && rings[i].ShownBasisPoints >= All
		if n := rings[i].NextEvaluation; n != nil && (st.NextEvaluation == nil || n.Before(st.NextEvaluation)) {
			st.NextEvaluation = n.DeepCopy()
		}
	}
	switch {
	case halt != nil:
		st.Phase, st.Message = trainyardv1.RolloutHalted, halt.Message
	case p.Suspend:
		st.Phase, st.Message = trainyardv1.RolloutSuspended, "spec.rollout.suspend is set: no ring opens"
	case complete:
		st.Phase, st.Message = trainyardv1.RolloutComplete, fmt.Sprintf("every ring has opened %s", st.Version)
	case st.Version == "":
		st.Phase, st.Message = trainyardv1.RolloutProgressing, "the train has no latest release"
	default:
		st.Phase, st.Message = trainyardv1.RolloutProgressing, fmt.Sprintf("rolling out %s", st.Version)
	}
	st.Message = clip(st.Message)
	out.Status = st
	return out
}

// gate is where ring i stands for the rolling version while it has not
// opened it: Open when every gate passes (msg says why), else Waiting or
// Soaking, with the time a gate changes (next) where one is time-bound.
func gate(in Input, st trainyardv1.RolloutStatus, rings []trainyardv1.RingStatus, counts []ringCount, i int) (
	state trainyardv1.RingState, reason, msg string, next time.Time, approvedBy string) {
	p, version := in.Policy, st.Version
	for j := 0; j < i; j++ {
		if ordering.Canonical(rings[j].Version) != ordering.Canonical(version) {
			return trainyardv1.RingWaiting, ReasonWaitingForRing, fmt.Sprintf("waiting for ring %s to open %s", rings[j].Name, version), time.Time{}, ""
		}
	}
	if counts[i].clusters == 0 {
		return trainyardv1.RingOpen, ReasonSkipped, "no clusters: skipped", time.Time{}, ""
	}
	after := p.Rings[i].After
	if after == nil {
		after = &trainyardv1.RingGate{}
	}
	var reached time.Time
	var why []string
	prev := -1
	for j := i - 1; j >= 0; j-- {
		if counts[j].clusters > 0 {
			prev = j
			break
		}
	}
	if prev < 0 {
		// The first ring with clusters: its soak counts from when the
		// release became latest (else when its rollout started).
		reached = in.Now
		switch {
		case ordering.Canonical(in.Latest) == ordering.Canonical(version) && !in.LatestSince.IsZero():
			reached = in.LatestSince
		case st.Started != nil:
			reached = st.Started.Time
		}
		why = append(why, fmt.Sprintf("%s latest since %s", version, reached.UTC().Format(time.RFC3339)))
	} else {
		c := counts[prev]
		need := int(math.Ceil(float64(after.MinReportingPercent) * float64(c.clusters) / 100))
		if len(c.onVersion) < need {
			return trainyardv1.RingWaiting, ReasonWaitingForShare, fmt.Sprintf("%d of %d clusters of ring %s run %s ready; %d%% (%d) needed",
				len(c.onVersion), c.clusters, rings[prev].Name, version, after.MinReportingPercent, need), time.Time{}, ""
		}
		reached = in.Now
		if o := rings[prev].Opened; o != nil {
			reached = o.Time
		}
		if need > 0 && c.onVersion[need-1].After(reached) {
			reached = c.onVersion[need-1]
		}
		why = append(why, fmt.Sprintf("%d of %d clusters of ring %s run %s ready (%d%% needed) since %s",
			len(c.onVersion), c.clusters, rings[prev].Name, version, after.MinReportingPercent, reached.UTC().Format(time.RFC3339)))
	}
	if after.Soak != nil && after.Soak.Duration > 0 {
		end := reached.Add(after.Soak.Duration)
		if in.Now.Before(end) {
			return trainyardv1.RingSoaking, ReasonSoaking, fmt.Sprintf("%s; soaking until %s (%s left)", why[0], end.UTC().Format(time.RFC3339),
				end.Sub(in.Now).Round(time.Second)), end, ""
		}
		why = append(why, fmt.Sprintf("soaked %s", after.Soak.Duration))
	}
	if after.Approval {
		a := approval(in.Approvals, rings[i].Name, version, in.Now)
		if a == nil {
			return trainyardv1.RingWaiting, ReasonWaitingForApproval, fmt.Sprintf("%s; needs a PromotionApproval of ring %s for %s", strings.Join(why, "; "),
				rings[i].Name, version), time.Time{}, ""
		}
		approvedBy = a.Name
		why = append(why, fmt.Sprintf("approved by %s until %s", a.Name, a.Spec.Expires.UTC().Format(time.RFC3339)))
	}
	return trainyardv1.RingOpen, ReasonOpened, strings.Join(why, "; "), time.Time{}, approvedBy
}

// approval is an approval in force of ring for version, if any.
func approval(as []trainyardv1.PromotionApproval, ring, version string, now time.Time) *trainyardv1.PromotionApproval {
	for i := range as {
		a := &as[i]
		if a.Spec.Ring == ring && ordering.Canonical(a.Spec.Version) == ordering.Canonical(version) && now.Before(a.Spec.Expires.Time) {
			return a
		}
	}
	return nil
}

func percent(bp int32) string {
	if bp%100 == 0 {
		return fmt.Sprintf("%d%%", bp/100)
	}
	return fmt.Sprintf("%.2f%%", float64(bp)/100)
}

// setState sets a ring's state and message; since moves only with the state.
func setState(rs *trainyardv1.RingStatus, state trainyardv1.RingState, reason, msg string, now metav1.Time) {
	if rs.State != state || rs.Since == nil {
		rs.State, rs.Since = state, &now
	}
	rs.Reason, rs.Message = reason, clip(msg)
}

// Hold is what a cluster's ring lets it be recommended.
type Hold struct {
	// Ring is the cluster's ring.
	Ring string
	// Limit is the newest version the cluster may be recommended ("": none).
	Limit string
	// Reason says why nothing newer, in words that change only when the
	// ring's state does (a report is written when its hold changes, so the
	// shifting counts of another ring must not reach it).
	Reason string
	// Until is when a time-bound gate of the ring changes (nil: none).
	Until *metav1.Time
}

// HoldOf is a cluster's hold on a train with a rollout; ok is false when
// the train has no rollout. latest is the train's latest: newer than the
// rolling release, it is held back until the rollout has evaluated it.
func HoldOf(p *trainyardv1.RolloutPolicy, st *trainyardv1.RolloutStatus, train, latest, clusterID string, lbls map[string]string) (h Hold, ok bool) {
	if p == nil || len(p.Rings) == 0 || st == nil {
		return Hold{}, false
	}
	defer func() {
		if latest != "" && Newer(latest, st.Version) {
			h.Reason, h.Until = fmt.Sprintf("the rollout of %s has not started yet", latest), nil
		}
	}()
	i := RingOf(p.Rings, lbls)
	h.Ring = p.Rings[i].Name
	var rs *trainyardv1.RingStatus
	oldest := st.Version
	for j := range st.Rings {
		if st.Rings[j].Name == h.Ring {
			rs = &st.Rings[j]
		}
		v := st.Rings[j].Version
		if st.Rings[j].ShownBasisPoints < All {
			v = st.Rings[j].Previous
		}
		if v != "" && Newer(oldest, v) {
			oldest = v
		}
	}
	if rs == nil {
		// A ring the status has not caught up with: what the fleet had.
		h.Limit, h.Reason = oldest, fmt.Sprintf("ring %s is new to the rollout", h.Ring)
		return h, true
	}
	h.Limit = rs.Version
	rolling := st.Version != "" && ordering.Canonical(rs.Version) == ordering.Canonical(st.Version)
	if rolling && Bucket(train, clusterID) >= rs.ShownBasisPoints {
		h.Limit = rs.Previous
		if st.Phase == trainyardv1.RolloutHalted {
			h.Reason = fmt.Sprintf("the rollout of %s is halted: %s", st.Version, haltMessage(st))
		} else {
			h.Reason = fmt.Sprintf("ring %s shows %s to a slice of its clusters at a time; this cluster's turn has not come", h.Ring, st.Version)
		}
		return h, true
	}
	if rolling {
		return h, true
	}
	after := p.Rings[i].After
	if after == nil {
		after = &trainyardv1.RingGate{}
	}
	switch rs.Reason {
	case ReasonHalted:
		h.Reason = fmt.Sprintf("the rollout of %s is halted: %s", st.Version, haltMessage(st))
	case ReasonSuspended:
		h.Reason = fmt.Sprintf("the rollout of %s is suspended", st.Version)
	case ReasonWaitingForRing, ReasonWaitingForShare:
		// One sentence for both: the ring before it opening must not
		// rewrite the reports of every ring after it.
		h.Reason = fmt.Sprintf("ring %s opens %s after the rings before it", h.Ring, st.Version)
		if after.MinReportingPercent > 0 {
			h.Reason = fmt.Sprintf("ring %s opens %s once %d%% of the ring before it run it ready", h.Ring, st.Version, after.MinReportingPercent)
		}
		if after.Soak != nil {
			h.Reason += fmt.Sprintf(", for %s", after.Soak.Duration)
		}
	case ReasonSoaking:
		h.Reason = fmt.Sprintf("ring %s opens %s after a soak", h.Ring, st.Version)
		if after.Soak != nil {
			h.Reason += " of " + after.Soak.Duration.String()
		}
		h.Until = rs.NextEvaluation.DeepCopy() // the train may be the cache's own object
	case ReasonWaitingForApproval:
		h.Reason = fmt.Sprintf("ring %s opens %s with a PromotionApproval of the ring", h.Ring, st.Version)
	default:
		h.Reason = fmt.Sprintf("ring %s has not opened %s", h.Ring, st.Version)
	}
	return h, true
}

// haltMessage is the open halt's message.
func haltMessage(st *trainyardv1.RolloutStatus) string {
	if n := len(st.Halts); n > 0 {
		return st.Halts[n-1].Message
	}
	return st.Message
}

// holdClass is what HoldOf tells apart of a ring's reason.
func holdClass(reason string) string {
	if reason == ReasonWaitingForShare {
		return ReasonWaitingForRing
	}
	return reason
}

// SameHold tells whether two states of a ring hold its clusters alike (the
// fields HoldOf reads), so that a train's status change reaches only the
// reports whose hold it changes.
func SameHold(a, b trainyardv1.RingStatus) bool {
	if a.Version != b.Version || a.Previous != b.Previous || a.ShownBasisPoints != b.ShownBasisPoints || holdClass(a.Reason) != holdClass(b.Reason) {
		return false
	}
	if a.Reason != ReasonSoaking {
		return true
	}
	if a.NextEvaluation == nil || b.NextEvaluation == nil {
		return a.NextEvaluation == b.NextEvaluation
	}
	return a.NextEvaluation.Equal(b.NextEvaluation)
}

// clip keeps a message within the API's 1024 characters.
func clip(msg string) string {
	const limit = 1024
	if len(msg) <= limit {
		return msg
	}
	cut := limit - len("…")
	for cut > 0 && !utf8.RuneStart(msg[cut]) {
		cut--
	}
	return msg[:cut] + "…"
}
