// Package bridge serves the Deis workflow-manager "versions" API on top of
// trainyard's custom resources: agents check in and release pipelines
// publish over plain JSON/HTTP, and the results are ClusterReports and
// ComponentReleases that kubectl shows. Reads come from the manager's cache.
package bridge

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"runtime"
	"time"

	"github.com/go-logr/logr"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	trainyardv1 "github.com/trainyard-dev/trainyard/api/v1alpha1"
	"github.com/trainyard-dev/trainyard/internal/checkin"
	"github.com/trainyard-dev/trainyard/internal/review"
)

// What the bridge needs of the API (make manifests turns these into the
// manager's RBAC): it creates and patches the reports and releases it is
// sent, records check-ins in the reports' status, reads the registration
// and doctor-credential Secrets and keeps the doctor dumps (list and delete
// for their caps) in its namespace.
// +kubebuilder:rbac:groups=trainyard.dev,resources=clusterreports;componentreleases;releasetrains,verbs=get;list;watch
// +kubebuilder:rbac:groups=trainyard.dev,resources=clusterreports;componentreleases,verbs=create;patch
// +kubebuilder:rbac:groups=trainyard.dev,resources=clusterreports/status,verbs=patch
// +kubebuilder:rbac:groups="",namespace=system,resources=secrets,verbs=get;list;create;update;patch;delete

// Options configure the bridge.
type Options struct {
	// Audit receives a line for every write (default: the "bridge.audit"
	// logger). Check-ins that change nothing are audited only with
	// AuditHeartbeats; reads sent with POST (the multi-get) never are.
	Audit           logr.Logger
	AuditHeartbeats bool
	// RefusalDelay holds a 429 or 503 this long (at most its Retry-After)
	// before it is sent, having given back the request's slots and seats: a
	// client that keeps sending after its budget is spent waits for its
	// refusals, so a flood from a few connections costs the bridge a few
	// refusals a second instead of a thousand. At most maxHeldRefusals are
	// held at once; beyond, refusals go out at once. 0: none held.
	RefusalDelay time.Duration
	// Addr is the listen address (default 127.0.0.1:8080); Listener, when
	// set, is used instead (tests listen on a free port).
	Addr     string
	Listener net.Listener
	// Namespace holds the bridge's ClusterReports, ComponentReleases and
	// doctor Secrets.
	Namespace string
	// Heartbeat is the persist interval of check-ins that change nothing
	// (default 1h): one is written when the stored lastSeen is this old,
	// else held in memory and served from there (internal/checkin).
	Heartbeat time.Duration
	// DoctorAuthSecret names the Secret (keys "username" and "password")
	// whose credentials may read doctor reports.
	DoctorAuthSecret string
	// MaxBody bounds request bodies (default 1 MiB); MaxDoctorBody the
	// doctor dumps (default 8 MiB).
	MaxBody, MaxDoctorBody int64
	// RateLimit and RateBurst (below) are each client's requests per second
	// and burst (default 20 and 40).
	// CheckInAuth is "token" (registration tokens, the default) or "open".
	CheckInAuth string
	// RegistrationSecret holds the registration tokens (every value is one).
	RegistrationSecret string
	// ReadAuth requires a token for reads too.
	ReadAuth bool

	// MaxInFlightPerClient bounds the concurrent requests of one source
	// address (default 32), so that slow clients cannot take every slot.
	MaxInFlightPerClient int
	// FailedAuthRate and FailedAuthBurst are the failed authentications a
	// source address may make per second and in a burst (default 1 and 20);
	// beyond, 429 without asking the API server.
	FailedAuthRate  float64
	FailedAuthBurst int
	// TrustedProxies are the addresses of proxies (an Ingress) whose
	// X-Forwarded-For names the client; empty: none is trusted.
	TrustedProxies []netip.Prefix
	// MaxDoctorReports bounds the doctor dumps kept per cluster (default 5;
	// a newer one replaces the oldest) and MaxDoctorTotal all of them
	// (default 1000; beyond, a new one is refused with 429).
	MaxDoctorReports, MaxDoctorTotal int
	// MaxDoctorBytes bounds the compressed bytes of a tenant's dumps
	// together (default 64 MiB): the counts alone let a tenant keep 1,000
	// dumps of 768 KiB, about 750 MiB of Secrets in etcd.
	MaxDoctorBytes int64
	// DoctorRate and DoctorBurst are the doctor uploads one sender (a
	// cluster, else a token or an address) may make per second and in a
	// burst (default one a minute, and 3): compressing a dump is the most
	// CPU a client can ask of the bridge, and an operator runs doctor by
	// hand.
	DoctorRate  float64
	DoctorBurst int
	// LostAnswerWindow is how long after a registration the same token may
	// register the cluster again while its credential was never presented
	// (default 15m): the answer carrying it may have been lost.
	LostAnswerWindow time.Duration

	// Tenants are the namespaces besides Namespace that the bridge serves
	// under /tenants/{namespace}/..., each with its own registration Secret,
	// clusters, releases and budget. Namespace is the default tenant (the
	// paths without a prefix).
	Tenants []string
	// LegacyTokenBinding keeps the binding of a cluster to the registration
	// token of its first check-in, for agents that cannot store a
	// credential (Deis agents): that token keeps checking the cluster in.
	LegacyTokenBinding bool
	// MaxTokenLifetime stamps a registration token first seen without an
	// expiry (default 720h); 0 means tokens may never expire.
	MaxTokenLifetime time.Duration
	// CredentialOverlap keeps a rotated cluster credential valid (default
	// 1h), so an agent rolls to the new one without a failed check-in.
	CredentialOverlap time.Duration
	// MaxClustersPerTenant bounds the clusters that can register in one
	// tenant (default 50000; the annotation trainyard.dev/max-clusters on
	// the tenant's registration Secret overrides it).
	MaxClustersPerTenant int
	// TenantRateLimit and TenantRateBurst are each tenant's requests per
	// second and burst (default 500 and 1000).
	TenantRateLimit float64
	TenantRateBurst int

	RateLimit float64
	RateBurst int
	// MaxInFlight bounds the requests being served (shared out between the
	// priority levels, fairness.go) and, apart, those being authenticated
	// (default 512).
	MaxInFlight int
	// MaxBodyBytes bounds the body bytes that the requests being served may
	// hold together (default 64 MiB), shared out between the priority
	// levels like MaxInFlight: beyond a level's share, its requests wait,
	// then 429.
	MaxBodyBytes int64
	Clock        clock.WithTicker
}

