package bridge

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	trainyardv1 "github.com/trainyard-dev/trainyard/api/v1alpha1"
)

// Long-poll: GET /v3/versions/{train}/{component}/latest?wait=30s with
// If-None-Match parks until the train's latest changes, or answers 304 when
// the wait is over, so agents learn of a release in seconds without polling
// hard.

const (
	maxWait = 60 * time.Second
	// maxParked bounds the requests waiting at once; beyond, a long-poll
	// is answered at once as a plain conditional GET.
	maxParked = 10000
)

// changes broadcasts "something changed" per train: the channel of a train
// is closed on a change and replaced. An entry lives only while a request
// waits on it, so waiting on a train that does not exist costs nothing
// once the request is answered.
type changes struct {
	mu     sync.Mutex
	chans  map[string]*waiters
	parked atomic.Int64
}

type waiters struct {
	ch chan struct{}
	n  int
}

// wait returns the channel closed on the train's next change, and the
// function to call when the caller no longer waits on it.
func (c *changes) wait(train string) (<-chan struct{}, func()) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.chans == nil {
		c.chans = map[string]*waiters{}
	}
	w := c.chans[train]
	if w == nil {
		w = &waiters{ch: make(chan struct{})}
		c.chans[train] = w
	}
	w.n++
	return w.ch, func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		if w.n--; w.n == 0 && c.chans[train] == w {
			delete(c.chans, train)
		}
	}
}

func (c *changes) changed(train string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if w := c.chans[train]; w != nil {
		close(w.ch)
		delete(c.chans, train)
	}
}

// waiting is how many trains have a waiter.
func (c *changes) waiting() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.chans)
}

// Watch wakes long-polls when a train or one of its releases changes.
func (s *Server) Watch(ctx context.Context, informers cache.Informers) error {
	var notify func(obj any)
	notify = func(obj any) {
		switch o := obj.(type) {
		case *trainyardv1.ReleaseTrain:
			s.latestAnswers.changed(o.Namespace + "/" + o.Name)
			s.changes.changed(o.Namespace + "/" + o.Name)
		case *trainyardv1.ComponentRelease:
			s.latestAnswers.changed(o.Namespace + "/" + trainyardv1.TrainName(o.Spec.Component, o.Spec.Train))
			s.changes.changed(o.Namespace + "/" + trainyardv1.TrainName(o.Spec.Component, o.Spec.Train))
		case toolscache.DeletedFinalStateUnknown:
			notify(o.Obj)
		}
	}
	handler := toolscache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) { notify(obj) },
		UpdateFunc: func(old, obj any) {
			// A train's status is rewritten for its adoption and rollout
			// counts; long-polls and cached answers care for its latest.
			if o, ok := old.(*trainyardv1.ReleaseTrain); ok {
				if n, ok := obj.(*trainyardv1.ReleaseTrain); ok && o.Generation == n.Generation &&
					equality.Semantic.DeepEqual(o.Status.Latest, n.Status.Latest) {
					return
				}
			}
			notify(obj)
		},
		DeleteFunc: notify,
	}
	for _, obj := range []client.Object{&trainyardv1.ReleaseTrain{}, &trainyardv1.ComponentRelease{}} {
		inf, err := informers.GetInformer(ctx, obj)
		if err != nil {
			return err
		}
		if _, err := inf.AddEventHandler(handler); err != nil {
			return err
		}
	}
	// The reports' names, in order, for the paged fleet queries.
	names := &reportNames{byNS: map[string]*namespaceNames{}}
	var named func(obj any, present bool)
	named = func(obj any, present bool) {
		switch o := obj.(type) {
		case *trainyardv1.ClusterReport:
			if present {
				names.changed(o.Namespace, o.Name, o)
			} else {
				names.changed(o.Namespace, o.Name, nil)
			}
		case toolscache.DeletedFinalStateUnknown:
			named(o.Obj, false)
		}
	}
	inf, err := informers.GetInformer(ctx, &trainyardv1.ClusterReport{})
	if err != nil {
		return err
	}
	if _, err := inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { named(obj, true) },
		UpdateFunc: func(_, obj any) { named(obj, true) },
		DeleteFunc: func(obj any) { named(obj, false) },
	}); err != nil {
		return err
	}
	s.names = names
	return nil
}

// longPollLatest serves GET .../latest?wait=D with If-None-Match: it answers
// as soon as the latest's ETag differs from the client's, or 304 when the
// wait is over. It reports false when the request is not a long-poll.
func (s *Server) longPollLatest(w http.ResponseWriter, r *http.Request, p params) bool {
	wait, err := waitParam(r)
	if err != nil {
		writeError(w, http.StatusUnprocessableEntity, err.Error())
		return true
	}
	if wait == 0 || p["release"] != "latest" || r.Header.Get("If-None-Match") == "" {
		return false
	}
	if s.changes.parked.Add(1) > maxParked {
		s.changes.parked.Add(-1)
		return false // too many parked: a plain conditional GET
	}
	defer s.changes.parked.Add(-1)
	releaseSlot(r) // a parked request does not hold an in-flight slot
	key := s.nsOf(r.Context()) + "/" + trainyardv1.TrainName(p["component"], p["train"])
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for {
		changed, done := s.changes.wait(key) // before reading: no change can slip between
		answered := s.longPollOnce(w, r, p, changed, timer.C)
		done()
		if answered {
			return true
		}
	}
}

// longPollOnce answers when the latest differs from the client's or the
// wait is over; false: changed fired, look again.
func (s *Server) longPollOnce(w http.ResponseWriter, r *http.Request, p params, changed <-chan struct{}, timeout <-chan time.Time) bool {
	body, err := s.latestBody(r, p["component"], p["train"])
	switch {
	case err == nil && !matches(r, etagOf(body)):
		writeCacheable(w, r, body)
		return true
	case err != nil && !apierrors.IsNotFound(err):
		writeAPIError(w, "reading the release", err)
		return true
	}
	select {
	case <-changed:
		return false
	case <-r.Context().Done():
		return true
	case <-timeout: // still the client's: 304
	case <-s.draining: // shutting down: answer what is current
	}
	if err != nil {
		writeError(w, http.StatusNotFound, "404 release not found")
		return true
	}
	writeCacheable(w, r, body)
	return true
}

// waitParam parses ?wait=: a Go duration up to a minute.
func waitParam(r *http.Request) (time.Duration, error) {
	v := r.URL.Query().Get("wait")
	if v == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 || d > maxWait {
		return 0, fmt.Errorf("query parameter wait=%q must be a duration up to %s, such as 30s", v, maxWait)
	}
	return d, nil
}

// etagOf is the ETag writeCacheable gives body.
func etagOf(body []byte) string {
	sum := sha256.Sum256(body)
	return `"` + hex.EncodeToString(sum[:12]) + `"`
}

// matches tells whether If-None-Match names etag.
func matches(r *http.Request, etag string) bool {
	for _, tag := range strings.Split(r.Header.Get("If-None-Match"), ",") {
		if t := strings.TrimSpace(tag); t == etag || t == "*" || t == "W/"+etag {
			return true
		}
	}
	return false
}

// latestBody is the JSON answer for a train's latest, or an error answer.
func (s *Server) latestBody(r *http.Request, component, train string) ([]byte, error) {
	rel, err := s.release(r, component, train, "latest")
	if err != nil {
		return nil, err
	}
	body, err := json.Marshal(componentVersionOf(rel))
	return append(body, '\n'), err
}
