package bridge

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"math"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
)

// Traffic control: the bridge sheds load instead of queueing without bound.
// A client (its bearer token, else its source address) gets a token bucket;
// beyond it the answer is 429 with Retry-After. Beyond MaxInFlight requests
// at once, 503 with Retry-After.

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
		Help: "Requests refused to protect the bridge: rate_limit (429) or in_flight (503).",
	}, []string{"reason"})
	authFailures = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "trainyard_bridge_auth_failures_total",
		Help: "Requests refused for authentication or authorization, by reason.",
	}, []string{"reason"})
)

func init() {
	ctrlmetrics.Registry.MustRegister(requestsTotal, requestSeconds, shedTotal, authFailures)
}

// clientKey identifies who sends a request, without keeping a secret: a
// bearer token is hashed.
func clientKey(r *http.Request) string {
	if auth := r.Header.Get("Authorization"); strings.HasPrefix(auth, "Bearer ") {
		sum := sha256.Sum256([]byte(strings.TrimPrefix(auth, "Bearer ")))
		return "token:" + hex.EncodeToString(sum[:6])
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	return "addr:" + host
}

// limiter holds a token bucket per client, forgetting idle ones.
type limiter struct {
	rate  rate.Limit
	burst int
	now   func() time.Time

	mu      sync.Mutex
	clients map[string]*clientBucket
	swept   time.Time
}

type clientBucket struct {
	*rate.Limiter
	seen time.Time
}

// maxTrackedClients bounds the limiter's memory; idle buckets are swept.
const (
	maxTrackedClients = 100000
	idleClient        = 10 * time.Minute
)

// allow takes a token for key, or says how long to wait for one.
func (l *limiter) allow(key string) (bool, time.Duration) {
	now := l.now()
	l.mu.Lock()
	if len(l.clients) >= maxTrackedClients || now.Sub(l.swept) > idleClient {
		for k, b := range l.clients {
			if now.Sub(b.seen) > idleClient {
				delete(l.clients, k)
			}
		}
		l.swept = now
	}
	b := l.clients[key]
	if b == nil {
		b = &clientBucket{Limiter: rate.NewLimiter(l.rate, l.burst)}
		l.clients[key] = b
	}
	b.seen = now
	l.mu.Unlock()
	res := b.ReserveN(now, 1)
	if !res.OK() {
		return false, time.Second
	}
	if d := res.DelayFrom(now); d > 0 {
		res.CancelAt(now)
		return false, d
	}
	return true, 0
}

// retryAfter is a Retry-After value in whole seconds, at least 1.
func retryAfter(d time.Duration) string {
	return strconv.Itoa(int(math.Max(1, math.Ceil(d.Seconds()))))
}

// statusRecorder remembers the status a handler wrote.
type statusRecorder struct {
	http.ResponseWriter
	code int
}

func (s *statusRecorder) WriteHeader(code int) {
	if s.code == 0 {
		s.code = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	if s.code == 0 {
		s.code = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

// guard wraps one route: in-flight and per-client limits, metrics, and an
// audit line for every write (see Options.Audit).
func (s *Server) guard(pattern string, h func(http.ResponseWriter, *http.Request, params)) func(http.ResponseWriter, *http.Request, params) {
	// The route's metric series, looked up once rather than per request.
	ok, seconds := requestsTotal.WithLabelValues(pattern, "200"), requestSeconds.WithLabelValues(pattern)
	return func(w http.ResponseWriter, r *http.Request, p params) {
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w}
		st := &requestState{s: s}
		r = r.WithContext(context.WithValue(r.Context(), stateKey{}, st))
		defer func() {
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
			seconds.Observe(time.Since(start).Seconds())
			if r.Method != http.MethodGet && r.Method != http.MethodHead && !st.read && (!st.heartbeat || s.opts.AuditHeartbeats) {
				// The audit line: who, what, result. Never a secret.
				s.audit.Info("bridge write", "client", clientKey(r), "method", r.Method, "route", pattern,
					"path", r.URL.Path, "code", code, "seconds", time.Since(start).Seconds())
			}
		}()
		select {
		case s.inFlight <- struct{}{}:
			st.held.Store(true)
		default:
			shedTotal.WithLabelValues("in_flight").Inc()
			rec.Header().Set("Retry-After", "1")
			writeError(rec, http.StatusServiceUnavailable, "the bridge is at its limit of concurrent requests; retry")
			return
		}
		if ok, wait := s.limiter.allow(clientKey(r)); !ok {
			shedTotal.WithLabelValues("rate_limit").Inc()
			rec.Header().Set("Retry-After", retryAfter(wait))
			writeError(rec, http.StatusTooManyRequests, "too many requests from this client; retry after "+retryAfter(wait)+"s")
			return
		}
		h(rec, r, p)
	}
}

// requestState is the guard's bookkeeping of one request, reachable from
// its context: the in-flight slot it holds, and what its audit line needs.
type requestState struct {
	s    *Server
	held atomic.Bool
	// read: a read sent with POST; heartbeat: a check-in that changed nothing.
	read, heartbeat bool
}

// free gives back the in-flight slot, once.
func (st *requestState) free() {
	if st.held.CompareAndSwap(true, false) {
		<-st.s.inFlight
	}
}

type stateKey struct{}

func stateOf(ctx context.Context) *requestState {
	st, _ := ctx.Value(stateKey{}).(*requestState)
	return st
}

// markRead and markHeartbeat keep the request out of the audit log (see
// Options.Audit).
func markRead(ctx context.Context) {
	if st := stateOf(ctx); st != nil {
		st.read = true
	}
}

func markHeartbeat(ctx context.Context) {
	if st := stateOf(ctx); st != nil {
		st.heartbeat = true
	}
}

// releaseSlot gives back the request's in-flight slot early: a long-poll
// that parks costs no slot while it waits.
func releaseSlot(r *http.Request) {
	if st := stateOf(r.Context()); st != nil {
		st.free()
	}
}
