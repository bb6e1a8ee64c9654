package bridge

import (
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	trainyardv1 "github.com/trainyard-dev/trainyard/api/v1alpha1"
	"github.com/trainyard-dev/trainyard/internal/wire"
)

// timeParam parses an optional RFC 3339 query parameter: 422 when present
// and malformed.
func timeParam(q url.Values, key string) (*time.Time, error) {
	v := q.Get(key)
	if v == "" {
		return nil, nil
	}
	t, err := time.Parse(time.RFC3339, v)
	if err != nil {
		return nil, fmt.Errorf("query parameter %s=%q is not an RFC 3339 time (for example 2026-11-24T18:00:00Z)", key, v)
	}
	return &t, nil
}

// timeParams parses several; the first bad one is the 422 answer.
func timeParams(w http.ResponseWriter, r *http.Request, keys ...string) (map[string]*time.Time, bool) {
	q := r.URL.Query()
	out := map[string]*time.Time{}
	for _, k := range keys {
		t, err := timeParam(q, k)
		if err != nil {
			writeError(w, http.StatusUnprocessableEntity, err.Error())
			return nil, false
		}
		out[k] = t
	}
	return out, true
}

// ordered answers 400 when a must come before b but does not.
func ordered(w http.ResponseWriter, t map[string]*time.Time, a, b string) bool {
	if t[a] != nil && t[b] != nil && !t[a].Before(*t[b]) {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("impossible filter: %s=%s is not before %s=%s",
			a, t[a].Format(time.RFC3339), b, t[b].Format(time.RFC3339)))
		return false
	}
	return true
}

func within(t time.Time, after, before *time.Time) bool {
	return (after == nil || t.After(*after)) && (before == nil || t.Before(*before))
}

// clustersByAge answers GET /v3/clusters/age: clusters by first check-in
// ("created") and last check-in ("checked in").
func (s *Server) clustersByAge(w http.ResponseWriter, r *http.Request, _ params) {
	t, ok := timeParams(w, r, "created_after", "created_before", "checked_in_after", "checked_in_before")
	if !ok || !ordered(w, t, "created_after", "created_before") ||
		!ordered(w, t, "checked_in_after", "checked_in_before") ||
		// A cluster created after a time cannot have last checked in before it.
		!ordered(w, t, "created_after", "checked_in_before") {
		return
	}
	data := []wire.Cluster{}
	images := map[string]map[string]string{}
	if !s.pageOf(w, r, func(rep *trainyardv1.ClusterReport) bool {
		first, last, _ := s.seen(rep)
		return within(first, t["created_after"], t["created_before"]) && within(last, t["checked_in_after"], t["checked_in_before"])
	}, func(rep *trainyardv1.ClusterReport) {
		_, last, _ := s.seen(rep)
		data = append(data, clusterSharing(rep, &last, images))
	}) {
		return
	}
	writeCacheableJSON(w, r, dataList[wire.Cluster]{Data: data})
}

// checkinStats answers GET /v3/clusters/checkins: check-in statistics of the
// clusters first seen in the window.
func (s *Server) checkinStats(w http.ResponseWriter, r *http.Request, _ params) {
	t, ok := timeParams(w, r, "created_after", "created_before")
	if !ok || !ordered(w, t, "created_after", "created_before") {
		return
	}
	s.writeStats(w, r, func(first, _ time.Time, _ int64) bool {
		return within(first, t["created_after"], t["created_before"])
	})
}

// persistentClusters answers GET /v3/clusters/persistent: clusters first
// seen between epoch and timestamp, with at least two check-ins, one of them
// within the 24 hours before timestamp.
func (s *Server) persistentClusters(w http.ResponseWriter, r *http.Request, _ params) {
	q := r.URL.Query()
	for _, k := range []string{"epoch", "timestamp"} {
		if q.Get(k) == "" {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("query parameter %s is required (an RFC 3339 time)", k))
			return
		}
	}
	t, ok := timeParams(w, r, "epoch", "timestamp")
	if !ok || !ordered(w, t, "epoch", "timestamp") {
		return
	}
	epoch, ts := *t["epoch"], *t["timestamp"]
	dayBefore := ts.Add(-24 * time.Hour)
	s.writeStats(w, r, func(first, last time.Time, checkIns int64) bool {
		return !first.Before(epoch) && !first.After(ts) && checkIns >= 2 &&
			!last.Before(dayBefore) && !last.After(ts)
	})
}

func (s *Server) writeStats(w http.ResponseWriter, r *http.Request, keep func(first, last time.Time, checkIns int64) bool) {
	now := s.opts.Clock.Now()
	out := checkinList{Data: []CheckinStat{}}
	if !s.pageOf(w, r, func(rep *trainyardv1.ClusterReport) bool {
		return keep(s.seen(rep))
	}, func(rep *trainyardv1.ClusterReport) {
		first, last, n := s.seen(rep)
		out.Data = append(out.Data, CheckinStat{
			ClusterID: rep.Spec.ClusterID, FirstSeen: first, LastSeen: last, Checkins: n,
			ClusterAge:  now.Sub(first).Round(time.Second).String(),
			LastCheckin: now.Sub(last).Round(time.Second).String(),
		})
	}) {
		return
	}
	out.Count = len(out.Data)
	writeCacheableJSON(w, r, out)
}

// pageOf walks the namespace's reports in name order, from after the
// page's marker, and emits those keep accepts, at most the page's limit of
// them: the walk stops at the next accepted one, and the Link header names
// the next page. Only the reports walked are read, one at a time from the
// cache into one struct (emit must not keep it). It answers an error
// itself; ok is false when it did. A marker that names no report keep
// accepts is a 400, as the old lists answered.
func (s *Server) pageOf(w http.ResponseWriter, r *http.Request, keep func(*trainyardv1.ClusterReport) bool, emit func(*trainyardv1.ClusterReport)) bool {
	pg, ok := pageParams(w, r)
	if !ok {
		return false
	}
	ctx := r.Context()
	ns := s.nsOf(ctx)
	names, err := s.reportNamesOf(ctx, ns)
	if err != nil {
		writeAPIError(w, "listing clusters", err)
		return false
	}
	var rep trainyardv1.ClusterReport
	get := func(name string) (bool, error) {
		if s.names != nil { // the informer's own objects, without a Get each
			r := s.names.get(ns, name)
			if r == nil {
				return false, nil // deleted since
			}
			rep = *r
			return true, nil
		}
		rep = trainyardv1.ClusterReport{}
		err := s.cache.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, &rep, client.UnsafeDisableDeepCopy)
		if apierrors.IsNotFound(err) {
			return false, nil // deleted since
		}
		return err == nil, err
	}
	from := 0
	if pg.marker != "" {
		i, found := slices.BinarySearch(names, pg.marker)
		if found {
			if found, err = get(pg.marker); err != nil {
				writeAPIError(w, "reading clusters", err)
				return false
			}
			found = found && keep(&rep)
		}
		if !found {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("marker %q names no item of this list; start again without a marker", pg.marker))
			return false
		}
		from = i + 1
	}
	taken, last := 0, ""
	for _, name := range names[from:] {
		found, err := get(name)
		if err != nil {
			writeAPIError(w, "reading clusters", err)
			return false
		}
		if !found {
			continue
		}
		if !keep(&rep) {
			continue
		}
		if pg.limit > 0 && taken == pg.limit {
			linkNext(w, r, pg, last)
			break
		}
		emit(&rep)
		taken, last = taken+1, name
	}
	return true
}
