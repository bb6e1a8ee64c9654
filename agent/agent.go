// Package agent is the in-cluster agent (`trainyard agent`): it finds the
// workload cluster's components through its discovery sources
// (agent/source/...) and reports them to the hub: the bridge over HTTP, or
// the hub's API in direct mode.
//
// It is built on client-go alone (see Kube), so that its binary
// (cmd/trainyard-agent) links none of the manager.
package agent

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"

	"github.com/trainyard-dev/trainyard/internal/wire"
)

// The labels and annotation components are found by.
const (
	LabelName         = "app.kubernetes.io/name"
	LabelVersion      = "app.kubernetes.io/version"
	LabelTrain        = "trainyard.dev/train"
	AnnotationDeisVer = "component.deis.io/version"
)

// Options configure the agent.
type Options struct {
	// Hub takes the check-ins; nil: the bridge at HubURL (HTTPHub).
	Hub Hub
	// HubURL is the hub bridge's base URL.
	HubURL string
	// Token is the registration token sent as a bearer token.
	Token string
	// TokenFile, when set, is read for the token before every check-in, so
	// that a rotated Secret (a mounted file) takes effect without a restart.
	TokenFile string
	HTTP      *http.Client
	// Credentials keeps the credential the hub issues the cluster (nil: in
	// memory only, lost at a restart).
	Credentials Credentials
	// ClusterID overrides the discovered cluster ID.
	ClusterID string
	// Sources find the components; an earlier source wins a component name
	// over a later one.
	Sources []Source
	// Interval between scheduled check-ins (default 15m), moved by ±Jitter
	// (default 0.25) of itself.
	Interval time.Duration
	Jitter   float64
	// Debounce is how long a change of the workloads waits for more before
	// it triggers a check-in (default 10s).
	Debounce time.Duration
	// BackoffBase and BackoffMax bound the retries after a failure
	// (defaults 5s and 10m).
	BackoffBase, BackoffMax time.Duration
	// ServerVersion gives the workload cluster's Kubernetes version, for
	// the kubernetesVersion property (nil: not reported).
	ServerVersion func() (string, error)
}

// Agent reports one workload cluster to the hub.
type Agent struct {
	opts    Options
	kube    *Kube
	log     logr.Logger
	changed chan struct{}
	id      string
	updates atomic.Int64

	syncOnce sync.Once
	syncErr  error
	synced   atomic.Bool
}

// New builds an agent that reads the workload cluster through kube.
func New(kube *Kube, log logr.Logger, o Options) *Agent {
	if o.Interval <= 0 {
		o.Interval = 15 * time.Minute
	}
	if o.Jitter < 0 || o.Jitter >= 1 {
		o.Jitter = 0.25
	}
	if o.Debounce <= 0 {
		o.Debounce = 10 * time.Second
	}
	if o.BackoffBase <= 0 {
		o.BackoffBase = 5 * time.Second
	}
	if o.BackoffMax <= 0 {
		o.BackoffMax = 10 * time.Minute
	}
	if o.HTTP == nil {
		o.HTTP = &http.Client{Timeout: 30 * time.Second}
	}
	if o.Hub == nil {
		o.Hub = &HTTPHub{URL: o.HubURL, Token: o.Token, TokenFile: o.TokenFile, HTTP: o.HTTP, Credentials: o.Credentials}
	}
	return &Agent{opts: o, kube: kube, log: log, changed: make(chan struct{}, 1)}
}

// Changed tells the agent the workloads changed (an informer handler calls
// it); a check-in follows after the debounce.
func (a *Agent) Changed() {
	select {
	case a.changed <- struct{}{}:
	default:
	}
}

// Sync starts the sources' caches and the nodes' (they run until ctx ends)
// and waits for their initial lists; Start calls it, once.
func (a *Agent) Sync(ctx context.Context) error {
	a.syncOnce.Do(func() {
		for _, s := range a.opts.Sources {
			if a.syncErr = s.Watch(a.kube, a.Changed); a.syncErr != nil {
				return
			}
		}
		if _, a.syncErr = a.kube.cacheNodes(); a.syncErr != nil {
			return
		}
		if a.syncErr = a.kube.Sync(ctx); a.syncErr == nil {
			a.synced.Store(true)
		}
	})
	return a.syncErr
}

// Ready says whether the caches have synced (the readiness probe).
func (a *Agent) Ready() bool { return a.synced.Load() }

// errRetry is a failure worth retrying, after at least retryAfter.
type errRetry struct {
	err        error
	retryAfter time.Duration
}

func (e errRetry) Error() string { return e.err.Error() }

