// Package checkin stores clusters' check-ins as ClusterReports: the one
// write path of the bridge (POST /v3/clusters) and of the agent's direct
// mode. It converts and validates a check-in, creates or patches the
// report, and records check-ins that change nothing as held heartbeats,
// written at most once per granularity.
//
// It reads and writes through Reports, so that the agent's direct mode
// links client-go's REST client only, not the manager's cached client.
package checkin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	jsonpatch "github.com/evanphx/json-patch/v5"
	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"

	trainyardv1 "github.com/trainyard-dev/trainyard/api/v1alpha1"
	"github.com/trainyard-dev/trainyard/internal/validation"
	"github.com/trainyard-dev/trainyard/internal/wire"
)

// AnnotationTokenHash binds a ClusterReport to the registration token of its
// first check-in.
const AnnotationTokenHash = "trainyard.dev/registration-token-sha256"

// Reports reads and writes ClusterReports.
type Reports interface {
	// Get reads a report: from a cache when there is one, or from the API
	// server when fresh.
	Get(ctx context.Context, key types.NamespacedName, fresh bool) (*trainyardv1.ClusterReport, error)
	// Create creates r and fills it in as stored.
	Create(ctx context.Context, r *trainyardv1.ClusterReport) error
	// Patch applies a JSON merge patch to r's object (its status
	// subresource when status) and fills r in as stored.
	Patch(ctx context.Context, r *trainyardv1.ClusterReport, status bool, patch []byte) error
}

// Options configure a Store.
type Options struct {
	// Heartbeat is the persist interval of check-ins that change nothing
	// (default 1h, PersistInterval of the default stale threshold): one is
	// written when the stored record is this old, else held in memory; a
	// held one is written at most a minute after it became due.
	Heartbeat time.Duration
	Clock     clock.WithTicker
	// Log is where failed heartbeat writes are logged.
	Log logr.Logger
}

// Store stores check-ins.
type Store struct {
	reports Reports
	opts    Options
	locks   KeyedMutex
	beats   *heartbeats
}

// New builds a store writing through reports.
func New(reports Reports, o Options) *Store {
	if o.Heartbeat <= 0 {
		o.Heartbeat = time.Hour
	}
	if o.Clock == nil {
		o.Clock = clock.RealClock{}
	}
	s := &Store{reports: reports, opts: o}
	s.beats = newHeartbeats(s)
	return s
}

// PersistInterval is the persist interval that suits a stale threshold: a
// 25th of it (1 h for the default 25 h), at least a second. A cluster's
// Stale condition then comes within one interval of the threshold even if
// the replica holding its last check-ins dies without writing them, and
// exactly on time otherwise (a held check-in is written within the
// interval after the previous write, long before the threshold).
func PersistInterval(staleThreshold time.Duration) time.Duration {
	return max(staleThreshold/25, time.Second)
}

// Required is the answer for a missing field, in the old service's words.
type Required string

func (r Required) Error() string { return string(r) + " in body is required" }

// Invalid is a check-in the API would refuse (a 422).
type Invalid struct{ error }

// Report is the ClusterReport a check-in asks for, in namespace: its
// components converted, the whole validated as the webhook would.
func Report(namespace string, c wire.Cluster) (*trainyardv1.ClusterReport, error) {
	if c.ID == "" {
		return nil, Required("id")
	}
	if c.Components == nil {
		return nil, Required("components")
	}
	comps, err := ReportedComponents(c.Components)
	if err != nil {
		return nil, err
	}
	want := &trainyardv1.ClusterReport{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: trainyardv1.ClusterReportName(c.ID)},
		Spec:       trainyardv1.ClusterReportSpec{ClusterID: c.ID, Components: comps, Properties: c.Properties},
	}
	if errs := validation.ClusterReport(want, nil); len(errs) > 0 {
		return nil, Invalid{errs.ToAggregate()}
	}
	return want, nil
}

// ReportedComponents converts a check-in's components, naming the first
// missing field.
func ReportedComponents(cvs []wire.ComponentVersion) ([]trainyardv1.ReportedComponent, error) {
	out := make([]trainyardv1.ReportedComponent, 0, len(cvs))
	for i, cv := range cvs {
		at := fmt.Sprintf("components[%d]", i)
		if cv.Component == nil || cv.Component.Name == "" {
			return nil, Required(at + ".component.name")
		}
		if cv.Version == nil || cv.Version.Version == "" {
			return nil, Required(at + ".version.version")
		}
		c := trainyardv1.ReportedComponent{Name: cv.Component.Name, Train: cv.Version.Train,
			Version: cv.Version.Version, Type: cv.Component.Type, Image: cv.Version.Data[wire.DataImage]}
		if c.Train == "" {
			c.Train = trainyardv1.DefaultTrain
		}
		if r := cv.Readiness; r != nil {
			c.Readiness = &trainyardv1.WorkloadReadiness{Ready: r.Ready, Desired: r.Desired}
			if r.Since != nil {
				t := metav1.NewTime(r.Since.UTC().Truncate(time.Second))
				c.Readiness.Since = &t
			}
		}
		out = append(out, c)
	}
	return out, nil
}