// MaxTokenLifetimeNever is Options.MaxTokenLifetime for registration tokens
// that may never expire (an explicit choice: 0 is the default).
const MaxTokenLifetimeNever = time.Duration(-1)

// Server is the bridge: an http.Handler and a manager Runnable.
type Server struct {
	opts Options
	// cache serves reads; api writes and reads what must be current.
	cache client.Reader
	api   client.Client
	// apiReader reads Secrets without caching them all.
	apiReader client.Reader
	handler   http.Handler

	store         *checkin.Store
	recent        issued
	usage         usage
	clusters      clusterCounts
	tenants       map[string]bool
	tenantLimiter *limiter
	encoded       encodedReleases
	limiter       *limiter
	failures      *limiter
	doctorRate    *limiter // doctor uploads per sender
	drains        *limiter // KiB of refused anonymous bodies read, per source
	changes       changes
	// names are the reports' names in order (nil until Watch).
	names *reportNames
	// latestAnswers memoises the multi-get's answer per train (while watching).
	latestAnswers latestAnswers
	reviewer      *review.Reviewer
	draining      chan struct{} // closed when the server stops
	registration  registrationCache
	inFlight      *inFlight
	levels        *levels
	// compressing holds a slot per doctor dump being compressed.
	compressing chan struct{}
	// heldRefusals holds a slot per refusal being held (RefusalDelay).
	heldRefusals chan struct{}
	audit        logr.Logger
	routeTable   []route
}

