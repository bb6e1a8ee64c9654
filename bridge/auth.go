package bridge

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"strings"
	"sync"
	"time"

	authzv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/trainyard-dev/trainyard/internal/review"
)

// Who may do what through the bridge:
//   - publishing releases: a bearer token that the Kubernetes API
//     authenticates (TokenReview) and RBAC lets create componentreleases in
//     the bridge's namespace (SubjectAccessReview); a CI pipeline uses a
//     ServiceAccount token. Results are cached briefly.
//   - check-ins, in "token" mode (the default): a registration token from a
//     Secret. A cluster's first check-in binds its ID to the token used (a
//     hash of it, on the ClusterReport); a check-in of that ID with another
//     token is refused, so no cluster can overwrite another's report. "open"
//     mode takes anonymous check-ins, as the old service did.
//   - reads: anonymous unless ReadAuth, then a registration token or a
//     token RBAC lets list clusterreports.
//   - doctor dumps: basic auth as before, or a token RBAC lets get secrets.

// Check-in authentication modes.
const (
	CheckInToken = "token"
	CheckInOpen  = "open"
)

// AnnotationTokenHash binds a ClusterReport to the registration token of its
// first check-in.
const AnnotationTokenHash = "trainyard.dev/registration-token-sha256"

// tokenHash is what is stored and logged of a token: never the token.
func tokenHash(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:16])
}

// bearer is the request's bearer token, or "".
func bearer(r *http.Request) string { return review.Bearer(r) }

// registrationToken checks a request's bearer token against the
// registration Secret: "" and false when it is missing or wrong. The
// Secret is read at most every registrationTTL, not per check-in.
func (s *Server) registrationToken(ctx context.Context, r *http.Request) (string, bool) {
	tok := bearer(r)
	if tok == "" {
		return "", false
	}
	hashes, err := s.registration.hashes(ctx, s)
	if err != nil {
		return "", false
	}
	return tok, hashes[tokenHash(tok)]
}

// registrationTTL is how long registration tokens are trusted from the last
// read of their Secret (a removed token stops working within it).
const registrationTTL = 10 * time.Second

type registrationCache struct {
	mu    sync.Mutex
	set   map[string]bool // token hashes
	until time.Time
}

func (c *registrationCache) hashes(ctx context.Context, s *Server) (map[string]bool, error) {
	now := s.opts.Clock.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.set != nil && now.Before(c.until) {
		return c.set, nil
	}
	sec := &corev1.Secret{}
	if err := s.apiReader.Get(ctx, types.NamespacedName{Namespace: s.opts.Namespace, Name: s.opts.RegistrationSecret}, sec); err != nil {
		return nil, err
	}
	set := map[string]bool{}
	for _, v := range sec.Data {
		if t := strings.TrimSpace(string(v)); t != "" {
			set[tokenHash(t)] = true
		}
	}
	c.set, c.until = set, now.Add(registrationTTL)
	return set, nil
}

// allowed asks the Kubernetes API whether token may verb resource in the
// bridge's namespace: (authenticated, allowed).
func (s *Server) allowed(ctx context.Context, token, verb, group, resource string) (bool, bool, error) {
	ans, err := s.reviewer.Review(ctx, token, review.Attributes{Resource: &authzv1.ResourceAttributes{
		Namespace: s.opts.Namespace, Verb: verb, Group: group, Resource: resource}})
	return ans.Authenticated, ans.Allowed, err
}

// authorize answers 401/403 (and counts them) unless token may verb
// resource; it reports whether the request may go on.
func (s *Server) authorize(w http.ResponseWriter, r *http.Request, verb, group, resource string) bool {
	tok := bearer(r)
	if tok == "" {
		authFailures.WithLabelValues("missing_token").Inc()
		w.Header().Set("WWW-Authenticate", `Bearer realm="trainyard"`)
		writeError(w, http.StatusUnauthorized, "a bearer token is required: "+verb+" "+resource+" in namespace "+s.opts.Namespace)
		return false
	}
	authn, authz, err := s.allowed(r.Context(), tok, verb, group, resource)
	switch {
	case err != nil:
		writeAPIError(w, "checking the token", err)
		return false
	case !authn:
		authFailures.WithLabelValues("invalid_token").Inc()
		w.Header().Set("WWW-Authenticate", `Bearer realm="trainyard", error="invalid_token"`)
		writeError(w, http.StatusUnauthorized, "the bearer token is not valid")
		return false
	case !authz:
		authFailures.WithLabelValues("forbidden").Inc()
		writeError(w, http.StatusForbidden, "the token's identity may not "+verb+" "+resource+" in namespace "+s.opts.Namespace)
		return false
	}
	return true
}
