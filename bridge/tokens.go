package bridge

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/trainyard-dev/trainyard/internal/credential"
)

// Registration tokens: every value of the tenant's registration Secret is
// one. Each has an expiry, and the bridge counts its registrations, all in
// the Secret's annotations (prefix/key), which `kubectl describe secret`
// shows:
//   - expires.trainyard.dev/<key>: RFC 3339, or "never". A token without
//     one is stamped when the bridge first reads it: now plus
//     --registration-token-max-lifetime, or "never" when that is 0. "never"
//     is accepted only when the maximum lifetime is 0 (an explicit choice),
//     and a time only within the maximum lifetime from now: whoever may
//     edit the tenant's Secret cannot outlast the operator's flag.
//   - uses.trainyard.dev/<key>, last-used.trainyard.dev/<key>: how many
//     clusters the token registered, and when it last did.
//
// An expired or removed token registers nothing more; the clusters it
// registered keep their credentials.
const (
	prefixExpires  = "expires.trainyard.dev/"
	prefixUses     = "uses.trainyard.dev/"
	prefixLastUsed = "last-used.trainyard.dev/"
	// AnnotationMaxClusters on a tenant's registration Secret lowers
	// --bridge-max-clusters-per-tenant for that tenant (never raises it:
	// the tenant may edit its Secret).
	AnnotationMaxClusters = "trainyard.dev/max-clusters"
	never                 = "never"
)

// tokenExpiry is when each tenant's first valid registration token to
// expire does: an alert before that day (TrainyardRegistrationTokenExpiring)
// is how an operator learns to hand out a new one. One series per tenant,
// labelled with that token's Secret/key: a tenant's Secret may hold any
// number of keys, and its series must not grow with them.
var tokenExpiry = prometheus.NewGaugeVec(prometheus.GaugeOpts{
	Name: "trainyard_bridge_registration_token_next_expiry_timestamp_seconds",
	Help: "When the tenant's registration token that expires first (of those valid now) expires, as a Unix time, labelled with its Secret/key; " +
		"absent when no valid token expires. An expired token registers no new cluster (in legacy mode it still checks in the clusters bound to it). " +
		"The bridge reads each tenant's registration Secret at least every 5 minutes.",
}, []string{"namespace", "token"})

func init() { ctrlmetrics.Registry.MustRegister(tokenExpiry) }

// tokenRefresh is how often every tenant's registration Secret is read for
// tokenExpiry, registrations or not.
const tokenRefresh = 5 * time.Minute

// setTokenExpiry exports the first expiry among e's valid tokens.
func setTokenExpiry(ns string, e *registrationEntry, now time.Time) {
	var first *tokenInfo
	for _, t := range e.tokens {
		if t.valid(now) == "" && !t.expires.IsZero() && (first == nil || t.expires.Before(first.expires) ||
			t.expires.Equal(first.expires) && t.key < first.key) {
			first = &t
		}
	}
	tokenExpiry.DeletePartialMatch(prometheus.Labels{"namespace": ns})
	if first != nil {
		tokenExpiry.WithLabelValues(ns, first.key).Set(float64(first.expires.Unix()))
	}
}

// refreshTokens reads every tenant's registration Secret (for tokenExpiry).
func (s *Server) refreshTokens(ctx context.Context) {
	if s.opts.CheckInAuth != CheckInToken || s.opts.RegistrationSecret == "" {
		return
	}
	for ns := range s.tenants {
		s.registration.invalidate(ns)
		if _, err := s.registration.entry(ctx, s, ns); err != nil {
			log.FromContext(ctx).Error(err, "reading the registration tokens", "namespace", ns)
		}
	}
}

// invalidate makes the next look-up in ns read the Secret.
func (c *registrationCache) invalidate(ns string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.m, ns)
}

// tokenInfo is what the bridge knows of one registration token.
type tokenInfo struct {
	key     string // Secret/key, what logs and reports name it by
	expires time.Time
	// invalid says why the token registers nothing, when it does not.
	invalid string
}

type registrationEntry struct {
	tokens      map[string]tokenInfo // by token hash
	maxClusters int
	until       time.Time
}

// registrationCache reads each tenant's registration Secret at most every
// registrationTTL, not per check-in.
type registrationCache struct {
	mu sync.Mutex
	m  map[string]*registrationEntry // by namespace
}

