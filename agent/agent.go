package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/selection"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/trainyard-dev/trainyard/agent/helmrelease"
	"github.com/trainyard-dev/trainyard/internal/wire"
)

// Options configure the agent.
type Options struct {
	// HubURL is the hub bridge's base URL.
	HubURL string
	// Token is the registration token sent as a bearer token.
	Token string
	// TokenFile, when set, is read for the token before every check-in, so
	// that a rotated Secret (a mounted file) takes effect without a restart.
	TokenFile string
	// ClusterID overrides the discovered cluster ID.
	ClusterID string
	// Namespaces to look for workloads in (all when empty).
	Namespaces []string
	// DefaultTrain for workloads without a trainyard.dev/train label.
	DefaultTrain string
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
	HTTP                    *http.Client
	// ServerVersion gives the workload cluster's Kubernetes version, for
	// the kubernetesVersion property (nil: not reported).
	ServerVersion func() (string, error)
	// Direct, when set, takes the check-ins in process instead of HubURL:
	// `direct` mode, a bridge writing straight into the hub's API (see
	// bridge.Server), with the same validation and heartbeat write budget.
	Direct http.Handler
	// HelmReleases also reports the deployed Helm releases, read through
	// APIReader (the API server, not a cache: release Secrets are large).
	HelmReleases bool
	APIReader    client.Reader
}

// The agent reads, and only reads, what it reports.
// +kubebuilder:rbac:groups=apps,resources=deployments;statefulsets;daemonsets,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=namespaces;nodes,verbs=get;list;watch
// +kubebuilder:rbac:groups=about.k8s.io,resources=clusterproperties,verbs=get;list;watch

// Agent reports one workload cluster to the hub.
type Agent struct {
	opts    Options
	reader  client.Reader
	log     logr.Logger
	changed chan struct{}
	id      string
	updates atomic.Int64
}

// New builds an agent that reads the workload cluster through reader (a
// cache).
func New(reader client.Reader, log logr.Logger, o Options) *Agent {
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
	return &Agent{opts: o, reader: reader, log: log, changed: make(chan struct{}, 1)}
}

// Changed tells the agent the workloads changed (an informer handler calls
// it); a check-in follows after the debounce.
func (a *Agent) Changed() {
	select {
	case a.changed <- struct{}{}:
	default:
	}
}

// NeedLeaderElection is false: the agent is the only replica that reports.
func (a *Agent) NeedLeaderElection() bool { return false }

// errRetry is a failure worth retrying, after at least retryAfter.
type errRetry struct {
	err        error
	retryAfter time.Duration
}

func (e errRetry) Error() string { return e.err.Error() }

// errAuth is the hub refusing the token: retrying soon only storms it.
type errAuth struct{ msg string }

func (e errAuth) Error() string { return e.msg }

// CheckIn reports the cluster once.
func (a *Agent) CheckIn(ctx context.Context) error {
	if a.id == "" {
		id, err := ClusterID(ctx, a.reader, a.opts.ClusterID)
		if err != nil {
			return errRetry{err: err}
		}
		a.id = id
		a.log.Info("reporting as cluster", "clusterID", id)
	}
	comps, skipped, err := Discover(ctx, a.reader, a.opts.Namespaces, a.opts.DefaultTrain)
	if err != nil {
		return errRetry{err: err}
	}
	for _, s := range skipped {
		a.log.V(1).Info("workload not reported", "why", s)
	}
	if comps == nil {
		comps = []wire.ComponentVersion{}
	}
	if a.opts.HelmReleases && a.opts.APIReader != nil {
		releases, err := helmrelease.List(ctx, a.opts.APIReader, a.opts.Namespaces)
		if err != nil {
			return errRetry{err: fmt.Errorf("listing Helm releases: %w", err)}
		}
		comps, skipped = withHelmReleases(comps, releases, a.opts.DefaultTrain)
		for _, s := range skipped {
			a.log.V(1).Info("Helm release not reported", "why", s)
		}
	}
	props, err := Properties(ctx, a.reader, a.opts.ServerVersion)
	if err != nil {
		return errRetry{err: err}
	}
	body, _ := json.Marshal(wire.Cluster{ID: a.id, Components: comps, Properties: props})
	resp, msg, err := a.post(ctx, "/v3/clusters", body)
	if err != nil {
		return errRetry{err: fmt.Errorf("checking in at %s: %w", a.opts.HubURL, err)}
	}
	switch {
	case resp.StatusCode == http.StatusOK:
		a.log.Info("checked in", "clusterID", a.id, "components", len(comps))
		a.logUpdates(ctx, comps)
		return nil
	case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden:
		return errAuth{msg: fmt.Sprintf("the hub %s refused the check-in (%d: %s): check the registration token "+
			"(the agent's token Secret) and that this cluster ID (%s) was not registered with another token",
			a.opts.HubURL, resp.StatusCode, strings.TrimSpace(string(msg)), a.id)}
	case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500:
		ra, _ := strconv.Atoi(resp.Header.Get("Retry-After"))
		return errRetry{err: fmt.Errorf("the hub answered %d: %s", resp.StatusCode, strings.TrimSpace(string(msg))),
			retryAfter: time.Duration(ra) * time.Second}
	default:
		// The hub refused what we sent: retrying the same soon will not help.
		return errAuth{msg: fmt.Sprintf("the hub refused the check-in (%d): %s", resp.StatusCode, strings.TrimSpace(string(msg)))}
	}
}

