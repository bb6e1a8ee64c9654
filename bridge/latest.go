package bridge

import (
	"net/http"
	"sync"

	trainyardv1 "github.com/trainyard-dev/trainyard/api/v1alpha1"
)

// latestAnswers memoises each train's multi-get answer (its latest
// release's JSON and version) until the informers report a change to the
// train or its releases. The multi-get is every agent's poll: without the
// memo each item read the train and the release from the cache (two struct
// copies) and the garbage of 17,000 requests a second kept the GC marking
// the manager's whole cache (a third of its CPU in bench-bridge). Only
// trains that exist are kept, so the map is bounded by the ReleaseTrains,
// and by maxLatestAnswers.
type latestAnswers struct {
	mu sync.RWMutex
	m  map[string]latestAnswer // namespace/train
	// gen moves at every change: an answer computed across a change is not
	// kept, since it may predate it.
	gen uint64
}

type latestAnswer struct {
	body    []byte // the release in wire form, as encodedReleases has it
	version string
}

const maxLatestAnswers = 10000

func (l *latestAnswers) get(key string) (latestAnswer, uint64, bool) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	a, ok := l.m[key]
	return a, l.gen, ok
}

func (l *latestAnswers) put(key string, gen uint64, a latestAnswer) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if gen != l.gen {
		return
	}
	if l.m == nil || len(l.m) >= maxLatestAnswers {
		l.m = map[string]latestAnswer{}
	}
	l.m[key] = a
}

// changed forgets a train's answer (key: namespace/train).
func (l *latestAnswers) changed(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.gen++
	delete(l.m, key)
}

// latestOf is the train's latest release in wire form and its version,
// memoised while the bridge watches the informers (Watch); NotFound when the
// train has no latest.
func (s *Server) latestOf(r *http.Request, component, train string) (latestAnswer, error) {
	key := s.nsOf(r.Context()) + "/" + trainyardv1.TrainName(component, train)
	a, gen, ok := s.latestAnswers.get(key)
	if ok {
		return a, nil
	}
	rel, err := s.release(r, component, train, "latest")
	if err != nil {
		return latestAnswer{}, err
	}
	a = latestAnswer{body: s.encoded.get(rel), version: rel.Spec.Version}
	if s.names != nil { // watching: a change will be heard
		s.latestAnswers.put(key, gen, a)
	}
	return a, nil
}
