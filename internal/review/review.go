// Package review asks the Kubernetes API who a bearer token belongs to
// (TokenReview) and whether that user may do something (SubjectAccessReview),
// remembering answers briefly. The bridge uses it for publishing and reads,
// and the manager for its HTTPS metrics endpoint — in place of
// controller-runtime's metrics filter, whose k8s.io/apiserver dependencies
// (CEL, gRPC, ...) more than doubled the binary, and with it the agent's
// resident memory (docs/performance.md).
package review

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"golang.org/x/time/rate"
	authnv1 "k8s.io/api/authentication/v1"
	authzv1 "k8s.io/api/authorization/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
)

// The reviews themselves (the bridge's publishers and readers, the metrics
// endpoint's scrapers):
// +kubebuilder:rbac:groups=authentication.k8s.io,resources=tokenreviews,verbs=create
// +kubebuilder:rbac:groups=authorization.k8s.io,resources=subjectaccessreviews,verbs=create

// TTL is how long an allowing answer is trusted: a revoked token or binding
// stops working within it. A refusal is trusted for DenyTTL only, so that a
// binding just granted takes effect soon.
const (
	TTL     = 10 * time.Second
	DenyTTL = 2 * time.Second
)

// maxCached bounds the cache; it is emptied when full (tokens are few).
const maxCached = 4096

// Reviewer reviews tokens through Client, which must be allowed to create
// tokenreviews and subjectaccessreviews.
type Reviewer struct {
	Client client.Client
	// Now is the clock (default time.Now).
	Now func() time.Time

	mu sync.Mutex
	m  map[string]cached
}

// Answer says whether the token is valid and whether its user may.
type Answer struct {
	Authenticated, Allowed bool
}

type cached struct {
	Answer
	until time.Time
}

// Attributes are what is asked: a resource, or a non-resource path.
type Attributes struct {
	Resource    *authzv1.ResourceAttributes
	NonResource *authzv1.NonResourceAttributes
}

func (a Attributes) key() string {
	if r := a.Resource; r != nil {
		return fmt.Sprintf("r/%s/%s/%s/%s/%s", r.Namespace, r.Verb, r.Group, r.Resource, r.Name)
	}
	if n := a.NonResource; n != nil {
		return fmt.Sprintf("n/%s/%s", n.Verb, n.Path)
	}
	return ""
}

