package benchenv

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"

	trainyardv1 "github.com/trainyard-dev/trainyard/api/v1alpha1"
)

// Watcher follows ClusterReports through an informer (add it as the
// informer's handler): for each report, the value Of extracts from its
// status, and its resourceVersion, so a bench can wait for N reports to
// reach a value and count which reports were written.
type Watcher struct {
	// Of is a report's value; ok false leaves the last value in place.
	Of func(*trainyardv1.ClusterReport) (value string, ok bool)

	mu     sync.Mutex
	value  map[string]string
	at     map[string]time.Time // when value last changed
	rv     map[string]string
	notify chan struct{}
}

// NewWatcher makes a watcher of the value of.
func NewWatcher(of func(*trainyardv1.ClusterReport) (string, bool)) *Watcher {
	return &Watcher{Of: of, value: map[string]string{}, at: map[string]time.Time{}, rv: map[string]string{}, notify: make(chan struct{}, 1)}
}

func (w *Watcher) observe(obj any) {
	r, ok := obj.(*trainyardv1.ClusterReport)
	if !ok {
		return
	}
	w.mu.Lock()
	w.rv[r.Name] = r.ResourceVersion
	if v, ok := w.Of(r); ok && w.value[r.Name] != v {
		w.value[r.Name], w.at[r.Name] = v, time.Now()
	}
	w.mu.Unlock()
	select {
	case w.notify <- struct{}{}:
	default:
	}
}

func (w *Watcher) OnAdd(obj any, _ bool) { w.observe(obj) }
func (w *Watcher) OnUpdate(_, obj any)   { w.observe(obj) }
func (w *Watcher) OnDelete(any)          {}

// Wait returns once want reports have a value ok accepts, or fails after limit.
func (w *Watcher) Wait(ctx context.Context, ok func(string) bool, want int, limit time.Duration) error {
	timeout := time.After(limit)
	for {
		w.mu.Lock()
		n := 0
		for _, v := range w.value {
			if ok(v) {
				n++
			}
		}
		w.mu.Unlock()
		if n >= want {
			return nil
		}
		select {
		case <-w.notify:
		case <-timeout:
			return fmt.Errorf("only %d of %d reports got there after %s", n, want, limit)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Arrivals is, sorted, when each report whose value ok accepts got that
// value (as this watcher saw it): the shape of a wave of writes.
func (w *Watcher) Arrivals(ok func(string) bool) []time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	var ts []time.Time
	for name, v := range w.value {
		if ok(v) {
			ts = append(ts, w.at[name])
		}
	}
	slices.SortFunc(ts, time.Time.Compare)
	return ts
}

// ResourceVersions is every report's resourceVersion now.
func (w *Watcher) ResourceVersions() map[string]string {
	w.mu.Lock()
	defer w.mu.Unlock()
	m := make(map[string]string, len(w.rv))
	for k, v := range w.rv {
		m[k] = v
	}
	return m
}

// ChangedSince counts the reports written since before, those in counts
// apart from the others.
func (w *Watcher) ChangedSince(before map[string]string, in func(name string) bool) (inside, outside int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for name, rv := range w.rv {
		if before[name] == rv {
			continue
		}
		if in(name) {
			inside++
		} else {
			outside++
		}
	}
	return inside, outside
}

var _ toolscache.ResourceEventHandler = &Watcher{}

// Watch feeds w from an informer on namespace ns's ClusterReports (transform,
// if not nil, slims what the informer keeps), synced when it returns.
func (e *Env) Watch(ctx context.Context, ns string, w *Watcher, transform toolscache.TransformFunc) error {
	informers, err := cache.New(e.Config, cache.Options{Scheme: e.Scheme,
		DefaultNamespaces: map[string]cache.Config{ns: {}}, DefaultTransform: transform})
	if err != nil {
		return err
	}
	inf, err := informers.GetInformer(ctx, &trainyardv1.ClusterReport{})
	if err != nil {
		return err
	}
	if _, err := inf.AddEventHandler(w); err != nil {
		return err
	}
	go func() { _ = informers.Start(ctx) }()
	informers.WaitForCacheSync(ctx)
	return nil
}
