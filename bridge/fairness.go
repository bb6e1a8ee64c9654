package bridge

import (
	"context"
	"fmt"
	"hash/maphash"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
)

// Fair shares between kinds of clients, in the spirit of Kubernetes' API
// Priority and Fairness. Once authentication has said who a request is
// from (before a byte of its body is read), it runs in one of four
// priority levels, each with its own share of the bridge's concurrency
// (Options.MaxInFlight) and of its body budget (Options.MaxBodyBytes, the
// bytes that requests being served may hold): a flood in one level waits
// or is refused in that level and moves no other.
//
// Inside a level, requests queue fairly by identity (a cluster, a
// publisher's token, a source address): each identity is dealt a hand of
// queues (shuffle sharding) and joins the shortest; queues are served in
// turn, so a client with many requests waits behind itself, not in front
// of everyone. One identity holds at most an eighth of its level's seats
// and a quarter of its bytes at once; beyond, its requests wait in its
// queues. A request that finds its queue full, or waits longer than
// maxQueueWait, is answered 429 with Retry-After. Health probes and the OpenAPI document
// are exempt (kubelet's probes must not fail because of a flood).
type priority int

const (
	// priorityCluster: a cluster's own credential (check-ins, doctor
	// uploads, its polls).
	priorityCluster priority = iota
	// priorityPublisher: a token RBAC authorises (release pipelines,
	// operators' reads).
	priorityPublisher
	// priorityRegistration: a registration token (new clusters, and legacy
	// fleets that check in with their token).
	priorityRegistration
	// priorityAnonymous: everything else (anonymous reads, open-mode
	// check-ins).
	priorityAnonymous
	numPriorities
)

var priorityNames = [numPriorities]string{"cluster", "publisher", "registration", "anonymous"}

func (p priority) String() string { return priorityNames[p] }

// Each level's share, in percent, of the concurrency and of the body
// budget; anonymous traffic has the smallest share of the bytes.
var (
	seatShares = [numPriorities]int{50, 10, 20, 20}
	byteShares = [numPriorities]int{50, 20, 20, 10}
)

// Queues of a level, as APF's defaults in spirit: 64 queues, a hand of 6,
// 16 requests a queue, and a wait that ends well before a client's timeout.
const (
	queuesPerLevel = 64
	handSize       = 6
	queueLength    = 16
	maxQueueWait   = 2 * time.Second
)

var (
	levelSeats = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "trainyard_bridge_level_seats",
		Help: "Concurrent requests each priority level may serve.",
	}, []string{"level"})
	levelInUse = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "trainyard_bridge_level_requests_in_flight",
		Help: "Requests being served, by priority level (an HPA can scale the bridge on it against trainyard_bridge_level_seats).",
	}, []string{"level"})
	levelQueued = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "trainyard_bridge_level_requests_queued",
		Help: "Requests waiting for a seat, by priority level.",
	}, []string{"level"})
	levelBytes = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "trainyard_bridge_level_body_bytes_in_flight",
		Help: "Body bytes reserved by the requests being served, by priority level.",
	}, []string{"level"})
	levelWait = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "trainyard_bridge_level_queue_wait_seconds",
		Help:    "Time requests waited for a seat, by priority level (dispatched ones).",
		Buckets: []float64{.0005, .001, .005, .01, .05, .1, .25, .5, 1, 2},
	}, []string{"level"})
)

func init() {
	ctrlmetrics.Registry.MustRegister(levelSeats, levelInUse, levelQueued, levelBytes, levelWait)
}

// level is one priority level's seats, bytes and queues.
type level struct {
	name      string
	seats     int
	bytes     int64
	perSeats  int   // one identity's seats at most
	perBytes  int64 // one identity's bytes at most
	seed      maphash.Seed
	inUse     prometheus.Gauge
	queuedG   prometheus.Gauge
	bytesG    prometheus.Gauge
	waitHisto prometheus.Observer

	mu         sync.Mutex
	seatsInUse int
	bytesInUse int64
	queues     [queuesPerLevel][]*waiter
	waiting    int
	next       int // the queue served next
	// per holds the seats and bytes of identities with a request being
	// served; its size is bounded by the level's seats.
	per map[string]*share
}

