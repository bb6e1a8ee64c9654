package controllers

import (
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/types"
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
