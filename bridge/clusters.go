package bridge

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	v1 "github.com/trainyard-dev/trainyard/api/v1alpha1"
	"github.com/trainyard-dev/trainyard/webhook"
)

// checkIn stores a cluster's check-in (POST /v3/clusters, POST
// /v2/clusters/{id}). A changed component list is written before the answer;
// a check-in that changes nothing only moves lastSeen and checkIns, which
// may wait in memory up to the heartbeat granularity.
func (s *Server) checkIn(w http.ResponseWriter, r *http.Request, p params) {
	hash := ""
	if s.opts.CheckInAuth == CheckInToken {
		tok, ok := s.registrationToken(r.Context(), r)
		if !ok {
			authFailures.WithLabelValues("registration_token").Inc()
			w.Header().Set("WWW-Authenticate", `Bearer realm="trainyard"`)
			writeError(w, http.StatusUnauthorized, "a valid registration token is required (Authorization: Bearer <token>)")
			return
		}
		hash = tokenHash(tok)
	}
	var c Cluster
	if !decodeJSON(w, r, s.opts.MaxBody, &c) {
		return
	}
	if id := p["id"]; id != "" {
		if c.ID != "" && !strings.EqualFold(c.ID, id) {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("the path names cluster %q but the body names %q", id, c.ID))
			return
		}
		c.ID = id
	}
	if c.ID == "" {
		writeError(w, http.StatusUnprocessableEntity, required("id").Error())
		return
	}
	if c.Components == nil {
		writeError(w, http.StatusUnprocessableEntity, required("components").Error())
		return
	}
	comps, err := reportedComponents(c.Components)
	if err != nil {
		writeError(w, http.StatusUnprocessableEntity, err.Error())
		return
	}
	want := &v1.ClusterReport{
		ObjectMeta: metav1.ObjectMeta{Namespace: s.opts.Namespace, Name: v1.ClusterReportName(c.ID)},
		Spec:       v1.ClusterReportSpec{ClusterID: c.ID, Components: comps, Properties: c.Properties},
	}
	if errs := webhook.ValidateClusterReport(want, nil); len(errs) > 0 {
		writeError(w, http.StatusUnprocessableEntity, errs.ToAggregate().Error())
		return
	}

	defer s.locks.lock(want.Name)()
	if hash != "" {
		want.Annotations = map[string]string{AnnotationTokenHash: hash}
	}
	stored, err := s.storeCheckIn(r.Context(), want)
	var hijack errRegisteredElsewhere
	if errors.As(err, &hijack) {
		authFailures.WithLabelValues("cluster_bound_to_other_token").Inc()
		writeError(w, http.StatusForbidden, err.Error())
		return
	}
	if err != nil {
		writeAPIError(w, "storing the check-in", err)
		return
	}
	now := s.opts.Clock.Now().UTC().Truncate(time.Second) // as the API stores times
	writeJSON(w, http.StatusOK, clusterOf(stored, &now))
}

