package bridge

import (
	"context"
	"crypto/subtle"
	"fmt"
	"net/http"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	trainyardv1 "github.com/trainyard-dev/trainyard/api/v1alpha1"
	"github.com/trainyard-dev/trainyard/internal/checkin"
	credpkg "github.com/trainyard-dev/trainyard/internal/credential"
	"github.com/trainyard-dev/trainyard/internal/index"
)

// Cluster identity (docs/bridge.md): a registration token registers a
// cluster once, and the answer carries the cluster's own credential, which
// every later check-in and doctor upload of that cluster presents. The hub
// keeps only the credential's hash, on the ClusterReport, where revoking or
// rotating it is one `kubectl annotate`. A registration token can then be
// rotated or deleted without touching a registered cluster.

// HeaderCredential carries a newly issued cluster credential in the answer
// to the check-in that registered the cluster (or rotated its credential).
// Deis agents ignore it; trainyard's agent stores it.
const HeaderCredential = "X-Trainyard-Credential"

func newCredential() (credential, hash string) { return credpkg.New(credpkg.ClusterPrefix) }

func credentialHash(credential string) string { return credpkg.Hash(credential) }

func isCredential(tok string) bool { return credpkg.IsCluster(tok) }

// credentialAccepted says whether the report accepts the credential whose
// hash is hash at now, and if not, why.
func credentialAccepted(r *trainyardv1.ClusterReport, hash string, now time.Time) (bool, string) {
	a := r.Annotations
	switch {
	case a[trainyardv1.AnnotationCredentialRevoked] != "":
		return false, "the credential of cluster " + r.Spec.ClusterID + " is revoked; it registers again only with a reissue token " +
			"(`kubectl trainyard cluster reissue " + r.Spec.ClusterID + "`), presented as the registration token"
	case hash != "" && a[trainyardv1.AnnotationCredentialHash] == hash:
		return true, ""
	case hash != "" && a[trainyardv1.AnnotationPreviousCredentialHash] == hash:
		if until, err := time.Parse(time.RFC3339, a[trainyardv1.AnnotationPreviousCredentialExpires]); err == nil && now.Before(until) {
			return true, ""
		}
		return false, "this credential of cluster " + r.Spec.ClusterID + " was rotated out; use the new one"
	}
	return false, "unknown cluster credential"
}

// registeredByReissue is trainyard.dev/registered-with of a cluster that
// registered with a reissue token.
const registeredByReissue = "reissue-token"

// reissueSkew is how far beyond MaxReissueLifetime a reissue token's expiry
// may lie: the plugin's clock is not the bridge's.
const reissueSkew = 5 * time.Minute

// reissueAccepted says why the reissue token whose hash is hash does not
// register the cluster of report r at now, or "".
func reissueAccepted(r *trainyardv1.ClusterReport, hash string, now time.Time) string {
	a, id := r.Annotations, r.Spec.ClusterID
	want := a[trainyardv1.AnnotationReissueHash]
	if want == "" {
		return "cluster " + id + " has no open reissue token (it was used, or none was made): `kubectl trainyard cluster reissue " + id + "` makes one"
	}
	if subtle.ConstantTimeCompare([]byte(want), []byte(hash)) != 1 {
		return "this reissue token is not cluster " + id + "'s (a token registers only the cluster it was made for, and only the newest one made)"
	}
	until, err := time.Parse(time.RFC3339, a[trainyardv1.AnnotationReissueExpires])
	switch {
	case err != nil:
		return "the reissue token of cluster " + id + " has no valid " + trainyardv1.AnnotationReissueExpires + " (RFC 3339): make a new one"
	case !now.Before(until):
		return "the reissue token of cluster " + id + " expired at " + until.UTC().Format(time.RFC3339) + ": make a new one"
	case until.Sub(now) > trainyardv1.MaxReissueLifetime+reissueSkew:
		return "the reissue token of cluster " + id + " expires at " + until.UTC().Format(time.RFC3339) +
			", beyond the longest lifetime of one (" + trainyardv1.MaxReissueLifetime.String() + "): make a new one"
	}
	return ""
}

// lostAnswer tells whether a registration of the registered cluster cur
// with the token tokenKey is a retry after a lost answer: its credential
// was never presented, was issued within LostAnswerWindow, and to this
// same token.
func (s *Server) lostAnswer(cur *trainyardv1.ClusterReport, tokenKey string, now time.Time) bool {
	a := cur.Annotations
	issued, err := time.Parse(time.RFC3339, a[trainyardv1.AnnotationCredentialUnused])
	return err == nil && a[trainyardv1.AnnotationRegisteredWith] == tokenKey && tokenKey != "" &&
		now.Sub(issued) <= s.opts.LostAnswerWindow
}