// registrationTTL is how long registration tokens are trusted from the last
// read of their Secret (a removed token stops working within it).
const registrationTTL = 10 * time.Second

// lookup finds the registration token whose hash is hash in namespace ns.
// An error means the Secret could not be read (the answer is 503).
func (c *registrationCache) lookup(ctx context.Context, s *Server, ns, hash string) (tokenInfo, bool, error) {
	e, err := c.entry(ctx, s, ns)
	if err != nil {
		return tokenInfo{}, false, err
	}
	t, ok := e.tokens[hash]
	return t, ok, nil
}

func (c *registrationCache) maxClusters(ns string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e := c.m[ns]; e != nil {
		return e.maxClusters
	}
	return 0
}

func (c *registrationCache) entry(ctx context.Context, s *Server, ns string) (*registrationEntry, error) {
	now := s.opts.Clock.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	if e := c.m[ns]; e != nil && now.Before(e.until) {
		return e, nil
	}
	sec := &corev1.Secret{}
	err := s.apiReader.Get(ctx, types.NamespacedName{Namespace: ns, Name: s.opts.RegistrationSecret}, sec)
	switch {
	case apierrors.IsNotFound(err):
		// No Secret, no valid token: every registration is a 401.
	case err != nil:
		return nil, err
	}
	e := &registrationEntry{tokens: map[string]tokenInfo{}, until: now.Add(registrationTTL)}
	e.maxClusters, _ = strconv.Atoi(sec.Annotations[AnnotationMaxClusters])
	stamps := map[string]string{}
	for key, v := range sec.Data {
		t := strings.TrimSpace(string(v))
		if t == "" {
			continue
		}
		info := tokenInfo{key: sec.Name + "/" + key}
		switch exp, ok := sec.Annotations[prefixExpires+key]; {
		case credential.IsCluster(t), credential.IsReissue(t):
			info.invalid = fmt.Sprintf("registration token %s starts with %q or %q, which mark cluster credentials and reissue tokens; choose another",
				info.key, credential.ClusterPrefix, credential.ReissuePrefix)
		case len(validation.IsQualifiedName(prefixExpires+key)) > 0:
			info.invalid = fmt.Sprintf("registration token %s: its key cannot name an annotation (%s...); rename it", info.key, prefixExpires)
		case !ok:
			// First seen: stamp the expiry.
			exp = never
			if s.opts.MaxTokenLifetime > 0 {
				info.expires = now.Add(s.opts.MaxTokenLifetime).UTC().Truncate(time.Second)
				exp = info.expires.Format(time.RFC3339)
			}
			stamps[prefixExpires+key] = exp
		case exp == never:
			if s.opts.MaxTokenLifetime > 0 {
				info.invalid = fmt.Sprintf("registration token %s never expires, but the maximum lifetime is %s (--registration-token-max-lifetime=0 allows that)",
					info.key, s.opts.MaxTokenLifetime)
			}
		default:
			if info.expires, err = time.Parse(time.RFC3339, exp); err != nil {
				info.invalid = fmt.Sprintf("registration token %s: %s%s is not an RFC 3339 time or %q", info.key, prefixExpires, key, never)
			} else if limit := now.Add(s.opts.MaxTokenLifetime); s.opts.MaxTokenLifetime > 0 && info.expires.After(limit) {
				info.invalid = fmt.Sprintf("registration token %s expires at %s, beyond the maximum lifetime of %s (--registration-token-max-lifetime); set %s%s to %s or earlier",
					info.key, exp, s.opts.MaxTokenLifetime, prefixExpires, key, limit.UTC().Truncate(time.Second).Format(time.RFC3339))
			}
		}
		e.tokens[tokenHash(t)] = info
	}
	if len(stamps) > 0 {
		if err := patchAnnotations(ctx, s.api, sec, stamps); err != nil {
			// The token works meanwhile; the stamp is tried at the next read.
			log.FromContext(ctx).Error(err, "stamping the expiry of registration tokens", "secret", ns+"/"+sec.Name)
		}
	}
	if c.m == nil {
		c.m = map[string]*registrationEntry{}
	}
	c.m[ns] = e
	setTokenExpiry(ns, e, now)
	return e, nil
}

// valid says why a token registers nothing at now, or "".
func (t tokenInfo) valid(now time.Time) string {
	switch {
	case t.invalid != "":
		return t.invalid
	case !t.expires.IsZero() && !now.Before(t.expires):
		return fmt.Sprintf("registration token %s expired at %s; clusters it registered are unaffected", t.key, t.expires.Format(time.RFC3339))
	}
	return ""
}