// storeCheckIn creates or updates the report and records the check-in. It
// returns the report as stored.
func (s *Server) storeCheckIn(ctx context.Context, want *v1.ClusterReport) (*v1.ClusterReport, error) {
	now := metav1.NewTime(s.opts.Clock.Now().UTC().Truncate(time.Second))
	cur := &v1.ClusterReport{}
	err := s.cache.Get(ctx, client.ObjectKeyFromObject(want), cur)
	if apierrors.IsNotFound(err) {
		created := want.DeepCopy()
		err = s.api.Create(ctx, created)
		if err == nil {
			// A new report: the first check-in is recorded at once.
			before := created.DeepCopy()
			created.Status.FirstSeen, created.Status.LastSeen, created.Status.CheckIns = &now, &now, 1
			err = s.api.Status().Patch(ctx, created, client.MergeFrom(before))
			s.heartbeats.written(created)
			return created, err
		}
		if !apierrors.IsAlreadyExists(err) {
			return nil, err
		}
		// Created meanwhile (another replica, or the cache is behind).
		err = s.apiReader.Get(ctx, client.ObjectKeyFromObject(want), cur)
	}
	if err != nil {
		return nil, err
	}
	if hash := want.Annotations[AnnotationTokenHash]; hash != "" {
		switch bound := cur.Annotations[AnnotationTokenHash]; {
		case bound == "":
			// Reported before tokens were required: the first token binds it.
			patched := cur.DeepCopy()
			if patched.Annotations == nil {
				patched.Annotations = map[string]string{}
			}
			patched.Annotations[AnnotationTokenHash] = hash
			if err := s.api.Patch(ctx, patched, client.MergeFrom(cur)); err != nil {
				return nil, err
			}
			cur = patched
		case bound != hash:
			return nil, errRegisteredElsewhere(want.Spec.ClusterID)
		}
	}
	// Properties only count when sent: an old agent's check-in keeps them.
	propsChanged := want.Spec.Properties != nil && !maps.Equal(cur.Spec.Properties, want.Spec.Properties)
	if propsChanged || !equality.Semantic.DeepEqual(cur.Spec.Components, want.Spec.Components) {
		patched := cur.DeepCopy()
		patched.Spec.Components = want.Spec.Components
		if want.Spec.Properties != nil {
			patched.Spec.Properties = want.Spec.Properties
		}
		if err := s.api.Patch(ctx, patched, client.MergeFrom(cur)); err != nil {
			return nil, err
		}
		cur = patched
		// What the cluster runs changed: record the check-in now too.
		return cur, s.heartbeats.writeNow(ctx, cur, now.Time)
	}
	s.heartbeats.beat(ctx, cur, now.Time)
	markHeartbeat(ctx)
	return cur, nil
}

// errRegisteredElsewhere refuses a check-in of a cluster bound to another
// registration token.
type errRegisteredElsewhere string

func (e errRegisteredElsewhere) Error() string {
	return "cluster " + string(e) + " is registered with another registration token; a cluster ID cannot be taken over"
}

// heartbeats coalesces check-ins that change nothing: the latest lastSeen
// and the number of check-ins since the last write are kept per cluster and
// written at most once per granularity.
type heartbeats struct {
	s       *Server
	mu      sync.Mutex
	pending map[types.NamespacedName]*pendingBeat
	// written remembers the last check-in record written per report, since
	// the cache may not have seen it yet.
	last map[types.NamespacedName]writtenBeat
}

type pendingBeat struct {
	lastSeen time.Time
	count    int64
}

type writtenBeat struct {
	at       time.Time
	checkIns int64
}

func newHeartbeats(s *Server) *heartbeats {
	return &heartbeats{s: s, pending: map[types.NamespacedName]*pendingBeat{}, last: map[types.NamespacedName]writtenBeat{}}
}

func (h *heartbeats) written(r *v1.ClusterReport) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.last[client.ObjectKeyFromObject(r)] = writtenBeat{at: r.Status.LastSeen.Time, checkIns: r.Status.CheckIns}
}

// lastSeen is the newest check-in known for key, written or not.
func (h *heartbeats) lastSeen(key types.NamespacedName) *time.Time {
	h.mu.Lock()
	defer h.mu.Unlock()
	if p := h.pending[key]; p != nil {
		t := p.lastSeen
		return &t
	}
	return nil
}

// beat records a check-in that changed nothing; it is written now when the
// last write is older than the granularity.
func (h *heartbeats) beat(ctx context.Context, r *v1.ClusterReport, now time.Time) {
	key := client.ObjectKeyFromObject(r)
	h.mu.Lock()
	lastWrite := h.lastWrite(key, r)
	if now.Sub(lastWrite) < h.s.opts.Heartbeat {
		h.hold(key, now, 1)
		h.mu.Unlock()
		return
	}
	h.mu.Unlock()
	if err := h.writeNow(ctx, r, now); err != nil {
		// Keep it for the next flush rather than lose it.
		log.FromContext(ctx).Error(err, "writing a heartbeat; kept for the next flush", "cluster", r.Name)
		h.mu.Lock()
		h.hold(key, now, 1)
		h.mu.Unlock()
	}
}

