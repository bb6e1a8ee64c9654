package controllers_test

import (
	"context"
	"sync"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/client"

	trainyardv1 "github.com/trainyard-dev/trainyard/api/v1alpha1"
)

// promoteRace holds each replica's creation of a promoted release at a
// barrier until every replica has come to create it, so that they create it
// at the same moment, and records what the API server answered each one:
// the exactly-once spec can then show that both replicas raced and that
// only one creation took. nil (outside that spec): no barrier.
var promoteRace struct {
	sync.Mutex
	b *raceBarrier
}

type raceBarrier struct {
	ns       string
	replicas int
	timeout  time.Duration

	mu     sync.Mutex
	rounds map[string]*raceRound // by release name
}

type raceRound struct {
	arrived  map[string]bool // replicas
	met      chan struct{}   // closed when every replica arrived
	outcomes map[string]error
}

// racingClient is a replica's client: its ComponentRelease creations in
// the barrier's namespace meet the other replicas' first.
type racingClient struct {
	client.Client
	replica string
}

func (c racingClient) Create(ctx context.Context, obj client.Object, opts ...client.CreateOption) error {
	promoteRace.Lock()
	b := promoteRace.b
	promoteRace.Unlock()
	r, ok := obj.(*trainyardv1.ComponentRelease)
	if b == nil || !ok || r.Namespace != b.ns {
		return c.Client.Create(ctx, obj, opts...)
	}
	round := b.arrive(r.Name, c.replica)
	select {
	case <-round.met:
	case <-time.After(b.timeout): // the spec fails on the missing replica
	}
	err := c.Client.Create(ctx, obj, opts...)
	b.mu.Lock()
	round.outcomes[c.replica] = err
	b.mu.Unlock()
	return err
}

func (b *raceBarrier) arrive(name, replica string) *raceRound {
	b.mu.Lock()
	defer b.mu.Unlock()
	r := b.rounds[name]
	if r == nil {
		r = &raceRound{arrived: map[string]bool{}, met: make(chan struct{}), outcomes: map[string]error{}}
		b.rounds[name] = r
	}
	if !r.arrived[replica] {
		r.arrived[replica] = true
		if len(r.arrived) == b.replicas {
			close(r.met)
		}
	}
	return r
}

// result is, for the release name, which replicas came to create it and
// what each one's creation returned.
func (b *raceBarrier) result(name string) (arrived []string, outcomes map[string]error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	r := b.rounds[name]
	if r == nil {
		return nil, nil
	}
	for k := range r.arrived {
		arrived = append(arrived, k)
	}
	out := map[string]error{}
	for k, v := range r.outcomes {
		out[k] = v
	}
	return arrived, out
}

// openRace holds each replica's status write that opens a ring of a train
// in the barrier's namespace until every replica has come to write it (a
// ring opened at the fake clock's present), and records the first answer
// each replica got: the exactly-once spec of rollouts shows with it that
// both replicas raced and one write took. nil: no barrier.
var openRace struct {
	sync.Mutex
	b *raceBarrier
}

// rolloutClient is a replica's client for the rollout controller.
type rolloutClient struct {
	client.Client
	replica string
}

func (c rolloutClient) Status() client.SubResourceWriter {
	return rolloutStatus{c.Client.Status(), c.replica}
}

type rolloutStatus struct {
	client.SubResourceWriter
	replica string
}

func (s rolloutStatus) Patch(ctx context.Context, obj client.Object, patch client.Patch, opts ...client.SubResourcePatchOption) error {
	openRace.Lock()
	b := openRace.b
	openRace.Unlock()
	t, ok := obj.(*trainyardv1.ReleaseTrain)
	if b == nil || !ok || t.Namespace != b.ns || t.Status.Rollout == nil {
		return s.SubResourceWriter.Patch(ctx, obj, patch, opts...)
	}
	var rounds []*raceRound
	now := fakeClock.Now().Truncate(time.Second)
	for _, r := range t.Status.Rollout.Rings {
		// A ring opened now (not the baseline a rollout starts from).
		if r.Opened != nil && r.Opened.Time.Equal(now) && r.Version == t.Status.Rollout.Version && r.Reason == "Opened" && r.Previous != "" {
			rounds = append(rounds, b.arrive(t.Name+"/"+r.Name+"/"+r.Version, s.replica))
		}
	}
	for _, round := range rounds {
		select {
		case <-round.met:
		case <-time.After(b.timeout):
		}
	}
	err := s.SubResourceWriter.Patch(ctx, obj, patch, opts...)
	b.mu.Lock()
	for _, round := range rounds {
		if _, done := round.outcomes[s.replica]; !done {
			round.outcomes[s.replica] = err
		}
	}
	b.mu.Unlock()
	return err
}
