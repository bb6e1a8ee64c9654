package bridge

import (
	"context"
	"io"
	"math"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

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

var (
	requestsTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "trainyard_bridge_requests_total",
		Help: "Bridge requests by route and status code.",
	}, []string{"route", "code"})
	requestSeconds = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "trainyard_bridge_request_duration_seconds",
		Help:    "Bridge request latency by route.",
		Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
	}, []string{"route"})
	shedTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "trainyard_bridge_shed_requests_total",
		Help: "Requests refused to protect the bridge: rate_limit and auth_failures (429), in_flight and client_in_flight (503), slow_body (408).",
	}, []string{"reason"})
	authFailures = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "trainyard_bridge_auth_failures_total",
		Help: "Requests refused for authentication or authorization, by reason.",
	}, []string{"reason"})
	heldRefusalsFull = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "trainyard_bridge_refusals_not_held_total",
		Help: "429 answers sent at once because as many refusals as may be were already held (--bridge-refusal-delay).",
	})
)

func init() {
	ctrlmetrics.Registry.MustRegister(requestsTotal, requestSeconds, shedTotal, authFailures, heldRefusalsFull)
}

// clientAddr is the request's source address: the peer, or for a trusted
// proxy the last address in X-Forwarded-For that is not a trusted proxy.
func (s *Server) clientAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	peer, err := netip.ParseAddr(host)
	if err != nil || !s.trusted(peer) {
		return host
	}
	hops := strings.Split(strings.Join(r.Header.Values("X-Forwarded-For"), ","), ",")
	for i := len(hops) - 1; i >= 0; i-- {
		a, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
		if err != nil {
			return host // a proxy we trust wrote something else: trust no further
		}
		if !s.trusted(a.Unmap()) {
			return a.Unmap().String()
		}
	}
	return host
}

func (s *Server) trusted(a netip.Addr) bool {
	a = a.Unmap()
	for _, p := range s.opts.TrustedProxies {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// limiter holds a token bucket per key. The set is hard-bounded: idle
// buckets are swept, and when it is full anyway an arbitrary one is
// dropped (which only gives its owner a fresh burst).
type limiter struct {
	rate  rate.Limit
	burst int
	now   func() time.Time
	max   int

	mu      sync.Mutex
	clients map[string]*clientBucket
	swept   time.Time
}

type clientBucket struct {
	*rate.Limiter
	seen time.Time
}

// maxTrackedClients bounds each limiter's memory (about 200 bytes a key).
const (
	maxTrackedClients = 100000
	idleClient        = 10 * time.Minute
)

func newLimiter(r float64, burst int, now func() time.Time) *limiter {
	return &limiter{rate: rate.Limit(r), burst: burst, now: now, max: maxTrackedClients, clients: map[string]*clientBucket{}}
}

// bucket finds or makes key's bucket; the caller holds mu.
func (l *limiter) bucket(key string, now time.Time) *clientBucket {
	b := l.clients[key]
	if b != nil {
		b.seen = now
		return b
	}
	if len(l.clients) >= l.max && now.Sub(l.swept) > time.Second {
		for k, c := range l.clients {
			if now.Sub(c.seen) > idleClient {
				delete(l.clients, k)
			}
		}
		l.swept = now
	}
	for k := range l.clients {
		if len(l.clients) < l.max {
			break
		}
		delete(l.clients, k)
	}
	b = &clientBucket{Limiter: rate.NewLimiter(l.rate, l.burst), seen: now}
	l.clients[key] = b
	return b
}

// allow takes a token for key, or says how long to wait for one.
func (l *limiter) allow(key string) (bool, time.Duration) { return l.allowN(key, 1) }

// allowN takes n tokens for key, or says how long to wait for them.
func (l *limiter) allowN(key string, n int) (bool, time.Duration) {
	now := l.now()
	l.mu.Lock()
	b := l.bucket(key, now)
	l.mu.Unlock()
	res := b.ReserveN(now, n)
	if !res.OK() {
		return false, time.Second
	}
	if d := res.DelayFrom(now); d > 0 {
		res.CancelAt(now)
		return false, d
	}
	return true, 0
}

// peek tells whether key has a token left, without taking it.
func (l *limiter) peek(key string) (bool, time.Duration) {
	now := l.now()
	l.mu.Lock()
	b := l.clients[key]
	l.mu.Unlock()
	if b == nil {
		return true, 0
	}
	if t := b.TokensAt(now); t < 1 {
		return false, time.Duration((1 - t) / float64(l.rate) * float64(time.Second))
	}
	return true, 0
}

// size is how many keys are tracked.
func (l *limiter) size() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.clients)
}

// admit answers 429 unless identity may send another request now.
func (s *Server) admit(w http.ResponseWriter, identity string) bool {
	if ok, wait := s.limiter.allow(identity); !ok {
		shedTotal.WithLabelValues("rate_limit").Inc()
		w.Header().Set("Retry-After", retryAfter(wait))
		writeError(w, http.StatusTooManyRequests, "too many requests from this client; retry after "+retryAfter(wait)+"s")
		return false
	}
	return true
}

// admitTenant answers 429 unless the tenant's budget has room.
func (s *Server) admitTenant(w http.ResponseWriter, ns string) bool {
	if ok, wait := s.tenantLimiter.allow("tenant:" + ns); !ok {
		shedTotal.WithLabelValues("tenant_rate_limit").Inc()
		w.Header().Set("Retry-After", retryAfter(wait))
		writeError(w, http.StatusTooManyRequests, "too many requests for tenant "+ns+"; retry after "+retryAfter(wait)+"s")
		return false
	}
	return true
}