// hold adds n check-ins, the last at `at`, to key's pending heartbeat; the
// caller holds mu.
func (h *heartbeats) hold(key types.NamespacedName, at time.Time, n int64) {
	p := h.pending[key]
	if p == nil {
		p = &pendingBeat{}
		h.pending[key] = p
	}
	p.count += n
	if at.After(p.lastSeen) {
		p.lastSeen = at
	}
}

// lastWrite is when the report's check-in record was last written; the
// caller holds mu.
func (h *heartbeats) lastWrite(key types.NamespacedName, r *v1.ClusterReport) time.Time {
	var t time.Time
	if r.Status.LastSeen != nil {
		t = r.Status.LastSeen.Time
	}
	if w, ok := h.last[key]; ok && w.at.After(t) {
		t = w.at
	}
	return t
}

// writeNow writes lastSeen = now and adds this check-in and any pending
// ones to checkIns.
func (h *heartbeats) writeNow(ctx context.Context, r *v1.ClusterReport, now time.Time) error {
	key := client.ObjectKeyFromObject(r)
	h.mu.Lock()
	var extra int64
	if p := h.pending[key]; p != nil {
		extra = p.count
		delete(h.pending, key)
	}
	base := r.Status.CheckIns
	if w, ok := h.last[key]; ok && w.checkIns > base {
		base = w.checkIns
	}
	h.mu.Unlock()
	err := h.patch(ctx, r, now, base+extra+1)
	if err != nil && extra > 0 {
		h.mu.Lock()
		h.hold(key, now, extra) // the earlier check-ins stay pending
		h.mu.Unlock()
	}
	return err
}

func (h *heartbeats) patch(ctx context.Context, r *v1.ClusterReport, lastSeen time.Time, checkIns int64) error {
	t := metav1.NewTime(lastSeen.UTC().Truncate(time.Second))
	patched := r.DeepCopy()
	if patched.Status.FirstSeen == nil {
		patched.Status.FirstSeen = &t
	}
	patched.Status.LastSeen, patched.Status.CheckIns = &t, checkIns
	if err := h.s.api.Status().Patch(ctx, patched, client.MergeFrom(r)); err != nil {
		return err
	}
	h.written(patched)
	return nil
}

// run flushes the pending heartbeats every granularity until ctx ends.
func (h *heartbeats) run(ctx context.Context) {
	t := h.s.opts.Clock.NewTicker(h.s.opts.Heartbeat)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C():
			h.flushAll(ctx)
		}
	}
}

// flushAll writes every pending heartbeat, a few at a time.
func (h *heartbeats) flushAll(ctx context.Context) {
	h.mu.Lock()
	keys := make([]types.NamespacedName, 0, len(h.pending))
	for k := range h.pending {
		keys = append(keys, k)
	}
	h.mu.Unlock()
	if len(keys) == 0 {
		return
	}
	work := make(chan types.NamespacedName)
	var failed atomic.Int64
	var wg sync.WaitGroup
	for range flushWorkers {
		wg.Go(func() {
			for key := range work {
				if err := h.flush(ctx, key); err != nil {
					failed.Add(1)
				}
			}
		})
	}
	for _, k := range keys {
		work <- k
	}
	close(work)
	wg.Wait()
	if n := failed.Load(); n > 0 {
		log.FromContext(ctx).Info("some heartbeats were not written; they are kept for the next flush",
			"failed", n, "of", len(keys))
	}
}

// flushWorkers bounds the concurrent writes of a flush.
const flushWorkers = 8

