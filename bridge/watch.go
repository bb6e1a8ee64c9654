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

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/trainyard-dev/trainyard/api/v1alpha1"
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
// is closed on a change and replaced.
type changes struct {
	mu     sync.Mutex
	chans  map[string]chan struct{}
	parked atomic.Int64
}

func (c *changes) wait(train string) <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.chans == nil {
		c.chans = map[string]chan struct{}{}
	}
	ch := c.chans[train]
	if ch == nil {
		ch = make(chan struct{})
		c.chans[train] = ch
	}
	return ch
}

func (c *changes) changed(train string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if ch := c.chans[train]; ch != nil {
		close(ch)
		delete(c.chans, train)
	}
}

// Watch wakes long-polls when a train or one of its releases changes.
func (s *Server) Watch(ctx context.Context, informers cache.Informers) error {
	var notify func(obj any)
	notify = func(obj any) {
		switch o := obj.(type) {
		case *v1.ReleaseTrain:
			s.changes.changed(o.Namespace + "/" + o.Name)
		case *v1.ComponentRelease:
			s.changes.changed(o.Namespace + "/" + v1.TrainName(o.Spec.Component, o.Spec.Train))
		case toolscache.DeletedFinalStateUnknown:
			notify(o.Obj)
		}
	}
	handler := toolscache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { notify(obj) },
		UpdateFunc: func(_, obj any) { notify(obj) },
		DeleteFunc: notify,
	}
	for _, obj := range []client.Object{&v1.ReleaseTrain{}, &v1.ComponentRelease{}} {
		inf, err := informers.GetInformer(ctx, obj)
		if err != nil {
			return err
		}
		if _, err := inf.AddEventHandler(handler); err != nil {
			return err
		}
	}
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
	key := s.opts.Namespace + "/" + v1.TrainName(p["component"], p["train"])
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for {
		changed := s.changes.wait(key) // before reading: no change can slip between
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
		case <-timer.C:
			if err != nil {
				writeError(w, http.StatusNotFound, "404 release not found")
				return true
			}
			writeCacheable(w, r, body) // still the client's: 304
			return true
		case <-s.draining:
			if err != nil {
				writeError(w, http.StatusNotFound, "404 release not found")
				return true
			}
			writeCacheable(w, r, body) // shutting down: answer what is current
			return true
		case <-r.Context().Done():
			return true
		}
	}
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
