package controllers_test

import (
	"context"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"sigs.k8s.io/controller-runtime/pkg/client"

	trainyardv1 "github.com/trainyard-dev/trainyard/api/v1alpha1"
	"github.com/trainyard-dev/trainyard/internal/manager"
	"github.com/trainyard-dev/trainyard/internal/testenv"
)

// promoteRace holds each replica's creation of a promoted release at a
// barrier until every replica has come to create it, so that they create it
// at the same moment, and records what the API server answered each one:
// the exactly-once spec can then show that both replicas raced and that
// only one creation took. nil (outside that spec): no barrier.
var promoteRace barrierSlot

// barrierSlot holds the barrier of the spec that races replicas, if any.
type barrierSlot struct {
	sync.Mutex
	b *raceBarrier
}

func (s *barrierSlot) get() *raceBarrier {
	s.Lock()
	defer s.Unlock()
	return s.b
}

// race installs a barrier for ns until the spec ends, and starts a second
// replica with setup (the suite's manager is the first), without leader
// election, until the spec ends.
func (s *barrierSlot) race(ns string, setup manager.Setup) *raceBarrier {
	GinkgoHelper()
	b := &raceBarrier{ns: ns, replicas: 2, timeout: 20 * time.Second, rounds: map[string]*raceRound{}}
	s.Lock()
	s.b = b
	s.Unlock()
	DeferCleanup(func() {
		s.Lock()
		s.b = nil
		s.Unlock()
	})
	mgr, stop, err := testenv.StartManager(cfg, testenv.Manager{Scheme: testScheme, Cache: manager.CacheOptions(),
		Setups: []manager.Setup{manager.SetupIndexes(), setup}})
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(func() { Expect(stop()).To(Succeed()) })
	Eventually(mgr.GetCache().WaitForCacheSync).WithArguments(suiteCtx).Should(BeTrue())
	return b
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
	b := promoteRace.get()
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
var openRace barrierSlot

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
	b := openRace.get()
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

// raced checks, for a round of the barrier, that both replicas came to
// write and that exactly one write took while the other was told it lost
// (lost: AlreadyExists for a creation, Conflict for a locked patch).
func (b *raceBarrier) raced(g Gomega, round string, lost func(error) bool) {
	arrived, outcomes := b.result(round)
	g.Expect(arrived).To(ConsistOf("first", "second"), "both replicas came to write %s", round)
	g.Expect(outcomes).To(HaveLen(2))
	took, lose := 0, 0
	for _, err := range outcomes {
		switch {
		case err == nil:
			took++
		case lost(err):
			lose++
		}
	}
	g.Expect([]int{took, lose}).To(Equal([]int{1, 1}), "outcomes of %s: %v", round, outcomes)
}
