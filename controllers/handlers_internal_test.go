package controllers

import (
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/event"

	trainyardv1 "github.com/trainyard-dev/trainyard/api/v1alpha1"
)

// A train's recount waits the configured delay until it is known to be
// costly, then recountCost times its last recount, until it is forgotten.
func TestAdoptionDelayFollowsTheRecountCost(t *testing.T) {
	d := &adoptionDelays{min: time.Second}
	big := types.NamespacedName{Namespace: "fleet", Name: "router.stable"}
	small := types.NamespacedName{Namespace: "fleet", Name: "router.beta"}
	if got := d.of(big); got != time.Second {
		t.Fatalf("before any recount: %v, want the configured 1s", got)
	}
	d.counted(big, 80*time.Millisecond) // 100,000 followers
	d.counted(small, time.Millisecond)
	if got, want := d.of(big), recountCost*80*time.Millisecond; got != want {
		t.Fatalf("after an 80ms recount: %v, want %v", got, want)
	}
	if got := d.of(small); got != time.Second {
		t.Fatalf("a cheap train: %v, want the configured 1s", got)
	}
	d.forget(big)
	if got := d.of(big); got != time.Second {
		t.Fatalf("a forgotten train: %v, want the configured 1s", got)
	}
	if len(d.took) != 1 {
		t.Fatalf("%d trains remembered, want 1", len(d.took))
	}
	var none *adoptionDelays // a reconciler not set up with a manager
	none.counted(big, time.Second)
	none.forget(big)
	if got := none.of(big); got != 0 {
		t.Fatalf("nil delays: %v, want 0", got)
	}
}

// The report controller's own status write coming back is dropped once;
// an event whose versions show another write in between passes, and so do
// later events.
func TestOwnWriteEchoIsDroppedOnce(t *testing.T) {
	w := newOwnWrites()
	pass := w.notEcho()
	key := types.NamespacedName{Namespace: "fleet", Name: "c1"}
	update := func(name, from, to string) event.UpdateEvent {
		return event.UpdateEvent{
			ObjectOld: &trainyardv1.ClusterReport{ObjectMeta: metav1.ObjectMeta{Namespace: "fleet", Name: name, ResourceVersion: from}},
			ObjectNew: &trainyardv1.ClusterReport{ObjectMeta: metav1.ObjectMeta{Namespace: "fleet", Name: name, ResourceVersion: to}}}
	}
	w.record(key, "5", "6")
	if !pass.Update(update("c2", "5", "6")) {
		t.Fatal("another report's event with the same versions was dropped")
	}
	if !pass.Update(update("c1", "4", "6")) {
		t.Fatal("an event over a write the controller did not see was dropped")
	}
	if pass.Update(update("c1", "5", "6")) {
		t.Fatal("the controller's own write 5 → 6 passed")
	}
	if !pass.Update(update("c1", "5", "6")) {
		t.Fatal("the same echo was dropped twice")
	}
	w.record(key, "6", "7")
	w.record(key, "8", "9") // a later write over another's replaces the entry
	if !pass.Update(update("c1", "6", "7")) {
		t.Fatal("a replaced write's echo was dropped")
	}
	// A status write and the labels' write after it: both echoes drop.
	w.record(key, "9", "10")
	w.record(key, "10", "11")
	if pass.Update(update("c1", "9", "10")) || pass.Update(update("c1", "10", "11")) {
		t.Fatal("an echo of two chained writes passed")
	}
	w.forget(key)
	if len(w.m) != 0 {
		t.Fatalf("%d entries after forget, want 0", len(w.m))
	}
	var none *ownWrites // a reconciler not set up with a manager
	none.record(key, "1", "2")
	none.forget(key)
	if !none.notEcho().Update(update("c1", "1", "2")) {
		t.Fatal("nil ownWrites dropped an event")
	}
}