// errAuth is the hub refusing the check-in: retrying soon only storms it.
type errAuth struct{ msg string }

func (e errAuth) Error() string { return e.msg }

// CheckIn reports the cluster once (after Sync).
func (a *Agent) CheckIn(ctx context.Context) error {
	if !a.synced.Load() {
		return errRetry{err: errNotSynced}
	}
	if a.id == "" {
		id, err := ClusterID(ctx, a.kube, a.opts.ClusterID)
		if err != nil {
			return errRetry{err: err}
		}
		a.id = id
		a.log.Info("reporting as cluster", "clusterID", id)
	}
	var found [][]wire.ComponentVersion
	for _, s := range a.opts.Sources {
		comps, skipped, err := s.List(ctx)
		if err != nil {
			return errRetry{err: err}
		}
		for _, why := range skipped {
			a.log.V(1).Info("not reported", "why", why)
		}
		found = append(found, comps)
	}
	comps, skipped := merge(found)
	for _, why := range skipped {
		a.log.V(1).Info("not reported", "why", why)
	}
	props, err := Properties(ctx, a.kube, a.opts.ServerVersion)
	if err != nil {
		return errRetry{err: err}
	}
	if err := a.opts.Hub.CheckIn(ctx, wire.Cluster{ID: a.id, Components: comps, Properties: props}); err != nil {
		return err
	}
	a.log.Info("checked in", "clusterID", a.id, "components", len(comps))
	a.logUpdates(ctx, comps)
	return nil
}

// logUpdates asks the hub for the latest release of every reported
// component and logs those with an update: the cluster's operator sees in
// the agent's log what the hub sees. Failures only log: the check-in itself
// succeeded.
func (a *Agent) logUpdates(ctx context.Context, comps []wire.ComponentVersion) {
	if len(comps) == 0 {
		return
	}
	latest, err := a.opts.Hub.Updates(ctx, a.id, comps)
	if err != nil {
		a.log.V(1).Info("could not ask the hub for updates", "error", err.Error())
		return
	}
	n := 0
	for i, l := range latest {
		if l.UpdateAvailable == "" || i >= len(comps) || l.Component == nil {
			continue
		}
		n++
		a.log.Info("update available", "component", l.Component.Name, "train", comps[i].Version.Train,
			"running", comps[i].Version.Version, "latest", l.UpdateAvailable)
	}
	a.updates.Store(int64(n))
}

// Updates is how many reported components had an update at the last
// successful check-in.
func (a *Agent) Updates() int64 { return a.updates.Load() }

// Start checks in now, then on the jittered interval and soon after the
// workloads change, retrying failures with backoff. Nothing stops it but ctx.
func (a *Agent) Start(ctx context.Context) error {
	if err := a.Sync(ctx); err != nil {
		if ctx.Err() != nil {
			return nil // stopped while starting
		}
		return err
	}
	failures := 0
	for wait := time.Duration(-1); ; {
		// The first check-in goes at once (wait < 0), whatever the
		// informers' initial events said meanwhile.
		if wait < 0 {
			drain(a.changed)
		} else if !a.sleep(ctx, wait) {
			return nil
		}
		err := a.CheckIn(ctx)
		var retry errRetry
		var auth errAuth
		switch {
		case err == nil:
			failures = 0
			wait = nextCheckIn(a.opts.Interval, a.opts.Jitter, random())
		case errors.As(err, &auth):
			// Log once per interval, not per retry: no storm against the hub.
			a.log.Error(err, "check-in refused; trying again at the next interval")
			failures = 0
			wait = nextCheckIn(a.opts.Interval, a.opts.Jitter, random())
		case errors.As(err, &retry):
			wait = backoff(failures, a.opts.BackoffBase, a.opts.BackoffMax, retry.retryAfter)
			failures++
			a.log.Info("check-in failed; retrying", "error", err.Error(), "in", wait.String())
		default:
			wait = backoff(failures, a.opts.BackoffBase, a.opts.BackoffMax, 0)
			failures++
			a.log.Info("check-in failed; retrying", "error", err.Error(), "in", wait.String())
		}
	}
}

// sleep waits for d, or for a change of the workloads and the debounce
// after it; false when ctx ends first.
func (a *Agent) sleep(ctx context.Context, d time.Duration) bool {
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-timer.C:
		return true
	case <-a.changed:
	}
	// Debounce: a rollout changes several workloads in a row.
	select {
	case <-ctx.Done():
		return false
	case <-time.After(a.opts.Debounce):
	}
	drain(a.changed)
	return true
}

func drain(ch chan struct{}) {
	select {
	case <-ch:
	default:
	}
}
