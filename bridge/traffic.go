package bridge

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/trainyard-dev/trainyard/internal/review"
)

// Traffic control: one client must not hurt the others, and the bridge
// sheds load instead of queueing without bound.
//   - Rate: each identity gets a token bucket (beyond it, 429 with
//     Retry-After). The identity is what authentication found: a check-in's
//     cluster, a publisher's token; an unauthenticated request is its source
//     address. Made-up credentials get no bucket of their own: they fail
//     authentication, and failures draw on the source's failure budget.
//   - Concurrency and memory: a request's priority level (fairness.go)
//     holds its seat and its body bytes; at most MaxInFlight requests are
//     being authenticated at once, and at most MaxInFlightPerClient come
//     from one source address (beyond, 503 with Retry-After at once); a
//     request body must arrive at minBodyRate.
//   - The source address is the peer's, or, for a peer in TrustedProxies,
//     the nearest untrusted address of X-Forwarded-For.

// guard wraps one route: concurrency limits, authentication as the route
// declares it, the rate limit of the identity found, its priority level's
// seat and body budget, metrics, and an audit line for every write (see
// Options.Audit).
func (s *Server) guard(pattern string, a access, lim limits, h func(http.ResponseWriter, *http.Request, params)) func(http.ResponseWriter, *http.Request, params) {
	// The route's metric series, looked up once rather than per request.
	ok, seconds := requestsTotal.WithLabelValues(pattern, "200"), requestSeconds.WithLabelValues(pattern)
	return func(w http.ResponseWriter, r *http.Request, p params) {
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w, hasBody: r.ContentLength != 0}
		addr := s.clientAddr(r)
		st := &requestState{s: s, addr: addr, source: review.SourceKey(addr), ns: tenantOf(r.Context(), s.opts.Namespace), limits: lim}
		r = r.WithContext(context.WithValue(r.Context(), stateKey{}, st))
		if s.opts.RefusalDelay > 0 {
			rec.srv, rec.st, rec.ctx = s, st, r.Context()
		}
		defer func() {
			if rec.hasBody && rec.code >= http.StatusBadRequest {
				rec.drainRefused(r, s.drainLimit(st, a, r))
			}
			st.free()
			code := rec.code
			if code == 0 {
				code = http.StatusOK
			}
			if code == http.StatusOK {
				ok.Inc()
			} else {
				requestsTotal.WithLabelValues(pattern, strconv.Itoa(code)).Inc()
			}
			if invalidRequest(code) && a != accessPublic && lim.body != noBody {
				// A body that fails validation costs its sender as a failed
				// authentication does: a flood of them is refused at the door.
				s.failed(st.failureKey(), "invalid_request")
			}
			seconds.Observe(time.Since(start).Seconds())
			if r.Method != http.MethodGet && r.Method != http.MethodHead && a != accessRead && (!st.heartbeat || s.opts.AuditHeartbeats) {
				// The audit line: who, what, result. Never a secret.
				s.audit.Info("bridge write", "client", st.client(), "method", r.Method, "route", pattern,
					"path", r.URL.Path, "code", code, "seconds", time.Since(start).Seconds(), "requestId", requestIDOf(r.Context()))
			}
		}()
		if reason := s.inFlight.acquire(st.source); reason != "" {
			shedTotal.WithLabelValues(reason).Inc()
			rec.Header().Set("Retry-After", "1")
			msg := "the bridge is at its limit of concurrent requests; retry"
			if reason == "client_in_flight" {
				msg = "this client is at its limit of concurrent requests; retry"
			}
			writeError(rec, http.StatusServiceUnavailable, msg)
			return
		}
		st.held.Store(true)
		st.authenticating.Store(true)
		identity, authenticated := s.authenticate(rec, r, a)
		if st.authenticating.CompareAndSwap(true, false) {
			s.inFlight.authenticated()
		}
		if !authenticated {
			return
		}
		st.identity = identity
		if a != accessPublic {
			if !s.failureBudget(rec, st.failureKey()) {
				return
			}
			t, admitted := s.admitLevel(rec, r, st.priority(a), st.fairKey(), lim.reserve(r.ContentLength), r.ContentLength >= 0 || lim.body == noBody)
			if !admitted {
				return
			}
			st.setTicket(t)
		}
		if identity != "" && !s.admit(rec, identity) {
			return
		}
		// And the tenant's budget: one tenant's fleet cannot starve another's.
		// Anonymous reads are no fleet's: they are bounded by their own level
		// and must not spend the budget of the tenant's clusters.
		anonymousRead := a == accessRead && st.priority(a) == priorityAnonymous
		if a != accessPublic && !anonymousRead && !s.admitTenant(rec, st.ns) {
			return
		}
		h(rec, r, p)
	}
}

// invalidRequest: the sender sent what no route takes (a body that does
// not parse, is too large or too slow, or fails validation).
func invalidRequest(code int) bool {
	switch code {
	case http.StatusBadRequest, http.StatusRequestTimeout, http.StatusRequestEntityTooLarge,
		http.StatusUnsupportedMediaType, http.StatusUnprocessableEntity:
		return true
	}
	return false
}