// sameCredential tells whether the report holds the credential hash the
// authorizer's first call saw (first nil: it saw no report).
func sameCredential(first *string, cur *trainyardv1.ClusterReport) bool {
	return first != nil && cur != nil && cur.Annotations[trainyardv1.AnnotationCredentialHash] == *first
}

// issued remembers, per replica and briefly, the credentials this replica
// issued, for the requests that present one before the cache has seen the
// report that holds its hash.
type issued struct {
	mu     sync.Mutex
	m      map[string]issuedEntry // by hash
	pruned time.Time
}

type issuedEntry struct {
	key types.NamespacedName
	at  time.Time
}

// issuedTTL is how long a freshly issued credential is looked up here
// rather than only in the cache (which sees it within milliseconds).
const issuedTTL = 30 * time.Second

func (c *issued) add(hash string, key types.NamespacedName, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[string]issuedEntry{}
	}
	// Bounded by the registrations of one issuedTTL; swept at most once a
	// second, so an onboarding fleet does not pay a sweep per registration.
	if now.Sub(c.pruned) > time.Second {
		for h, e := range c.m {
			if now.Sub(e.at) > issuedTTL {
				delete(c.m, h)
			}
		}
		c.pruned = now
	}
	c.m[hash] = issuedEntry{key: key, at: now}
}

func (c *issued) get(hash string, now time.Time) (types.NamespacedName, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[hash]
	if !ok || now.Sub(e.at) > issuedTTL {
		return types.NamespacedName{}, false
	}
	return e.key, true
}

// clusterOfCredential finds the report in namespace ns that accepts the
// credential: by the cache's index, else (issued moments ago) by this
// replica's memory and a read from the API server.
func (s *Server) clusterOfCredential(ctx context.Context, ns, credential string) (*trainyardv1.ClusterReport, error) {
	hash := credentialHash(credential)
	var list trainyardv1.ClusterReportList
	if err := s.cache.List(ctx, &list, client.InNamespace(ns), client.MatchingFields{index.ReportCredential: hash},
		client.UnsafeDisableDeepCopy); err != nil {
		return nil, err
	}
	if len(list.Items) == 1 {
		return &list.Items[0], nil
	}
	if key, ok := s.recent.get(hash, s.opts.Clock.Now()); ok && key.Namespace == ns {
		r := &trainyardv1.ClusterReport{}
		if err := s.apiReader.Get(ctx, key, r); err != nil {
			if apierrors.IsNotFound(err) {
				return nil, nil
			}
			return nil, err
		}
		return r, nil
	}
	return nil, nil
}

// errCredential refuses a check-in: 401 when the credential is not
// (or no longer) the cluster's, 403 when the request may not take the
// cluster, 403 with a quota message beyond a tenant's clusters.
type errCredential struct {
	status int
	msg    string
}

func (e errCredential) Error() string { return e.msg }