// New builds the bridge. cache is the manager's cached client (with the
// controllers' field indexes), api a client that writes to the API server,
// apiReader an uncached reader.
func New(cache client.Reader, api client.Client, apiReader client.Reader, o Options) *Server {
	orDefault(&o.Addr, "127.0.0.1:8080")
	orDefault(&o.Heartbeat, time.Hour)
	orDefault(&o.MaxBody, 1<<20)
	orDefault(&o.MaxDoctorBody, 8<<20)
	if o.Clock == nil {
		o.Clock = clock.RealClock{}
	}
	orDefault(&o.CheckInAuth, CheckInToken)
	orDefault(&o.RegistrationSecret, "trainyard-registration")
	orDefault(&o.RateLimit, 20)
	orDefault(&o.RateBurst, 40)
	orDefault(&o.MaxInFlight, 512)
	orDefault(&o.MaxBodyBytes, 64<<20)
	orDefault(&o.MaxInFlightPerClient, min(32, o.MaxInFlight))
	orDefault(&o.FailedAuthRate, 1)
	orDefault(&o.FailedAuthBurst, 20)
	orDefault(&o.MaxDoctorReports, 5)
	orDefault(&o.MaxDoctorTotal, 1000)
	orDefault(&o.MaxDoctorBytes, 64<<20)
	orDefault(&o.DoctorRate, 1.0/60)
	orDefault(&o.DoctorBurst, 3)
	orDefault(&o.LostAnswerWindow, 15*time.Minute)
	switch {
	case o.MaxTokenLifetime == MaxTokenLifetimeNever:
		o.MaxTokenLifetime = 0
	case o.MaxTokenLifetime <= 0:
		o.MaxTokenLifetime = 720 * time.Hour
	}
	orDefault(&o.CredentialOverlap, time.Hour)
	orDefault(&o.MaxClustersPerTenant, 50000)
	orDefault(&o.TenantRateLimit, 500)
	orDefault(&o.TenantRateBurst, 1000)
	if o.Audit.GetSink() == nil {
		o.Audit = log.Log.WithName("bridge").WithName("audit")
	}
	s := &Server{opts: o, cache: cache, api: api, apiReader: apiReader, draining: make(chan struct{}), heldRefusals: make(chan struct{}, maxHeldRefusals),
		limiter:       newLimiter(o.RateLimit, o.RateBurst, o.Clock.Now),
		failures:      newLimiter(o.FailedAuthRate, o.FailedAuthBurst, o.Clock.Now),
		doctorRate:    newLimiter(o.DoctorRate, o.DoctorBurst, o.Clock.Now),
		drains:        newLimiter(drainRate, drainBurst, o.Clock.Now),
		inFlight:      &inFlight{max: o.MaxInFlight, perClient: o.MaxInFlightPerClient, per: map[string]int{}},
		levels:        newLevels(o.MaxInFlight, o.MaxBodyBytes),
		compressing:   make(chan struct{}, max(1, runtime.GOMAXPROCS(0)/2)),
		audit:         o.Audit,
		reviewer:      &review.Reviewer{Client: api, Now: o.Clock.Now},
		tenantLimiter: newLimiter(o.TenantRateLimit, o.TenantRateBurst, o.Clock.Now),
		tenants:       map[string]bool{o.Namespace: true},
	}
	for _, t := range o.Tenants {
		s.tenants[t] = true
	}
	s.store = checkin.New(reports{cache: cache, api: api, apiReader: apiReader},
		checkin.Options{Heartbeat: o.Heartbeat, Clock: o.Clock, Log: log.Log.WithName("bridge")})
	s.handler = s.routes()
	return s
}

// orDefault sets an option that is unset (zero, empty or negative) to d.
func orDefault[T cmp.Ordered](v *T, d T) {
	var zero T
	if *v <= zero {
		*v = d
	}
}

// Handler is the bridge's HTTP handler.
func (s *Server) Handler() http.Handler { return s.handler }

// NeedLeaderElection is false: every replica serves the bridge.
func (s *Server) NeedLeaderElection() bool { return false }

// Start serves until ctx ends, then drains requests and flushes the
// heartbeats held in memory.
func (s *Server) Start(ctx context.Context) error {
	l := s.opts.Listener
	if l == nil {
		var err error
		if l, err = net.Listen("tcp", s.opts.Addr); err != nil {
			return fmt.Errorf("bridge: %w", err)
		}
	}
	requests, cancelRequests := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelRequests()
	srv := &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       maxBodyTime,
		WriteTimeout:      maxWait + 30*time.Second, // a long-poll may wait maxWait
		IdleTimeout:       120 * time.Second,
		// Bearer tokens are the largest headers a client needs (a few KiB);
		// Go's default would let every request carry 1 MiB.
		MaxHeaderBytes: MaxHeaderBytes,
		// Requests keep their context while Shutdown drains them; the
		// manager's context ends first.
		BaseContext: func(net.Listener) context.Context { return requests },
	}
	log.FromContext(ctx).Info("bridge listening", "addr", l.Addr().String())
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(l) }()
	flushDone := make(chan struct{})
	go func() { s.store.Run(ctx); close(flushDone) }()
	usageDone := make(chan struct{})
	go func() { s.runUsage(ctx); close(usageDone) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	close(s.draining) // parked long-polls answer now
	shutdown, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	err := srv.Shutdown(shutdown)
	<-flushDone
	<-usageDone
	flush, cancelFlush := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancelFlush()
	s.store.Flush(flush)
	return err
}

// FlushHeartbeats writes every check-in held in memory (Start does this
// when it stops).
func (s *Server) FlushHeartbeats(ctx context.Context) { s.store.Flush(ctx) }

// maxListItems bounds each list and map of a check-in or release body: the
// longest list a stored object holds (a cluster's components).
const maxListItems = trainyardv1.MaxClusterComponents

// MaxHeaderBytes bounds a request's line and headers.
const MaxHeaderBytes = 32 << 10