type share struct {
	seats int
	bytes int64
}

type waiter struct {
	identity   string
	bytes      int64
	ready      chan struct{}
	dispatched bool
}

func newLevel(p priority, seats int, bytes int64) *level {
	name := p.String()
	l := &level{name: name, seats: max(1, seats), bytes: max(1, bytes), seed: maphash.MakeSeed(), per: map[string]*share{},
		inUse: levelInUse.WithLabelValues(name), queuedG: levelQueued.WithLabelValues(name),
		bytesG: levelBytes.WithLabelValues(name), waitHisto: levelWait.WithLabelValues(name)}
	l.perSeats, l.perBytes = max(1, l.seats/8), max(1, l.bytes/4)
	levelSeats.WithLabelValues(name).Set(float64(l.seats))
	return l
}

// levels are the bridge's priority levels.
type levels [numPriorities]*level

func newLevels(seats int, bytes int64) *levels {
	var ls levels
	for p := range numPriorities {
		ls[p] = newLevel(p, seats*seatShares[p]/100, bytes*int64(byteShares[p])/100)
	}
	return &ls
}

// refusal says why a level did not take a request.
type refusal string

const (
	refusedQueueFull refusal = "level_queue_full"
	refusedTimeout   refusal = "level_queue_timeout"
	refusedTooLarge  refusal = "larger_than_share"
)

// acquire waits for a seat and n body bytes for identity, fairly; the
// ticket gives them back. A request whose size is known (sized) and larger
// than one identity's share is refused at once; one of unknown size is
// charged the share.
func (l *level) acquire(ctx context.Context, identity string, n int64, sized bool) (*ticket, refusal) {
	if n > l.perBytes {
		if sized {
			return nil, refusedTooLarge
		}
		n = l.perBytes
	}
	start := time.Now()
	l.mu.Lock()
	if l.waiting == 0 && l.fitsLocked(n) && l.withinShareLocked(identity, n) {
		l.takeLocked(identity, n)
		l.mu.Unlock()
		return &ticket{l: l, identity: identity, n: n}, ""
	}
	q := l.shortestLocked(identity)
	if len(l.queues[q]) >= queueLength {
		l.mu.Unlock()
		return nil, refusedQueueFull
	}
	w := &waiter{identity: identity, bytes: n, ready: make(chan struct{})}
	l.queues[q] = append(l.queues[q], w)
	l.waiting++
	l.queuedG.Inc()
	l.dispatchLocked()
	l.mu.Unlock()

	t := time.NewTimer(maxQueueWait)
	defer t.Stop()
	select {
	case <-w.ready:
	case <-t.C:
	case <-ctx.Done():
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if w.dispatched {
		l.waitHisto.Observe(time.Since(start).Seconds())
		return &ticket{l: l, identity: identity, n: n}, ""
	}
	for i, x := range l.queues[q] {
		if x == w {
			l.queues[q] = append(l.queues[q][:i:i], l.queues[q][i+1:]...)
			break
		}
	}
	l.waiting--
	l.queuedG.Dec()
	// The head of a queue may have been what held the others back.
	l.dispatchLocked()
	return nil, refusedTimeout
}

// withinShareLocked: identity may take one more seat and n more bytes.
func (l *level) withinShareLocked(identity string, n int64) bool {
	s := l.per[identity]
	return s == nil || (s.seats < l.perSeats && s.bytes+n <= l.perBytes)
}

func (l *level) fitsLocked(n int64) bool {
	return l.seatsInUse < l.seats && l.bytesInUse+n <= l.bytes
}

func (l *level) takeLocked(identity string, n int64) {
	l.seatsInUse++
	l.bytesInUse += n
	s := l.per[identity]
	if s == nil {
		s = &share{}
		l.per[identity] = s
	}
	s.seats++
	s.bytes += n
	l.inUse.Inc()
	l.bytesG.Add(float64(n))
}

// ticket is a request's seat and bytes in its level.
type ticket struct {
	l        *level
	identity string
	mu       sync.Mutex
	n        int64 // bytes held
	done     bool
}

// grow takes extra bytes for a request being served (an answer it builds),
// at once or not at all: within the level's room and the identity's share.
func (t *ticket) grow(extra int64) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	l := t.l
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.per[t.identity]
	if t.done || s == nil || l.bytesInUse+extra > l.bytes || s.bytes+extra > l.perBytes {
		return false
	}
	l.bytesInUse += extra
	s.bytes += extra
	t.n += extra
	l.bytesG.Add(float64(extra))
	return true
}

