package bridge

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	trainyardv1 "github.com/trainyard-dev/trainyard/api/v1alpha1"
	"github.com/trainyard-dev/trainyard/internal/checkin"
	"github.com/trainyard-dev/trainyard/internal/wire"
)

// checkIn stores a cluster's check-in (POST /v3/clusters, POST
// /v2/clusters/{id}). A changed component list is written before the answer;
// a check-in that changes nothing only moves lastSeen and checkIns, which
// may wait in memory up to the heartbeat granularity (internal/checkin).
func (s *Server) checkIn(w http.ResponseWriter, r *http.Request, p params) {
	st := stateOf(r.Context())
	var c wire.Cluster
	if !decodeJSON(w, r, &c) {
		return
	}
	if id := p["id"]; id != "" {
		if c.ID != "" && !strings.EqualFold(c.ID, id) {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("the path names cluster %q but the body names %q", id, c.ID))
			return
		}
		c.ID = id
	}
	want, err := checkin.Report(st.ns, c)
	if err != nil {
		writeError(w, http.StatusUnprocessableEntity, err.Error())
		return
	}
	if st.cluster != "" && st.cluster != want.Name {
		authFailures.WithLabelValues("credential_of_other_cluster").Inc()
		writeError(w, http.StatusForbidden, fmt.Sprintf("this credential is cluster %s's; it cannot check in as %s", st.cluster, c.ID))
		return
	}
	// A registration is rate-limited as the cluster it names, with the
	// token it presents (a credential's request already is, as its cluster).
	if st.tokenHash != "" && !s.admit(w, clusterIdentity(st.ns, want.Name, st.tokenHash)) {
		return
	}
	var authorize checkin.Authorizer
	var issued string
	if s.opts.CheckInAuth == CheckInToken {
		authorize = s.clusterAuthorizer(r.Context(), st, st.ns, &issued)
	}
	stored, heartbeat, err := s.store.CheckIn(r.Context(), want, authorize)
	var refused errCredential
	var hijack checkin.ErrBoundElsewhere
	switch {
	case errors.As(err, &refused):
		if refused.status == http.StatusUnauthorized {
			s.failed(st.source, "cluster_credential")
			w.Header().Set("WWW-Authenticate", `Bearer realm="trainyard", error="invalid_token"`)
		} else {
			authFailures.WithLabelValues("cluster_registered").Inc()
		}
		writeError(w, refused.status, refused.msg)
		return
	case errors.As(err, &hijack):
		authFailures.WithLabelValues("cluster_bound_to_other_token").Inc()
		writeError(w, http.StatusForbidden, err.Error())
		return
	case err != nil:
		writeAPIError(w, "storing the check-in", err)
		return
	}
	if heartbeat {
		markHeartbeat(r.Context())
	}
	if issued != "" {
		// Stored (as a hash) before the answer: the credential is the
		// cluster's from now on. It is in this answer only.
		s.recent.add(credentialHash(issued), client.ObjectKeyFromObject(stored), s.opts.Clock.Now())
		w.Header().Set(HeaderCredential, issued)
		w.Header().Set("Cache-Control", "no-store")
		if st.tokenKey != "" {
			s.recordUse(st.ns, st.tokenKey, s.opts.Clock.Now())
		}
	}
	now := s.opts.Clock.Now().UTC().Truncate(time.Second) // as the API stores times
	writeJSON(w, http.StatusOK, clusterOf(stored, &now))
}

// clusterIdentity is what a registration is rate-limited as: the cluster
// with the token it presents, so that a client holding another fleet's
// token cannot spend a cluster's budget by naming it.
func clusterIdentity(ns, cluster, tokenHash string) string {
	return "cluster:" + ns + "/" + cluster + "@" + tokenHash
}

// reports is how the check-in store reads and writes: the manager's cache
// for reads, the API server for writes and for what must be current.
type reports struct {
	cache, apiReader client.Reader
	api              client.Client
}

func (r reports) Get(ctx context.Context, key types.NamespacedName, fresh bool) (*trainyardv1.ClusterReport, error) {
	rd := r.cache
	if fresh {
		rd = r.apiReader
	}
	out := &trainyardv1.ClusterReport{}
	return out, rd.Get(ctx, key, out)
}

func (r reports) Create(ctx context.Context, rep *trainyardv1.ClusterReport) error {
	return r.api.Create(ctx, rep)
}

func (r reports) Patch(ctx context.Context, rep *trainyardv1.ClusterReport, status bool, patch []byte) error {
	p := client.RawPatch(types.MergePatchType, patch)
	if status {
		return r.api.Status().Patch(ctx, rep, p)
	}
	return r.api.Patch(ctx, rep, p)
}

func (s *Server) getCluster(w http.ResponseWriter, r *http.Request, p params) {
	rep := &trainyardv1.ClusterReport{}
	key := types.NamespacedName{Namespace: stateOf(r.Context()).ns, Name: trainyardv1.ClusterReportName(p["id"])}
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

func (s *Server) clusterCount(w http.ResponseWriter, r *http.Request, _ params) {
	if s.names != nil { // not a list of the fleet's reports for a number
		writeCacheableJSON(w, r, s.names.count(s.nsOf(r.Context())))
		return
	}
	var list trainyardv1.ClusterReportList
	if err := s.cache.List(r.Context(), &list, client.InNamespace(s.nsOf(r.Context())), client.UnsafeDisableDeepCopy); err != nil {
		writeAPIError(w, "counting clusters", err)
		return
	}
	writeCacheableJSON(w, r, len(list.Items))
}

// seen is a report's first and last check-in, the held ones included.
func (s *Server) seen(r *trainyardv1.ClusterReport) (first, last time.Time, checkIns int64) {
	return s.store.Seen(r)
}