// post sends a JSON body to the hub (or the in-process bridge in direct
// mode) and reads up to max bytes of the answer.
func (a *Agent) post(ctx context.Context, path string, body []byte) (*http.Response, []byte, error) {
	hubURL := a.opts.HubURL
	if a.opts.Direct != nil {
		hubURL = "http://direct"
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimSuffix(hubURL, "/")+path, bytes.NewReader(body))
	if err != nil {
		return nil, nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	token := a.opts.Token
	if a.opts.TokenFile != "" {
		b, err := os.ReadFile(a.opts.TokenFile)
		if err != nil {
			return nil, nil, fmt.Errorf("reading the token file: %w", err)
		}
		token = strings.TrimSpace(string(b))
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	var resp *http.Response
	if a.opts.Direct != nil {
		rec := httptest.NewRecorder()
		a.opts.Direct.ServeHTTP(rec, req)
		resp = rec.Result()
	} else if resp, err = a.opts.HTTP.Do(req); err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	msg, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	return resp, msg, err
}

// maxAnswer bounds what the agent reads of an answer (the multi-get of a
// few hundred components is well below it).
const maxAnswer = 4 << 20

// logUpdates asks the hub's multi-get for the latest release of every
// reported component and logs those with an update: the cluster's operator
// sees in the agent's log what the hub sees. Failures only log: the
// check-in itself succeeded.
func (a *Agent) logUpdates(ctx context.Context, comps []wire.ComponentVersion) {
	if len(comps) == 0 {
		return
	}
	body, _ := json.Marshal(map[string]any{"data": comps})
	resp, msg, err := a.post(ctx, "/v3/versions/latest", body)
	if err != nil || resp.StatusCode != http.StatusOK {
		code := 0
		if resp != nil {
			code = resp.StatusCode
		}
		a.log.V(1).Info("could not ask the hub for updates", "status", code, "error", err)
		return
	}
	var latest struct {
		Data []wire.ComponentVersion `json:"data"`
	}
	if err := json.Unmarshal(msg, &latest); err != nil {
		a.log.V(1).Info("could not read the hub's latest releases", "error", err.Error())
		return
	}
	n := 0
	for i, l := range latest.Data {
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

// Watch triggers a check-in when a workload appears, goes, or changes what
// is reported of it.
func (a *Agent) Watch(ctx context.Context, informers cache.Informers) error {
	onChange := toolscache.ResourceEventHandlerDetailedFuncs{
		// The informers' initial list is what the first check-in reports.
		AddFunc: func(_ any, initial bool) {
			if !initial {
				a.Changed()
			}
		},
		UpdateFunc: func(old, cur any) {
			if Reported(old) != Reported(cur) {
				a.Changed()
			}
		},
		DeleteFunc: func(any) { a.Changed() },
	}
	for _, obj := range []client.Object{&appsv1.Deployment{}, &appsv1.StatefulSet{}, &appsv1.DaemonSet{}} {
		inf, err := informers.GetInformer(ctx, obj)
		if err != nil {
			return err
		}
		if _, err := inf.AddEventHandler(onChange); err != nil {
			return err
		}
	}
	if a.opts.HelmReleases {
		return a.watchHelmReleases(ctx, informers)
	}
	return nil
}

// Scheme has only the kinds the agent reads. Registering all of client-go's
// API groups, as the manager does, touches thousands of types' code and
// descriptors at start, which stay resident (measured by make bench-agent).
func Scheme() *runtime.Scheme {
	s := runtime.NewScheme()
	utilruntime.Must(corev1.AddToScheme(s))
	utilruntime.Must(appsv1.AddToScheme(s))
	return s
}

// CacheOptions cache only labelled workloads, and only what discovery reads
// of them, so that thousands of Deployments stay small; namespaces limits
// the cache of namespaced kinds.
// With helmReleases, Helm's release Secrets are watched as metadata only.
func CacheOptions(namespaces []string, helmReleases bool) cache.Options {
	named, _ := labels.NewRequirement(LabelName, selection.Exists, nil)
	only := cache.ByObject{Label: labels.NewSelector().Add(*named), Transform: Slim}
	o := cache.Options{
		DefaultTransform: cache.TransformStripManagedFields(),
		ByObject: map[client.Object]cache.ByObject{
			&appsv1.Deployment{}: only, &appsv1.StatefulSet{}: only, &appsv1.DaemonSet{}: only,
			&corev1.Node{}: {Transform: slimNode},
		},
	}
	if helmReleases {
		o.ByObject[helmSecret()] = cache.ByObject{Label: labels.SelectorFromSet(labels.Set{helmrelease.LabelOwner: "helm"})}
	}
	if len(namespaces) > 0 {
		// Namespaced kinds only: cluster-scoped ones (Nodes, the
		// kube-system Namespace for the ID) are cached cluster-wide anyway.
		o.DefaultNamespaces = map[string]cache.Config{}
		for _, ns := range namespaces {
			o.DefaultNamespaces[ns] = cache.Config{}
		}
	}
	return o
}