// retryAfter is a Retry-After value in whole seconds, at least 1.
func retryAfter(d time.Duration) string {
	return strconv.Itoa(int(math.Max(1, math.Ceil(d.Seconds()))))
}

// inFlight bounds what a request holds before its priority level takes it
// (see fairness.go): at most max requests being authenticated at once (no
// body is read then; a cluster credential is a cache lookup), and at most
// perClient requests from one source address for a request's whole life.
// Its map holds only sources with a request in progress.
type inFlight struct {
	max, perClient int

	mu             sync.Mutex
	authenticating int
	per            map[string]int
}

// acquire takes a slot for source, or says why not.
func (f *inFlight) acquire(source string) (reason string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	switch {
	case f.authenticating >= f.max:
		return "in_flight"
	case f.per[source] >= f.perClient:
		return "client_in_flight"
	}
	f.authenticating++
	f.per[source]++
	return ""
}

// authenticated ends a request's authentication.
func (f *inFlight) authenticated() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.authenticating--
}

func (f *inFlight) release(source string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.per[source]--; f.per[source] <= 0 {
		delete(f.per, source)
	}
}

// statusRecorder remembers the status a handler wrote.
type statusRecorder struct {
	http.ResponseWriter
	code int
	// hasBody: the request came with a body. Go's server reads what is
	// left of a small unread body before it sends the answer; a refusal is
	// sent first (full duplex), then drainRefused reads the rest.
	hasBody bool
	// srv, st and ctx: for holding a 429 (Options.RefusalDelay).
	srv *Server
	st  *requestState
	ctx context.Context
}

// maxHeldRefusals bounds the refusals held at once (a goroutine and a
// connection's buffers each, some 20 KiB: 10 MiB in all).
const maxHeldRefusals = 512

func (s *statusRecorder) WriteHeader(code int) {
	if s.code == 0 {
		if (code == http.StatusTooManyRequests || code == http.StatusServiceUnavailable) && s.srv != nil {
			s.srv.holdRefusal(s.ctx, s.st, s.Header().Get("Retry-After"))
		}
		s.code = code
		if s.hasBody && code >= http.StatusBadRequest {
			_ = http.NewResponseController(s.ResponseWriter).EnableFullDuplex()
			// The connection ends with a refused body: what is left of it
			// may be more than drainRefused reads, and a connection whose
			// body was not read to its end cannot carry another request.
			s.Header().Set("Connection", "close")
		}
	}
	s.ResponseWriter.WriteHeader(code)
}

// holdRefusal waits Options.RefusalDelay (at most retryAfter seconds)
// before a 429 or 503 goes out, having given back the request's source slot and
// level seat: held, it costs a goroutine, not a seat anyone else needs. A
// client that keeps sending after its budget is spent is mostly waiting,
// so a flood from a few connections costs the bridge a few refusals a
// second instead of a thousand, the CPU its clusters' check-ins need.
func (s *Server) holdRefusal(ctx context.Context, st *requestState, retryAfter string) {
	d := s.opts.RefusalDelay
	if ra, err := strconv.Atoi(retryAfter); err == nil && time.Duration(ra)*time.Second < d {
		d = time.Duration(ra) * time.Second
	}
	if d <= 0 {
		return
	}
	select {
	case s.heldRefusals <- struct{}{}:
		defer func() { <-s.heldRefusals }()
	default:
		heldRefusalsFull.Inc()
		return // as many held as may be: this one goes out at once
	}
	if st != nil {
		st.free()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	case <-s.draining:
	}
}

// A refused request's unread body is read, up to maxDrained bytes (the
// largest body any route takes) and for at most refusedBodyWait, after its
// answer has gone out: a client sending a byte a second has its refusal at
// once and holds its slot 2 s at most, while a fast one is not reset in the
// middle of its upload (which would lose it the answer: closing a
// connection with unread data resets it, and the reset discards the answer
// the client had not read yet). An anonymous source has a drain budget,
// drainRate a second after a burst of drainBurst: reading a flood of refused
// 1 MiB bodies whole cost the bridge the CPU its clusters' check-ins wait
// for. Past it, at most maxDrainedAnonymous is read and the connection
// closes.
const (
	refusedBodyWait     = 2 * time.Second
	maxDrained          = 8<<20 + 1
	maxDrainedAnonymous = 64 << 10
	drainUnit           = 1 << 10 // the drain budget counts KiB
	drainRate           = (1 << 20) / drainUnit
	drainBurst          = (16 << 20) / drainUnit
)

// drainLimit is how much of a refused request's body is read: all of it
// (up to maxDrained) for an authenticated client, and for an anonymous one
// while its source's drain budget lasts.
func (s *Server) drainLimit(st *requestState, a access, r *http.Request) int64 {
	if st.priority(a) != priorityAnonymous {
		return maxDrained
	}
	n := r.ContentLength
	if n < 0 || n > maxDrained {
		n = maxDrained
	}
	if ok, _ := s.drains.allowN(st.source, int(n/drainUnit)+1); ok {
		return n
	}
	return maxDrainedAnonymous
}

func (s *statusRecorder) drainRefused(r *http.Request, limit int64) {
	if !s.hasBody || s.code < http.StatusBadRequest {
		return
	}
	rc := http.NewResponseController(s.ResponseWriter)
	if rc.Flush() != nil || rc.SetReadDeadline(time.Now().Add(refusedBodyWait)) != nil {
		return
	}
	_, _ = io.CopyN(io.Discard, r.Body, limit)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	if s.code == 0 {
		s.code = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection (read
// deadlines of slow bodies).
func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

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