// clusterAuthorizer is the check-in's rules of cluster identity, applied
// under the cluster's lock to the report as stored (nil: a new cluster). It
// sets *credential to a credential it issues.
func (s *Server) clusterAuthorizer(ctx context.Context, st *requestState, ns string, credential *string) checkin.Authorizer {
	now := s.opts.Clock.Now()
	str := func(v string) *string { return &v }
	issue := func(cur *trainyardv1.ClusterReport, a map[string]*string, rotation bool) {
		c, h := newCredential()
		*credential = c
		a[trainyardv1.AnnotationCredentialHash] = str(h)
		a[trainyardv1.AnnotationCredentialRevoked] = nil
		a[trainyardv1.AnnotationRotateCredential] = nil
		if rotation {
			a[trainyardv1.AnnotationCredentialUnused] = nil // the cluster is established: no re-registration for it
			// A rotation: the old credential stays valid for the overlap.
			a[trainyardv1.AnnotationPreviousCredentialHash] = str(cur.Annotations[trainyardv1.AnnotationCredentialHash])
			a[trainyardv1.AnnotationPreviousCredentialExpires] = str(now.Add(s.opts.CredentialOverlap).UTC().Format(time.RFC3339))
		} else {
			a[trainyardv1.AnnotationCredentialUnused] = str(now.UTC().Format(time.RFC3339))
			a[trainyardv1.AnnotationPreviousCredentialHash] = nil
			a[trainyardv1.AnnotationPreviousCredentialExpires] = nil
		}
	}
	calls := 0
	// firstCredential is the credential hash of the report the first call
	// saw (nil: it saw none).
	var firstCredential *string
	return func(cur *trainyardv1.ClusterReport) (map[string]*string, error) {
		// Decided anew on each call: the store calls again when the report
		// changed under an identity write, and a credential issued by an
		// earlier call was never stored.
		*credential = ""
		calls++
		if calls == 1 && cur != nil {
			firstCredential = str(cur.Annotations[trainyardv1.AnnotationCredentialHash])
		}
		a := map[string]*string{}
		if st.credentialHash != "" {
			// A cluster credential: only its own cluster, and only while valid.
			if cur == nil {
				return nil, errCredential{http.StatusUnauthorized, "unknown cluster credential: its cluster's report is gone; register again with a registration token"}
			}
			if ok, why := credentialAccepted(cur, st.credentialHash, now); !ok {
				return nil, errCredential{http.StatusUnauthorized, why}
			}
			if cur.Annotations[trainyardv1.AnnotationRotateCredential] != "" {
				// A rotation: the old credential stays valid for the overlap.
				issue(cur, a, true)
			} else if cur.Annotations[trainyardv1.AnnotationCredentialUnused] != "" && cur.Annotations[trainyardv1.AnnotationCredentialHash] == st.credentialHash {
				// Its first use: from now on a lost answer cannot be the
				// reason to register again.
				a[trainyardv1.AnnotationCredentialUnused] = nil
			}
			return a, nil
		}
		// A registration or reissue token.
		register := func() (map[string]*string, error) {
			issue(cur, a, false)
			with := st.tokenKey
			if st.reissueHash != "" {
				with = registeredByReissue
				a[trainyardv1.AnnotationReissueHash], a[trainyardv1.AnnotationReissueExpires] = nil, nil // single use
			}
			a[trainyardv1.AnnotationRegisteredWith] = str(with)
			if s.opts.LegacyTokenBinding {
				a[checkin.AnnotationTokenHash] = str(st.tokenHash)
			}
			return a, nil
		}
		revoked := cur != nil && cur.Annotations[trainyardv1.AnnotationCredentialRevoked] != ""
		if st.reissueHash != "" {
			switch {
			case cur == nil:
				return nil, errCredential{http.StatusUnauthorized, "a reissue token registers only the cluster it was made for, " +
					"and this cluster has no report here"}
			case !revoked && s.opts.LegacyTokenBinding && cur.Annotations[checkin.AnnotationTokenHash] == st.tokenHash:
				// Legacy mode: a Deis agent keeps checking in with the token
				// that registered it, as with a registration token.
				return a, nil
			}
			if why := reissueAccepted(cur, st.reissueHash, now); why != "" {
				return nil, errCredential{http.StatusUnauthorized, why}
			}
			return register()
		}
		if revoked {
			// A registration token usually sits next to the stolen
			// credential: it does not take the cluster back.
			return nil, errCredential{http.StatusForbidden, "cluster " + cur.Spec.ClusterID + " is revoked (" + trainyardv1.AnnotationCredentialRevoked +
				"): a registration token does not register it again; an operator re-opens it for one registration with " +
				"`kubectl trainyard cluster reissue " + cur.Spec.ClusterID + "`, whose token the agent presents instead"}
		}
		if st.tokenExpired != "" {
			// Legacy mode, an expired token: the clusters bound to it check
			// in as before; nothing new is registered or re-issued.
			if cur != nil && cur.Annotations[checkin.AnnotationTokenHash] == st.tokenHash {
				return a, nil
			}
			return nil, errCredential{http.StatusUnauthorized, st.tokenExpired + "; in legacy mode it still checks in the clusters bound to it, but registers no new one"}
		}
		if cur == nil {
			if err := s.withinQuota(ctx, ns); err != nil {
				return nil, err
			}
			return register()
		}
		bound := cur.Annotations[checkin.AnnotationTokenHash]
		switch {
		case cur.Annotations[trainyardv1.AnnotationCredentialHash] != "" && sameCredential(firstCredential, cur) && s.lostAnswer(cur, st.tokenKey, now):
			// The registration's answer was lost (a timeout, an Ingress
			// 504, a restart before the agent stored it): the credential
			// was never presented, and the same token asks again. A fresh
			// credential replaces it; the unused one stops working. Not
			// when a later call finds another credential than the first
			// found (or the first found no report): the write lost a race
			// to a registration concurrent with this one, not an answer
			// this client lost. A later call that finds the same one lost
			// its race to another write (the controller's status), and
			// decides as the first would have.
			return register()
		case cur.Annotations[trainyardv1.AnnotationCredentialHash] != "":
			switch {
			case s.opts.LegacyTokenBinding && bound == st.tokenHash:
				return a, nil // legacy: the token it was bound to still checks it in
			case s.opts.LegacyTokenBinding && bound != "":
				return nil, checkin.ErrBoundElsewhere(cur.Spec.ClusterID)
			}
			return nil, errCredential{http.StatusForbidden, "cluster " + cur.Spec.ClusterID +
				" is registered: check in with its credential, not a registration token (revoke it to register it again)"}
		case bound == st.tokenHash:
			// Bound to this token before credentials existed: the same owner
			// gets a credential.
			return register()
		case bound != "":
			return nil, checkin.ErrBoundElsewhere(cur.Spec.ClusterID)
		case s.opts.LegacyTokenBinding:
			// Reported without any binding (kubectl, open mode): legacy
			// mode lets the first token take it, as before.
			return register()
		}
		return nil, errCredential{http.StatusForbidden, "cluster " + cur.Spec.ClusterID + " exists without a registration; " +
			"a registration token cannot take it over (`kubectl trainyard cluster reissue " + cur.Spec.ClusterID +
			"` makes a token that registers it once)"}
	}
}