// flush writes one cluster's pending heartbeat.
func (h *heartbeats) flush(ctx context.Context, key types.NamespacedName) error {
	defer h.s.locks.lock(key.Name)()
	h.mu.Lock()
	p := h.pending[key]
	h.mu.Unlock()
	if p == nil {
		return nil
	}
	r := &v1.ClusterReport{}
	if err := h.s.cache.Get(ctx, key, r); err != nil {
		if apierrors.IsNotFound(err) {
			h.mu.Lock()
			delete(h.pending, key)
			h.mu.Unlock()
			return nil
		}
		return err
	}
	// writeNow counts one check-in itself; the pending count includes it.
	h.mu.Lock()
	p.count--
	last := p.lastSeen
	h.mu.Unlock()
	return h.writeNow(ctx, r, last)
}

func (s *Server) getCluster(w http.ResponseWriter, r *http.Request, p params) {
	rep := &v1.ClusterReport{}
	key := types.NamespacedName{Namespace: s.opts.Namespace, Name: v1.ClusterReportName(p["id"])}
	if err := s.cache.Get(r.Context(), key, rep); err != nil {
		if apierrors.IsNotFound(err) {
			writeError(w, http.StatusNotFound, "404 cluster not found")
			return
		}
		writeAPIError(w, "reading the cluster", err)
		return
	}
	writeCacheableJSON(w, r, clusterOf(rep, s.heartbeats.lastSeen(key)))
}

// reports lists the bridge namespace's reports from the cache (read only).
func (s *Server) reports(ctx context.Context) ([]v1.ClusterReport, error) {
	var list v1.ClusterReportList
	if err := s.cache.List(ctx, &list, client.InNamespace(s.opts.Namespace), client.UnsafeDisableDeepCopy); err != nil {
		return nil, err
	}
	slices.SortFunc(list.Items, func(a, b v1.ClusterReport) int { return cmp.Compare(a.Name, b.Name) })
	return list.Items, nil
}

func (s *Server) clusterCount(w http.ResponseWriter, r *http.Request, _ params) {
	reports, err := s.reports(r.Context())
	if err != nil {
		writeAPIError(w, "counting clusters", err)
		return
	}
	writeCacheableJSON(w, r, len(reports))
}

// seen is a report's first and last check-in, the pending heartbeat included.
func (s *Server) seen(r *v1.ClusterReport) (first, last time.Time, checkIns int64) {
	if r.Status.FirstSeen != nil {
		first = r.Status.FirstSeen.Time
	} else {
		first = r.CreationTimestamp.Time
	}
	last = first
	if r.Status.LastSeen != nil {
		last = r.Status.LastSeen.Time
	}
	key := client.ObjectKeyFromObject(r)
	s.heartbeats.mu.Lock()
	checkIns = r.Status.CheckIns
	if w, ok := s.heartbeats.last[key]; ok && w.checkIns > checkIns {
		checkIns = w.checkIns
	}
	if p := s.heartbeats.pending[key]; p != nil {
		checkIns += p.count
		if p.lastSeen.After(last) {
			last = p.lastSeen
		}
	}
	s.heartbeats.mu.Unlock()
	return first.UTC(), last.UTC(), checkIns
}

// FlushHeartbeats writes every heartbeat held in memory (Start does this
// when it stops).
func (s *Server) FlushHeartbeats(ctx context.Context) { s.heartbeats.flushAll(ctx) }

// Heartbeats is a Runnable that flushes held heartbeats every granularity
// and once more when it stops: what Start does for a bridge that is used
// in process (the agent's direct mode) rather than served.
type Heartbeats struct{ S *Server }

// Start flushes until ctx ends, then flushes the rest.
func (h Heartbeats) Start(ctx context.Context) error {
	h.S.heartbeats.run(ctx)
	flush, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	h.S.heartbeats.flushAll(flush)
	return nil
}

// NeedLeaderElection is false: the agent has no leader election.
func (Heartbeats) NeedLeaderElection() bool { return false }