// ErrBoundElsewhere refuses a check-in of a cluster bound to another
// registration token.
type ErrBoundElsewhere string

func (e ErrBoundElsewhere) Error() string {
	return "cluster " + string(e) + " is registered with another registration token; a cluster ID cannot be taken over"
}

// Authorizer decides, under the cluster's lock and against the report as
// stored (nil: there is none yet), whether a check-in may write it, and
// which annotations the write sets (a nil value removes one). An error
// refuses the check-in; nothing is written.
type Authorizer func(cur *trainyardv1.ClusterReport) (annotations map[string]*string, err error)

// CheckIn creates or updates the report and records the check-in; it
// returns the report as stored, and whether the check-in changed nothing
// (a heartbeat, held in memory). authorize (nil: anyone may) decides who
// may write the report and what annotations come with the write.
func (s *Store) CheckIn(ctx context.Context, want *trainyardv1.ClusterReport, authorize Authorizer) (stored *trainyardv1.ClusterReport, heartbeat bool, err error) {
	key := types.NamespacedName{Namespace: want.Namespace, Name: want.Name}
	defer s.locks.Lock(key.String())()
	want = want.DeepCopy()
	now := metav1.NewTime(s.opts.Clock.Now().UTC().Truncate(time.Second)) // as the API stores times
	if authorize == nil {
		authorize = func(*trainyardv1.ClusterReport) (map[string]*string, error) { return nil, nil }
	}

	cur, err := s.reports.Get(ctx, key, false)
	if apierrors.IsNotFound(err) {
		// The cache can be behind a report created moments ago (a cluster
		// that just registered, checking in at once): whether the cluster
		// is new, which decides its authorization, is the API server's word.
		// (Creating at once instead, and reading only when the create is
		// refused, saved this read per new cluster, about a tenth of
		// onboarding's rate; but a create refused by a cache a moment
		// behind looks like a concurrent registration, and a registration
		// retried after a lost answer would then be refused.)
		cur, err = s.reports.Get(ctx, key, true)
	}
	if apierrors.IsNotFound(err) {
		annotations, aerr := authorize(nil)
		if aerr != nil {
			return nil, false, aerr
		}
		created, cerr := s.create(ctx, want, annotations, now)
		if cerr == nil {
			return created, false, nil
		}
		if !apierrors.IsAlreadyExists(cerr) {
			return nil, false, cerr
		}
		// Created meanwhile (another replica, or the cache is behind).
		cur, err = s.reports.Get(ctx, key, true)
	}
	if err != nil {
		return nil, false, err
	}
	for attempt := 1; ; attempt++ {
		annotations, err := authorize(cur)
		if err != nil {
			return nil, false, err
		}
		patched := cur.DeepCopy()
		setAnnotations(&patched.ObjectMeta, annotations)
		patched.Spec.Components = want.Spec.Components
		// Properties only count when sent: an old agent's check-in keeps them.
		if want.Spec.Properties != nil {
			patched.Spec.Properties = want.Spec.Properties
		}
		identity := !maps.Equal(cur.Annotations, patched.Annotations)
		sameComps := sameComponents(cur.Spec.Components, patched.Spec.Components)
		if !identity && maps.Equal(cur.Spec.Properties, patched.Spec.Properties) && sameComps {
			s.beats.record(ctx, cur, now.Time, false)
			return cur, true, nil
		}
		// An identity change (a registration, a rotation) is written only
		// over the report it was decided on: two replicas, or a cache a
		// write behind, must not both answer 200 with a credential of which
		// only the last written works.
		err = s.patch(ctx, cur, patched, false, identity)
		if identity && apierrors.IsConflict(err) && attempt < maxIdentityAttempts {
			// Decide again on what is stored now.
			if cur, err = s.reports.Get(ctx, key, true); err != nil {
				return nil, false, err
			}
			continue
		}
		if err != nil {
			return nil, false, err
		}
		// What the cluster runs (or who it is) changed and is stored:
		// record the check-in now too (held, like a heartbeat, should that
		// write fail).
		s.beats.record(ctx, patched, now.Time, true)
		return patched, false, nil
	}
}

// create writes a new report. Its creation is its first check-in, which
// the controller records (firstSeen, lastSeen, one check-in) in the status
// it writes anyway: a new cluster costs two writes, not three. This replica
// counts it as written now.
func (s *Store) create(ctx context.Context, want *trainyardv1.ClusterReport, annotations map[string]*string, now metav1.Time) (*trainyardv1.ClusterReport, error) {
	created := want.DeepCopy()
	setAnnotations(&created.ObjectMeta, annotations)
	if err := s.reports.Create(ctx, created); err != nil {
		return nil, err
	}
	s.beats.created(keyOf(created), now.Time)
	created.Status.FirstSeen, created.Status.LastSeen, created.Status.CheckIns = &now, &now, 1
	return created, nil
}