// requestState is the guard's bookkeeping of one request, reachable from
// its context: the in-flight slot it holds, who sent it, and what its
// audit line needs.
type requestState struct {
	s *Server
	// held: the source's slot (inFlight); authenticating: the slot of a
	// request being authenticated; ticket: its level's seat and bytes.
	held, authenticating atomic.Bool
	ticketMu             sync.Mutex
	ticket               *ticket
	// addr is the client's address, for the audit log; source is what its
	// per-address budgets are keyed by (an IPv6 client's /64, see
	// review.SourceKey).
	addr, source string
	// limits are the route's (what its body may carry).
	limits limits
	// ns is the tenant's namespace (the bridge's, without /tenants/...).
	ns string
	// identity is what the request is rate-limited as; tokenHash and
	// tokenKey the registration token it carried (accessAgent in token
	// mode), or credentialHash and cluster the cluster credential and the
	// report that accepts it.
	identity, tokenHash, tokenKey string
	credentialHash, cluster       string
	// reissueHash is the hash of the reissue token the request carried
	// (its tokenHash is then that token's too).
	reissueHash string
	// tokenExpired says why the registration token is expired, in legacy
	// mode, where it still checks in the clusters bound to it.
	tokenExpired string
	// heartbeat: a check-in that changed nothing.
	heartbeat bool
}

// client is the audit log's name of the sender: its identity (a hash for
// a token), else its address.
func (st *requestState) client() string {
	switch {
	case st.cluster != "":
		return "cluster:" + st.ns + "/" + st.cluster + "@" + st.addr
	case st.tokenHash != "":
		return "token:" + st.tokenHash[:12] + "@" + st.addr
	case st.identity != "" && !strings.HasPrefix(st.identity, "addr:"):
		if len(st.identity) > 64 {
			return st.identity[:64]
		}
		return st.identity
	}
	return "addr:" + st.addr
}

// free gives back the request's slots and its level's seat, once each.
func (st *requestState) free() {
	if st.authenticating.CompareAndSwap(true, false) {
		st.s.inFlight.authenticated()
	}
	if st.held.CompareAndSwap(true, false) {
		st.s.inFlight.release(st.source)
	}
	st.ticketMu.Lock()
	t := st.ticket
	st.ticket = nil
	st.ticketMu.Unlock()
	if t != nil {
		t.release()
	}
}

func (st *requestState) setTicket(t *ticket) {
	st.ticketMu.Lock()
	defer st.ticketMu.Unlock()
	st.ticket = t
}

// grow takes extra bytes in the request's level for what it builds (an
// answer), or says it cannot have them now.
func (st *requestState) grow(extra int64) bool {
	st.ticketMu.Lock()
	t := st.ticket
	st.ticketMu.Unlock()
	return t == nil || t.grow(extra)
}

// priority is the request's level, from what authentication found.
func (st *requestState) priority(a access) priority {
	switch {
	case st.cluster != "":
		return priorityCluster
	case st.tokenHash != "", strings.HasPrefix(st.identity, "token:"):
		return priorityRegistration
	case strings.HasPrefix(st.identity, "user:"), a == accessDoctorRead:
		// A token RBAC authorised (a pipeline, an operator), or the doctor
		// credentials.
		return priorityPublisher
	}
	return priorityAnonymous
}

// fairKey is whom the request queues as inside its level.
func (st *requestState) fairKey() string {
	switch {
	case st.cluster != "":
		return "cluster:" + st.ns + "/" + st.cluster
	case st.tokenHash != "":
		return "token:" + st.tokenHash + "@" + st.source
	case st.identity != "" && !strings.HasPrefix(st.identity, "addr:"):
		return st.identity
	}
	return "addr:" + st.source
}

// failureKey is whose failure budget the request's failures draw on: its
// cluster's, once a credential proved it (a shared Ingress address is not
// locked out by one cluster's bad requests), else its source address's.
func (st *requestState) failureKey() string {
	if st.cluster != "" {
		return "cluster:" + st.ns + "/" + st.cluster
	}
	return st.source
}

type stateKey struct{}

func stateOf(ctx context.Context) *requestState {
	st, _ := ctx.Value(stateKey{}).(*requestState)
	if st == nil {
		return &requestState{}
	}
	return st
}

// nsOf is the namespace of the request whose context is ctx: its tenant's.
func (s *Server) nsOf(ctx context.Context) string {
	if st, _ := ctx.Value(stateKey{}).(*requestState); st != nil && st.ns != "" {
		return st.ns
	}
	return s.opts.Namespace
}

// markHeartbeat keeps the request out of the audit log (see Options.Audit).
func markHeartbeat(ctx context.Context) { stateOf(ctx).heartbeat = true }

// releaseSlot gives back the request's in-flight slot and level seat
// early: a long-poll that parks costs neither while it waits.
func releaseSlot(r *http.Request) {
	if st := stateOf(r.Context()); st.s != nil {
		st.free()
	}
}
