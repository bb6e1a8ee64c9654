package bridge

import (
	"fmt"
	"net/http"
	"net/url"
	"time"

	v1 "github.com/trainyard-dev/trainyard/api/v1alpha1"
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
	pg, reports, ok := s.pagedReports(w, r)
	if !ok {
		return
	}
	var names []string
	var data []Cluster
	for i := range reports {
		first, last, _ := s.seen(&reports[i])
		if within(first, t["created_after"], t["created_before"]) && within(last, t["checked_in_after"], t["checked_in_before"]) {
			names = append(names, reports[i].Name)
			data = append(data, clusterOf(&reports[i], &last))
		}
	}
	from, to, ok := pg.apply(w, r, names)
	if !ok {
		return
	}
	writeCacheableJSON(w, r, dataList[Cluster]{Data: append([]Cluster{}, data[from:to]...)})
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
	pg, reports, ok := s.pagedReports(w, r)
	if !ok {
		return
	}
	now := s.opts.Clock.Now()
	var names []string
	var data []CheckinStat
	for i := range reports {
		first, last, n := s.seen(&reports[i])
		if !keep(first, last, n) {
			continue
		}
		names = append(names, reports[i].Name)
		data = append(data, CheckinStat{
			ClusterID: reports[i].Spec.ClusterID, FirstSeen: first, LastSeen: last, Checkins: n,
			ClusterAge:  now.Sub(first).Round(time.Second).String(),
			LastCheckin: now.Sub(last).Round(time.Second).String(),
		})
	}
	from, to, ok := pg.apply(w, r, names)
	if !ok {
		return
	}
	out := checkinList{Data: append([]CheckinStat{}, data[from:to]...)}
	out.Count = len(out.Data)
	writeCacheableJSON(w, r, out)
}

// pagedReports reads the page parameters and the reports, answering the
// error itself; ok is false when it did.
func (s *Server) pagedReports(w http.ResponseWriter, r *http.Request) (page, []v1.ClusterReport, bool) {
	pg, ok := pageParams(w, r)
	if !ok {
		return pg, nil, false
	}
	reports, err := s.reports(r.Context())
	if err != nil {
		writeAPIError(w, "listing clusters", err)
		return pg, nil, false
	}
	return pg, reports, true
}