// maxIdentityAttempts bounds how often an identity change that lost a race
// is decided again on the stored report.
const maxIdentityAttempts = 3

// setAnnotations sets (or, for a nil value, removes) annotations on m.
func setAnnotations(m *metav1.ObjectMeta, annotations map[string]*string) {
	for k, v := range annotations {
		if v == nil {
			delete(m.Annotations, k)
			continue
		}
		if m.Annotations == nil {
			m.Annotations = map[string]string{}
		}
		m.Annotations[k] = *v
	}
}

// patch writes the difference from cur to patched as a JSON merge patch,
// with cur's resourceVersion when optimistic; patched is filled in as
// stored.
func (s *Store) patch(ctx context.Context, cur, patched *trainyardv1.ClusterReport, status, optimistic bool) error {
	from, err := json.Marshal(cur)
	if err != nil {
		return err
	}
	to, err := json.Marshal(patched)
	if err != nil {
		return err
	}
	p, err := jsonpatch.CreateMergePatch(from, to)
	if err != nil {
		return err
	}
	if optimistic {
		// As controller-runtime's MergeFromWithOptimisticLock: the API
		// server refuses the patch with a conflict if the object moved on.
		var m map[string]any
		if err := json.Unmarshal(p, &m); err != nil {
			return err
		}
		meta, _ := m["metadata"].(map[string]any)
		if meta == nil {
			meta = map[string]any{}
			m["metadata"] = meta
		}
		meta["resourceVersion"] = cur.ResourceVersion
		if p, err = json.Marshal(m); err != nil {
			return err
		}
	}
	return s.reports.Patch(ctx, patched, status, p)
}

// logOf is the context's logger (a request's, a manager's), else the
// store's.
func (s *Store) logOf(ctx context.Context) logr.Logger {
	if l, err := logr.FromContext(ctx); err == nil {
		return l
	}
	return s.opts.Log
}

// Lock serialises the writes of one key (a report, a doctor dump) in this
// process; call the function it returns to unlock.
func (s *Store) Lock(key string) func() { return s.locks.Lock(key) }

// Seen is a report's first and last check-in and their count, the ones
// held in memory included.
func (s *Store) Seen(r *trainyardv1.ClusterReport) (first, last time.Time, checkIns int64) {
	if r.Status.FirstSeen != nil {
		first = r.Status.FirstSeen.Time
	} else {
		first = r.CreationTimestamp.Time
	}
	last = first
	if r.Status.LastSeen != nil {
		last = r.Status.LastSeen.Time
	}
	last, checkIns = s.beats.seen(r, last)
	return first.UTC(), last.UTC(), checkIns
}

// LastSeen is the newest check-in known for key that a cache may not have
// seen yet, or nil.
func (s *Store) LastSeen(key types.NamespacedName) *time.Time { return s.beats.lastSeen(key) }

// Run flushes the held check-ins every granularity until ctx ends; it does
// not flush what is left then (see Flush).
func (s *Store) Run(ctx context.Context) { s.beats.run(ctx) }

// Flush writes every check-in held in memory.
func (s *Store) Flush(ctx context.Context) { s.beats.flushAll(ctx, true) }

// Start is Run, then a last Flush (of at most 20 s) once ctx ends: a
// manager Runnable for a store used in process (the agent's direct mode).
func (s *Store) Start(ctx context.Context) error {
	s.Run(ctx)
	flush, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	s.Flush(flush)
	return nil
}

// IsRetryable says whether err is the API being unavailable or busy rather
// than refusing what was sent.
func IsRetryable(err error) bool {
	var status apierrors.APIStatus
	if !errors.As(err, &status) {
		return true // a transport error
	}
	return apierrors.IsTooManyRequests(err) || apierrors.IsServerTimeout(err) || apierrors.IsTimeout(err) ||
		apierrors.IsServiceUnavailable(err) || apierrors.IsInternalError(err) || apierrors.IsUnexpectedServerError(err)
}

// sameComponents tells whether a check-in reports what the report holds:
// replica counts that moved without the workload turning ready or not (an
// autoscaler at work) are not a change worth a write; the heartbeat keeps
// the report as it is.
func sameComponents(a, b []trainyardv1.ReportedComponent) bool {
	return slices.EqualFunc(a, b, func(x, y trainyardv1.ReportedComponent) bool {
		rx, ry := x.Readiness, y.Readiness
		x.Readiness, y.Readiness = nil, nil
		if !equality.Semantic.DeepEqual(x, y) || (rx == nil) != (ry == nil) {
			return false
		}
		return rx == nil || rx.IsReady() == ry.IsReady() && equality.Semantic.DeepEqual(rx.Since, ry.Since)
	})
}