// withinQuota refuses a new cluster beyond the tenant's limit, and counts
// it when it is not.
func (s *Server) withinQuota(ctx context.Context, ns string) error {
	limit := s.opts.MaxClustersPerTenant
	if l := s.registration.maxClusters(ns); l > 0 {
		limit = min(l, limit) // the tenant's annotation lowers the flag's limit, never raises it
	}
	n, err := s.clusters.count(ctx, s, ns)
	if err != nil {
		return err
	}
	if n >= limit {
		return errCredential{http.StatusForbidden, fmt.Sprintf("tenant %s has %d clusters, its limit: no more can register (%s on the registration Secret, or --bridge-max-clusters-per-tenant)",
			ns, n, AnnotationMaxClusters)}
	}
	s.clusters.add(ns)
	return nil
}

// clusterCounts is each tenant's number of reports, listed from the cache
// at most every clusterCountTTL and counted up by this replica's
// registrations meanwhile: listing 50,000 reports per registration would
// make onboarding quadratic. Several replicas registering at once may
// overshoot a quota by the registrations of one clusterCountTTL.
type clusterCounts struct {
	mu sync.Mutex
	m  map[string]clusterCount
	// listing is held by the one registration that lists: the others count
	// with the expired entry meanwhile instead of listing the fleet too
	// (16 concurrent lists of 100,000 reports were a gigabyte of garbage).
	listing sync.Mutex
}

type clusterCount struct {
	n  int
	at time.Time
}

const clusterCountTTL = 2 * time.Second

func (c *clusterCounts) count(ctx context.Context, s *Server, ns string) (int, error) {
	now := s.opts.Clock.Now()
	c.mu.Lock()
	e, ok := c.m[ns]
	c.mu.Unlock()
	if ok && now.Sub(e.at) < clusterCountTTL {
		return e.n, nil
	}
	if !c.listing.TryLock() {
		if ok {
			return e.n, nil
		}
		c.listing.Lock() // the first count of a tenant: wait for it
	}
	defer c.listing.Unlock()
	c.mu.Lock()
	e, ok = c.m[ns]
	c.mu.Unlock()
	if ok && now.Sub(e.at) < clusterCountTTL {
		return e.n, nil // listed meanwhile
	}
	n := 0
	if s.names != nil {
		n = s.names.count(ns) // the informer's count: no list of the fleet
	} else {
		var reports trainyardv1.ClusterReportList
		if err := s.cache.List(ctx, &reports, client.InNamespace(ns), client.UnsafeDisableDeepCopy); err != nil {
			return 0, err
		}
		n = len(reports.Items)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[string]clusterCount{}
	}
	c.m[ns] = clusterCount{n: n, at: now}
	return n, nil
}

func (c *clusterCounts) add(ns string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.m[ns]; ok {
		e.n++
		c.m[ns] = e
	}
}
