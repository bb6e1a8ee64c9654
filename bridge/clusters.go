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
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/trainyard-dev/trainyard/api/v1alpha1"
	"github.com/trainyard-dev/trainyard/internal/validation"
)

// checkIn stores a cluster's check-in (POST /v3/clusters, POST
// /v2/clusters/{id}). A changed component list is written before the answer;
// a check-in that changes nothing only moves lastSeen and checkIns, which
// may wait in memory up to the heartbeat granularity.
func (s *Server) checkIn(w http.ResponseWriter, r *http.Request, p params) {
	// The guard checked the registration token (token mode); the rate limit
	// is the cluster's own, so that a fleet sharing a token shares no budget.
	hash := stateOf(r.Context()).tokenHash
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
	if errs := validation.ClusterReport(want, nil); len(errs) > 0 {
		writeError(w, http.StatusUnprocessableEntity, errs.ToAggregate().Error())
		return
	}
	if hash != "" && !s.admit(w, clusterIdentity(want.Name, hash)) {
		return
	}

	defer s.locks.lock(want.Name)()
	// The bridge records every check-in itself, the first included.
	want.Annotations = map[string]string{v1.AnnotationCheckInsRecorded: "bridge"}
	if hash != "" {
		want.Annotations[AnnotationTokenHash] = hash
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
			// A new report: the first check-in is recorded at once. The
			// report is stored; should its record fail, it is held.
			s.heartbeats.record(ctx, created, now.Time, true)
			created.Status.FirstSeen, created.Status.LastSeen, created.Status.CheckIns = &now, &now, 1
			return created, nil
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
		// What the cluster runs changed and is stored: record the check-in
		// now too (held, like a heartbeat, should that write fail).
		s.heartbeats.record(ctx, cur, now.Time, true)
		return cur, nil
	}
	s.heartbeats.record(ctx, cur, now.Time, false)
	markHeartbeat(ctx)
	return cur, nil
}

// clusterIdentity is what a cluster's requests are rate-limited as: the
// cluster with the token it presents, so that a client holding another
// fleet's token cannot spend a cluster's budget by naming it.
func clusterIdentity(cluster, tokenHash string) string {
	return "cluster:" + cluster + "@" + tokenHash
}

// errRegisteredElsewhere refuses a check-in of a cluster bound to another
// registration token.
type errRegisteredElsewhere string

func (e errRegisteredElsewhere) Error() string {
	return "cluster " + string(e) + " is registered with another registration token; a cluster ID cannot be taken over"
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
	last, checkIns = s.heartbeats.seen(r, last)
	return first.UTC(), last.UTC(), checkIns
}
