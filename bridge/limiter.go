package bridge

import (
	"math"
	"net/http"
	"strconv"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

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