// usage counts the registrations of each token in memory; flushUsage
// writes them to the tokens' Secrets every usageFlush (one patch per
// Secret, not one per registration: a fleet onboarding thousands of
// clusters, through several replicas, would otherwise contend on the one
// Secret).
type usage struct {
	mu sync.Mutex
	m  map[usageKey]*usageCount
}

type usageKey struct{ ns, secret, key string }

type usageCount struct {
	n    int
	last time.Time
}

// usageFlush is how often counted uses are written.
const usageFlush = 2 * time.Second

// recordUse counts a registration by the token key ("Secret/key") of ns.
func (s *Server) recordUse(ns, key string, at time.Time) {
	name, k, _ := strings.Cut(key, "/")
	s.usage.add(usageKey{ns, name, k}, 1, at)
}

// add counts n uses of k, the last at last.
func (u *usage) add(k usageKey, n int, last time.Time) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.m == nil {
		u.m = map[usageKey]*usageCount{}
	}
	c := u.m[k]
	if c == nil {
		c = &usageCount{}
		u.m[k] = c
	}
	c.n += n
	if last.After(c.last) {
		c.last = last
	}
}

// runUsage flushes counted uses every usageFlush until ctx ends, then once
// more.
func (s *Server) runUsage(ctx context.Context) {
	t := s.opts.Clock.NewTicker(usageFlush)
	defer t.Stop()
	refresh := s.opts.Clock.NewTicker(tokenRefresh)
	defer refresh.Stop()
	s.refreshTokens(ctx)
	for {
		select {
		case <-ctx.Done():
			flush, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			s.flushUsage(flush)
			return
		case <-t.C():
			s.flushUsage(ctx)
		case <-refresh.C():
			s.refreshTokens(ctx)
		}
	}
}

// flushUsage adds the counted uses to each Secret's annotations, with an
// optimistic lock (other replicas count too); what fails is kept for the
// next flush.
func (s *Server) flushUsage(ctx context.Context) {
	s.usage.mu.Lock()
	pending := s.usage.m
	s.usage.m = nil
	s.usage.mu.Unlock()
	bySecret := map[types.NamespacedName]map[string]*usageCount{}
	for k, u := range pending {
		sk := types.NamespacedName{Namespace: k.ns, Name: k.secret}
		if bySecret[sk] == nil {
			bySecret[sk] = map[string]*usageCount{}
		}
		bySecret[sk][k.key] = u
	}
	for sk, counts := range bySecret {
		err := s.patchUsage(ctx, sk, counts)
		if err == nil {
			continue
		}
		log.FromContext(ctx).Error(err, "counting registration tokens' uses; kept for the next flush", "secret", sk.String())
		for k, u := range counts {
			s.usage.add(usageKey{sk.Namespace, sk.Name, k}, u.n, u.last)
		}
	}
}

func (s *Server) patchUsage(ctx context.Context, key types.NamespacedName, counts map[string]*usageCount) error {
	var err error
	for attempt := 0; attempt < 5; attempt++ {
		sec := &corev1.Secret{}
		if err = s.apiReader.Get(ctx, key, sec); err != nil {
			if apierrors.IsNotFound(err) {
				return nil // the token's Secret is gone: nothing to count on
			}
			return err
		}
		set := map[string]string{}
		for k, u := range counts {
			n, _ := strconv.Atoi(sec.Annotations[prefixUses+k])
			set[prefixUses+k] = strconv.Itoa(n + u.n)
			set[prefixLastUsed+k] = u.last.UTC().Format(time.RFC3339)
		}
		if err = patchAnnotations(ctx, s.api, sec, set); err == nil || !apierrors.IsConflict(err) {
			return err
		}
	}
	return err
}

// patchAnnotations sets annotations on sec with a merge patch that fails on
// a conflict (the Secret's resourceVersion).
func patchAnnotations(ctx context.Context, c client.Client, sec *corev1.Secret, annotations map[string]string) error {
	body, err := json.Marshal(map[string]any{"metadata": map[string]any{
		"resourceVersion": sec.ResourceVersion, "annotations": annotations}})
	if err != nil {
		return err
	}
	return c.Patch(ctx, sec.DeepCopy(), client.RawPatch(types.MergePatchType, body))
}