// release gives the seat and bytes back, once, and serves the queues.
func (t *ticket) release() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.done {
		return
	}
	t.done = true
	l, n := t.l, t.n
	l.mu.Lock()
	defer l.mu.Unlock()
	l.seatsInUse--
	l.bytesInUse -= n
	if s := l.per[t.identity]; s != nil {
		if s.seats--; s.seats <= 0 {
			delete(l.per, t.identity)
		} else {
			s.bytes -= n
		}
	}
	l.inUse.Dec()
	l.bytesG.Sub(float64(n))
	l.dispatchLocked()
}

// dispatchLocked serves the queues in turn while the level has seats: a
// queue whose head is over its identity's share, or needs more bytes than
// are free, is passed over this round.
func (l *level) dispatchLocked() {
	for l.waiting > 0 {
		served := false
		for i := range queuesPerLevel {
			q := (l.next + i) % queuesPerLevel
			if len(l.queues[q]) == 0 {
				continue
			}
			if l.seatsInUse >= l.seats {
				return
			}
			w := l.queues[q][0]
			if !l.withinShareLocked(w.identity, w.bytes) || !l.fitsLocked(w.bytes) {
				// Its identity is at its share, or its body needs more room
				// than is free: the other queues go first (a large body is
				// not allowed to hold up the small ones behind it).
				continue
			}
			l.queues[q][0] = nil
			l.queues[q] = l.queues[q][1:]
			l.waiting--
			l.queuedG.Dec()
			l.takeLocked(w.identity, w.bytes)
			w.dispatched = true
			close(w.ready)
			l.next = (q + 1) % queuesPerLevel
			served = true
			break
		}
		if !served {
			return
		}
	}
}

// shortestLocked deals identity its hand of queues (shuffle sharding: two
// identities rarely share a whole hand) and picks the shortest.
func (l *level) shortestLocked(identity string) int {
	h := maphash.String(l.seed, identity)
	var hand [handSize]int
	best := -1
	for i := range handSize {
		// The i-th card of a deal without replacement from 64 queues.
		c := int(h % uint64(queuesPerLevel-i))
		h /= uint64(queuesPerLevel - i)
		for _, prev := range hand[:i] {
			if c >= prev {
				c++
			}
		}
		hand[i] = c
		sortInsert(hand[:i+1])
		if best < 0 || len(l.queues[c]) < len(l.queues[best]) {
			best = c
		}
	}
	return best
}

// sortInsert keeps a hand sorted after its last card was added, as the
// deal above needs to skip the cards already dealt.
func sortInsert(h []int) {
	for i := len(h) - 1; i > 0 && h[i] < h[i-1]; i-- {
		h[i], h[i-1] = h[i-1], h[i]
	}
}

// admitLevel holds the request until its level has a seat and room for
// its body, or answers 429 (413 for a body no share can hold) itself.
func (s *Server) admitLevel(w http.ResponseWriter, r *http.Request, p priority, identity string, n int64, sized bool) (*ticket, bool) {
	t, why := s.levels[p].acquire(r.Context(), identity, n, sized)
	if why == "" {
		return t, true
	}
	shedTotal.WithLabelValues(string(why)).Inc()
	if why == refusedTooLarge {
		writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("request body larger than a %s client may have served at once "+
			"(%d bytes with what its answer may hold; at most %d): send a smaller one", p, n, s.levels[p].perBytes))
		return nil, false
	}
	w.Header().Set("Retry-After", "1")
	writeError(w, http.StatusTooManyRequests, "the bridge is at its limit of concurrent requests for "+p.String()+" clients; retry")
	return nil, false
}