// hash is what the cache keeps of a token: never the token.
func hash(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// Bearer is the request's bearer token, or "".
func Bearer(r *http.Request) string {
	h := r.Header.Get("Authorization")
	if len(h) > 7 && strings.EqualFold(h[:7], "bearer ") {
		return strings.TrimSpace(h[7:])
	}
	return ""
}

// Review answers whether token is valid and whether its user may do what
// attrs say.
func (v *Reviewer) Review(ctx context.Context, token string, attrs Attributes) (Answer, error) {
	now := time.Now
	if v.Now != nil {
		now = v.Now
	}
	key := hash(token) + "/" + attrs.key()
	t := now()
	v.mu.Lock()
	if a, ok := v.m[key]; ok && t.Before(a.until) {
		v.mu.Unlock()
		return a.Answer, nil
	}
	v.mu.Unlock()

	tr := &authnv1.TokenReview{Spec: authnv1.TokenReviewSpec{Token: token}}
	if err := v.Client.Create(ctx, tr); err != nil {
		return Answer{}, err
	}
	ans := Answer{Authenticated: tr.Status.Authenticated}
	if ans.Authenticated {
		extra := map[string]authzv1.ExtraValue{}
		for k, e := range tr.Status.User.Extra {
			extra[k] = authzv1.ExtraValue(e)
		}
		sar := &authzv1.SubjectAccessReview{Spec: authzv1.SubjectAccessReviewSpec{
			User: tr.Status.User.Username, UID: tr.Status.User.UID, Groups: tr.Status.User.Groups, Extra: extra,
			ResourceAttributes: attrs.Resource, NonResourceAttributes: attrs.NonResource,
		}}
		if err := v.Client.Create(ctx, sar); err != nil {
			return Answer{Authenticated: true}, err
		}
		ans.Allowed = sar.Status.Allowed
	}
	v.mu.Lock()
	if v.m == nil || len(v.m) >= maxCached {
		v.m = map[string]cached{}
	}
	ttl := TTL
	if !ans.Allowed {
		ttl = DenyTTL
	}
	v.m[key] = cached{Answer: ans, until: t.Add(ttl)}
	v.mu.Unlock()
	return ans, nil
}

// MetricsFilter is a metricsserver.Options.FilterProvider: only a bearer
// token whose user RBAC lets get the path (for example /metrics, granted by
// the chart's metrics-reader ClusterRole) gets through.
func MetricsFilter(cfg *rest.Config, httpClient *http.Client) (metricsserver.Filter, error) {
	scheme := runtime.NewScheme()
	if err := authnv1.AddToScheme(scheme); err != nil {
		return nil, err
	}
	if err := authzv1.AddToScheme(scheme); err != nil {
		return nil, err
	}
	c, err := client.New(cfg, client.Options{Scheme: scheme, HTTPClient: httpClient})
	if err != nil {
		return nil, err
	}
	return Filter(&Reviewer{Client: c}), nil
}

// Filter wraps a handler with the token review of MetricsFilter. A source
// address (an IPv6 client's /64) that keeps presenting tokens that are
// invalid or not allowed is refused with 429 once its failure budget is
// spent (FailureBurst, then FailureRate a second), before another
// TokenReview: made-up tokens must not become API server load.
func Filter(v *Reviewer) metricsserver.Filter {
	failures := newBudget()
	return func(log logr.Logger, next http.Handler) (http.Handler, error) {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			source := sourceOf(r)
			if wait := failures.exhausted(source); wait > 0 {
				w.Header().Set("Retry-After", strconv.Itoa(int(wait.Seconds())+1))
				http.Error(w, "too many refused tokens from this address; retry later", http.StatusTooManyRequests)
				return
			}
			token := Bearer(r)
			if token == "" {
				w.Header().Set("WWW-Authenticate", `Bearer realm="trainyard-metrics"`)
				http.Error(w, "a bearer token is required", http.StatusUnauthorized)
				return
			}
			attrs := Attributes{NonResource: &authzv1.NonResourceAttributes{Path: r.URL.Path, Verb: strings.ToLower(r.Method)}}
			ans, err := v.Review(r.Context(), token, attrs)
			switch {
			case err != nil:
				log.Error(err, "reviewing a metrics client's token")
				w.Header().Set("Retry-After", "5")
				http.Error(w, "the token could not be reviewed: "+err.Error(), http.StatusServiceUnavailable)
			case !ans.Authenticated:
				failures.charge(source)
				http.Error(w, "the token is not valid", http.StatusUnauthorized)
			case !ans.Allowed:
				failures.charge(source)
				http.Error(w, fmt.Sprintf("the token's user may not %s %s", attrs.NonResource.Verb, r.URL.Path), http.StatusForbidden)
			default:
				next.ServeHTTP(w, r)
			}
		}), nil
	}
}

// FailureRate and FailureBurst are the refused tokens a source address may
// present to the metrics endpoint, per second and in a burst: as the
// bridge's failure budget.
const (
	FailureRate  = 1
	FailureBurst = 20
)

// maxSources bounds the failure budget's map (keyed by client input); when
// full it is emptied, which only gives its addresses a fresh burst.
const maxSources = 4096

type budget struct {
	mu sync.Mutex
	m  map[string]*rate.Limiter
}

func newBudget() *budget { return &budget{m: map[string]*rate.Limiter{}} }

// exhausted is how long source must wait, or 0.
func (b *budget) exhausted(source string) time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	l := b.m[source]
	if l == nil {
		return 0
	}
	now := time.Now()
	if l.TokensAt(now) >= 1 {
		return 0
	}
	r := l.ReserveN(now, 1)
	defer r.CancelAt(now)
	return max(r.DelayFrom(now), time.Millisecond)
}

func (b *budget) charge(source string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	l := b.m[source]
	if l == nil {
		if len(b.m) >= maxSources {
			clear(b.m)
		}
		l = rate.NewLimiter(FailureRate, FailureBurst)
		b.m[source] = l
	}
	l.Allow()
}

// sourceOf is the key of the request's peer's budgets.
func sourceOf(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	return SourceKey(host)
}

// SourceKey is the key of an address's budgets: the address itself, but
// an IPv6 client's /64. One host is routinely given a whole /64 (SLAAC,
// privacy addresses, a cloud VM's prefix) and can send from any of its
// 2^64 addresses: keyed per /128, each would get fresh budgets and fill the
// bounded maps with entries of one client.
func SourceKey(addr string) string {
	a, err := netip.ParseAddr(addr)
	if err != nil || !a.Unmap().Is6() {
		return addr
	}
	p, _ := a.WithZone("").Prefix(64)
	return p.String()
}
