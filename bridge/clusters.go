package bridge

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/trainyard-dev/trainyard/api/v1alpha1"
	"github.com/trainyard-dev/trainyard/internal/checkin"
)

// checkIn stores a cluster's check-in (POST /v3/clusters, POST
// /v2/clusters/{id}). A changed component list is written before the answer;
// a check-in that changes nothing only moves lastSeen and checkIns, which
// may wait in memory up to the heartbeat granularity (internal/checkin).
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
	want, err := checkin.Report(s.opts.Namespace, c)
	if err != nil {
		writeError(w, http.StatusUnprocessableEntity, err.Error())
		return
	}
	if hash != "" && !s.admit(w, clusterIdentity(want.Name, hash)) {
		return
	}
	if hash != "" {
		want.Annotations = map[string]string{AnnotationTokenHash: hash}
	}
	stored, heartbeat, err := s.store.CheckIn(r.Context(), want, "bridge")
	var hijack checkin.ErrBoundElsewhere
	if errors.As(err, &hijack) {
		authFailures.WithLabelValues("cluster_bound_to_other_token").Inc()
		writeError(w, http.StatusForbidden, err.Error())
		return
	}
	if err != nil {
		writeAPIError(w, "storing the check-in", err)
		return
	}
	if heartbeat {
		markHeartbeat(r.Context())
	}
	now := s.opts.Clock.Now().UTC().Truncate(time.Second) // as the API stores times
	writeJSON(w, http.StatusOK, clusterOf(stored, &now))
}

// clusterIdentity is what a cluster's requests are rate-limited as: the
// cluster with the token it presents, so that a client holding another
// fleet's token cannot spend a cluster's budget by naming it.
func clusterIdentity(cluster, tokenHash string) string {
	return "cluster:" + cluster + "@" + tokenHash
}

// reports is how the check-in store reads and writes: the manager's cache
// for reads, the API server for writes and for what must be current.
type reports struct {
	cache, apiReader client.Reader
	api              client.Client
}

func (r reports) Get(ctx context.Context, key types.NamespacedName, fresh bool) (*v1.ClusterReport, error) {
	rd := r.cache
	if fresh {
		rd = r.apiReader
	}
	out := &v1.ClusterReport{}
	return out, rd.Get(ctx, key, out)
}

func (r reports) Create(ctx context.Context, rep *v1.ClusterReport) error {
	return r.api.Create(ctx, rep)
}

func (r reports) Patch(ctx context.Context, rep *v1.ClusterReport, status bool, patch []byte) error {
	p := client.RawPatch(types.MergePatchType, patch)
	if status {
		return r.api.Status().Patch(ctx, rep, p)
	}
	return r.api.Patch(ctx, rep, p)
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
	writeCacheableJSON(w, r, clusterOf(rep, s.store.LastSeen(key)))
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

// seen is a report's first and last check-in, the held ones included.
func (s *Server) seen(r *v1.ClusterReport) (first, last time.Time, checkIns int64) {
	return s.store.Seen(r)
}
