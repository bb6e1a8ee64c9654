package controllers

import (
	"slices"
	"sync"

	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
)

// ownWrites remembers, per report, the writes the report controller made
// last (its status write, then the write of its labels): the
// resourceVersion each computed from and the one it returned. The watch
// event of exactly such a change (old and new the same two versions) carries
// nothing the controller did not know when it wrote, so it is not reconciled
// again; when anything else was written in between, the versions differ and
// the event passes. When a ring of 5,000 clusters opens, that is 5,000
// reconciles fewer (hack/bench/rollout).
//
// An entry goes when its echo comes, when later writes replace it or when
// the report is deleted: at most ownWritesKept per report.
type ownWrites struct {
	mu sync.Mutex
	m  map[types.NamespacedName][]write
}

// write is one write's resourceVersions, before and after.
type write [2]string

// ownWritesKept is how many writes of a report are remembered: one
// reconcile writes at most two.
const ownWritesKept = 2

func newOwnWrites() *ownWrites { return &ownWrites{m: map[types.NamespacedName][]write{}} }

func (w *ownWrites) record(key types.NamespacedName, from, to string) {
	if w == nil || from == "" || to == "" || from == to {
		return // nil: a reconciler not set up with a manager
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	ws := w.m[key]
	if len(ws) > 0 && ws[len(ws)-1][1] != from {
		ws = nil // written since by someone else: the older echo will not match anyway
	}
	ws = append(ws, write{from, to})
	if len(ws) > ownWritesKept {
		ws = ws[len(ws)-ownWritesKept:]
	}
	w.m[key] = ws
}

func (w *ownWrites) forget(key types.NamespacedName) {
	if w == nil {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.m, key)
}

// echo tells, once, whether from → to is a write recorded for key.
func (w *ownWrites) echo(key types.NamespacedName, from, to string) bool {
	if w == nil {
		return false
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	ws := w.m[key]
	i := slices.Index(ws, write{from, to})
	if i < 0 {
		return false
	}
	// Events come in order: the writes before this one have had theirs.
	if ws = ws[i+1:]; len(ws) == 0 {
		delete(w.m, key)
	} else {
		w.m[key] = slices.Clone(ws)
	}
	return true
}

// notEcho drops the update events that are the controller's own last write
// coming back.
func (w *ownWrites) notEcho() predicate.Funcs {
	return predicate.Funcs{UpdateFunc: func(e event.UpdateEvent) bool {
		key := types.NamespacedName{Namespace: e.ObjectNew.GetNamespace(), Name: e.ObjectNew.GetName()}
		return !w.echo(key, e.ObjectOld.GetResourceVersion(), e.ObjectNew.GetResourceVersion())
	}}
}