// routes is the route table: every route's method, path and who may call
// it (see access). The OpenAPI document is checked against it.
func (s *Server) routes() http.Handler {
	rt := &router{guard: s.guard, tenant: func(t string) bool { return s.tenants[t] }}
	ok := func(w http.ResponseWriter, _ *http.Request, _ params) { w.WriteHeader(http.StatusOK) }
	// What each route's requests may carry: the body's bytes, and the
	// members of any one JSON array or object in it.
	var (
		// A decoded check-in or release can hold about 4 times its text
		// (maps of short strings); a multi-get is decoded into names only,
		// and its answer is charged as it grows.
		checkIn = limits{body: s.opts.MaxBody, items: maxListItems, factor: 4}
		multi   = limits{body: s.opts.MaxBody, items: MaxMultiGetItems, factor: 2, answer: answerStep,
			why: fmt.Sprintf("a cluster reports at most %d components", trainyardv1.MaxClusterComponents)}
		release = limits{body: s.opts.MaxBody, items: maxListItems, factor: 4}
		// A dump is compressed as it streams, never decoded: its size is
		// bounded by what it compresses to, not by a count of items.
		doctor = limits{body: s.opts.MaxDoctorBody, items: unbounded, held: doctorHeld}
	)
	rt.add(http.MethodGet, "/ping", accessPublic, none, ok)
	rt.add(http.MethodGet, "/healthz", accessPublic, none, ok)
	rt.add(http.MethodGet, "/readyz", accessPublic, none, ok)
	rt.add(http.MethodGet, "/openapi.json", accessPublic, none, s.openAPI)
	rt.add(http.MethodPost, "/v3/clusters", accessAgent, checkIn, s.checkIn)
	rt.add(http.MethodGet, "/v3/clusters/count", accessRead, none, s.clusterCount)
	rt.add(http.MethodGet, "/v3/clusters/age", accessRead, none, s.clustersByAge)
	rt.add(http.MethodGet, "/v3/clusters/checkins", accessRead, none, s.checkinStats)
	rt.add(http.MethodGet, "/v3/clusters/persistent", accessRead, none, s.persistentClusters)
	rt.add(http.MethodGet, "/v3/clusters/{id}", accessRead, none, s.getCluster)
	rt.add(http.MethodPost, "/v2/clusters/{id}", accessAgent, checkIn, s.checkIn)
	rt.add(http.MethodPost, "/v3/versions/latest", accessRead, multi, s.latestV3)
	rt.add(http.MethodPost, "/v2/versions/latest", accessRead, multi, s.latestV2)
	rt.add(http.MethodGet, "/v3/versions/{train}/{component}", accessRead, none, s.listReleases)
	rt.add(http.MethodGet, "/v3/versions/{train}/{component}/{release}", accessRead, none, s.getRelease)
	rt.add(http.MethodPost, "/v3/versions/{train}/{component}/{release}", accessPublish, release, s.publish)
	rt.add(http.MethodPost, "/v3/doctor/{uuid}", accessAgent, doctor, s.postDoctor)
	rt.add(http.MethodGet, "/v3/doctor/{uuid}", accessDoctorRead, none, s.getDoctor)
	s.routeTable = rt.routes
	return rt
}

// writeAPIError maps a Kubernetes API error to the bridge's answer: the
// API's own status for what the client can fix, 503 with Retry-After when
// the API server cannot take the write (never 200 for something not stored).
func writeAPIError(w http.ResponseWriter, what string, err error) {
	var status apierrors.APIStatus
	switch {
	case apierrors.IsInvalid(err), apierrors.IsBadRequest(err):
		writeError(w, http.StatusUnprocessableEntity, fmt.Sprintf("%s: %s", what, messageOf(err)))
	case apierrors.IsConflict(err), apierrors.IsAlreadyExists(err):
		writeError(w, http.StatusConflict, fmt.Sprintf("%s: %s", what, messageOf(err)))
	case apierrors.IsForbidden(err):
		writeError(w, http.StatusForbidden, fmt.Sprintf("%s: %s", what, messageOf(err)))
	case errors.As(err, &status) && status.Status().Code == http.StatusTooManyRequests:
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusTooManyRequests, fmt.Sprintf("%s: the Kubernetes API is busy; retry", what))
	default:
		w.Header().Set("Retry-After", "5")
		writeError(w, http.StatusServiceUnavailable, fmt.Sprintf("%s: the Kubernetes API is unavailable (%v); nothing was stored, retry", what, err))
	}
}

func messageOf(err error) string {
	var status apierrors.APIStatus
	if errors.As(err, &status) {
		return status.Status().Message
	}
	return err.Error()
}
