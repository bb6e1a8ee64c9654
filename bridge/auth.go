package bridge

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"net/http"

	authzv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"

	trainyardv1 "github.com/trainyard-dev/trainyard/api/v1alpha1"
	"github.com/trainyard-dev/trainyard/internal/credential"
	"github.com/trainyard-dev/trainyard/internal/review"
)

// Who may do what through the bridge. Every route declares its access in
// the route table (routes()); the guard authenticates before the handler
// runs, and rate-limits by the identity it found (see traffic.go).
//   - publishing releases: a bearer token that the Kubernetes API
//     authenticates (TokenReview) and RBAC lets create componentreleases in
//     the bridge's namespace (SubjectAccessReview); a CI pipeline uses a
//     ServiceAccount token. Results are cached briefly.
//   - check-ins and doctor uploads, in "token" mode (the default): a
//     cluster's own credential, which the bridge issued when a registration
//     token (a value of the tenant's registration Secret) registered it
//     (identity.go, tokens.go). No credential writes another cluster's
//     report; a registration token takes no registered cluster. "open"
//     mode takes anonymous ones, as the old service did.
//   - reads: anonymous unless ReadAuth, then a cluster credential or a
//     registration token of the tenant, or a token RBAC lets list
//     clusterreports in the tenant's namespace.
//   - reading doctor dumps: basic auth as before, or a token RBAC lets get
//     secrets.
type access int

const (
	// accessPublic: anyone (health, the OpenAPI document).
	accessPublic access = iota + 1
	// accessRead: the fleet's state; anonymous unless ReadAuth.
	accessRead
	// accessAgent: what a cluster sends (check-ins, doctor uploads).
	accessAgent
	// accessPublish: publishing releases.
	accessPublish
	// accessDoctorRead: reading doctor dumps.
	accessDoctorRead
)

func (a access) String() string {
	switch a {
	case accessPublic:
		return "public"
	case accessRead:
		return "read"
	case accessAgent:
		return "agent"
	case accessPublish:
		return "publish"
	case accessDoctorRead:
		return "doctor-read"
	}
	return ""
}

// Check-in authentication modes.
const (
	CheckInToken = "token"
	CheckInOpen  = "open"
)

// tokenHash is what is stored and logged of a token: never the token.
func tokenHash(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:16])
}

// bearer is the request's bearer token, or "".
func bearer(r *http.Request) string { return review.Bearer(r) }

// authenticate answers 401, 403, 429 or 503 itself unless the request may
// use a route of access a; otherwise it returns the identity the request is
// rate-limited as ("" when the handler keys it itself: a registration, by
// its cluster).
func (s *Server) authenticate(w http.ResponseWriter, r *http.Request, a access) (string, bool) {
	switch a {
	case accessRead:
		return s.authenticateRead(w, r)
	case accessAgent:
		return s.authenticateAgent(w, r)
	case accessPublish:
		return s.authorize(w, r, "create", trainyardv1.GroupVersion.Group, "componentreleases")
	case accessDoctorRead:
		return s.authenticateDoctorRead(w, r)
	}
	return "addr:" + stateOf(r.Context()).source, true
}

// The authentication challenges of 401 answers.
const (
	challengeBearer       = `Bearer realm="trainyard"`
	challengeInvalidToken = `Bearer realm="trainyard", error="invalid_token"`
	challengeDoctorBasic  = `Basic realm="trainyard doctor"`
)

// refuse answers a request that authentication refused: the failure counts
// against the source's budget as reason ("": it does not count), and a 401
// carries its challenge. It returns what authenticate returns.
func (s *Server) refuse(w http.ResponseWriter, source, reason, challenge string, code int, msg string) (string, bool) {
	if reason != "" {
		s.failed(source, reason)
	}
	if challenge != "" {
		w.Header().Set("WWW-Authenticate", challenge)
	}
	writeError(w, code, msg)
	return "", false
}

// authenticateRead: anyone may read, unless ReadAuth asks for a cluster
// credential, a registration token of the tenant, or RBAC's leave to list
// the tenant's reports.
func (s *Server) authenticateRead(w http.ResponseWriter, r *http.Request) (string, bool) {
	st := stateOf(r.Context())
	tok := bearer(r)
	if !s.opts.ReadAuth {
		// A cluster that shows its credential reads as itself (its own
		// budget and priority level, not its address's).
		if isCredential(tok) {
			if id, ok := s.softCredential(r, tok); ok {
				return id, true
			}
		}
		return "addr:" + st.source, true
	}
	if isCredential(tok) {
		return s.authenticateCredential(w, r, tok)
	}
	if tok != "" {
		info, ok, err := s.registration.lookup(r.Context(), s, st.ns, tokenHash(tok))
		if err != nil {
			writeRegistrationUnavailable(w, err)
			return "", false
		}
		if ok && info.valid(s.opts.Clock.Now()) == "" {
			// A fleet shares its token: each address has a budget.
			return "token:" + tokenHash(tok) + "@" + st.source, true
		}
	}
	return s.authorize(w, r, "list", trainyardv1.GroupVersion.Group, "clusterreports")
}

// authenticateAgent: a check-in or an upload carries its cluster's
// credential, a registration token of the tenant, or an operator's reissue
// token; the cluster's authorizer (identity.go) then decides on the
// cluster itself. With CheckInAuth open, anyone may.
func (s *Server) authenticateAgent(w http.ResponseWriter, r *http.Request) (string, bool) {
	st := stateOf(r.Context())
	if s.opts.CheckInAuth != CheckInToken {
		return "addr:" + st.source, true
	}
	tok := bearer(r)
	if isCredential(tok) {
		return s.authenticateCredential(w, r, tok)
	}
	if !s.failureBudget(w, st.source) {
		return "", false
	}
	if credential.IsReissue(tok) {
		// An operator's single-use token for one cluster: the cluster's
		// authorizer checks it against the report (identity.go).
		st.tokenHash, st.reissueHash = tokenHash(tok), credential.Hash(tok)
		return "", true
	}
	var info tokenInfo
	ok := false
	if tok != "" {
		var err error
		if info, ok, err = s.registration.lookup(r.Context(), s, st.ns, tokenHash(tok)); err != nil {
			writeRegistrationUnavailable(w, err)
			return "", false
		}
	}
	if !ok {
		return s.refuse(w, st.source, "registration_token", challengeBearer, http.StatusUnauthorized,
			"a cluster credential or a valid registration token is required (Authorization: Bearer <token>)")
	}
	if why := info.valid(s.opts.Clock.Now()); why != "" {
		if !s.opts.LegacyTokenBinding || info.invalid != "" {
			return s.refuse(w, st.source, "registration_token_expired", challengeInvalidToken, http.StatusUnauthorized, why)
		}
		// Legacy mode: the token is its clusters' only identity. Once
		// expired it registers nothing more, but its clusters keep
		// checking in (the cluster's authorizer decides).
		st.tokenExpired = why
	}
	st.tokenHash, st.tokenKey = tokenHash(tok), info.key
	return "", true
}

// authenticateDoctorRead: a Kubernetes identity that RBAC lets read the
// tenant's Secrets, or the doctor credentials' basic auth.
func (s *Server) authenticateDoctorRead(w http.ResponseWriter, r *http.Request) (string, bool) {
	st := stateOf(r.Context())
	if bearer(r) != "" {
		return s.authorize(w, r, "get", "", "secrets")
	}
	if !s.failureBudget(w, st.source) {
		return "", false
	}
	ok, err := s.doctorAuthorized(r)
	if err != nil {
		w.Header().Set("Retry-After", "5")
		return s.refuse(w, st.source, "", "", http.StatusServiceUnavailable,
			fmt.Sprintf("the doctor credentials cannot be read right now (%v); retry", err))
	}
	if !ok {
		return s.refuse(w, st.source, "doctor_basic_auth", challengeDoctorBasic, http.StatusUnauthorized, "unauthenticated for invalid credentials")
	}
	return "addr:" + st.source, true
}

// authenticateCredential accepts a cluster credential of the request's
// tenant: the request is then its cluster's, rate-limited as the cluster.
func (s *Server) authenticateCredential(w http.ResponseWriter, r *http.Request, credential string) (string, bool) {
	st := stateOf(r.Context())
	rep, err := s.clusterOfCredential(r.Context(), st.ns, credential)
	if err != nil {
		writeAPIError(w, "reading the cluster of the credential", err)
		return "", false
	}
	hash := credentialHash(credential)
	why := "unknown cluster credential (revoked and registered again, rotated out, or its cluster's report was deleted): " +
		"register again with a registration token"
	ok := false
	if rep != nil {
		ok, why = credentialAccepted(rep, hash, s.opts.Clock.Now())
	}
	if !ok {
		// Only a refused credential draws on (and is stopped by) its source's
		// failure budget: a cluster behind the same address as someone
		// sending bad requests still gets in. The look-up above is a cache
		// index read.
		if !s.failureBudget(w, st.source) {
			return "", false
		}
		return s.refuse(w, st.source, "cluster_credential", challengeInvalidToken, http.StatusUnauthorized, why)
	}
	st.credentialHash, st.cluster = hash, rep.Name
	return "cluster:" + st.ns + "/" + rep.Name, true
}

// softCredential is authenticateCredential for a route that needs none:
// a credential that is not accepted is ignored, not refused.
func (s *Server) softCredential(r *http.Request, credential string) (string, bool) {
	st := stateOf(r.Context())
	rep, err := s.clusterOfCredential(r.Context(), st.ns, credential)
	if err != nil || rep == nil {
		return "", false
	}
	hash := credentialHash(credential)
	if ok, _ := credentialAccepted(rep, hash, s.opts.Clock.Now()); !ok {
		return "", false
	}
	st.credentialHash, st.cluster = hash, rep.Name
	return "cluster:" + st.ns + "/" + rep.Name, true
}

func writeRegistrationUnavailable(w http.ResponseWriter, err error) {
	w.Header().Set("Retry-After", "5")
	writeError(w, http.StatusServiceUnavailable,
		fmt.Sprintf("the registration tokens cannot be read right now (%v); nothing was stored, retry", err))
}

// authorize answers 401/403 (and counts them) unless the bearer token may
// verb resource in the bridge's namespace; it returns the identity to
// rate-limit the request as.
func (s *Server) authorize(w http.ResponseWriter, r *http.Request, verb, group, resource string) (string, bool) {
	st := stateOf(r.Context())
	tok := bearer(r)
	if tok == "" {
		authFailures.WithLabelValues("missing_token").Inc()
		return s.refuse(w, st.source, "", challengeBearer, http.StatusUnauthorized, "a bearer token is required: "+verb+" "+resource+" in namespace "+st.ns)
	}
	// Every token the API has not seen costs it a TokenReview: a source
	// whose tokens keep failing waits instead.
	if !s.failureBudget(w, st.source) {
		return "", false
	}
	ans, err := s.reviewer.Review(r.Context(), tok, review.Attributes{Resource: &authzv1.ResourceAttributes{
		Namespace: st.ns, Verb: verb, Group: group, Resource: resource}})
	switch {
	case err != nil:
		writeAPIError(w, "checking the token", err)
		return "", false
	case !ans.Authenticated:
		return s.refuse(w, st.source, "invalid_token", challengeInvalidToken, http.StatusUnauthorized, "the bearer token is not valid")
	case !ans.Allowed:
		authFailures.WithLabelValues("forbidden").Inc()
		return s.refuse(w, st.source, "", "", http.StatusForbidden, "the token's identity may not "+verb+" "+resource+" in namespace "+st.ns)
	}
	return "user:" + tokenHash(tok), true
}

// failureBudget answers 429 when the source has used up its failed
// authentications: guessing tokens costs the API server nothing more.
func (s *Server) failureBudget(w http.ResponseWriter, source string) bool {
	if ok, wait := s.failures.peek("addr:" + source); !ok {
		shedTotal.WithLabelValues("auth_failures").Inc()
		w.Header().Set("Retry-After", retryAfter(wait))
		writeError(w, http.StatusTooManyRequests, "too many failed authentications or invalid requests from this client; retry after "+retryAfter(wait)+"s")
		return false
	}
	return true
}

// failed counts a failed authentication against its source.
func (s *Server) failed(source, reason string) {
	authFailures.WithLabelValues(reason).Inc()
	s.failures.allow("addr:" + source)
}

// doctorAuthorized checks HTTP basic auth against the credentials Secret;
// an error means the Secret could not be read.
func (s *Server) doctorAuthorized(r *http.Request) (bool, error) {
	user, pass, ok := r.BasicAuth()
	if !ok || s.opts.DoctorAuthSecret == "" {
		return false, nil
	}
	sec := &corev1.Secret{}
	err := s.apiReader.Get(r.Context(), types.NamespacedName{Namespace: stateOf(r.Context()).ns, Name: s.opts.DoctorAuthSecret}, sec)
	if apierrors.IsNotFound(err) {
		return false, nil
	} else if err != nil {
		return false, err
	}
	wantUser, wantPass := sec.Data["username"], sec.Data["password"]
	if len(wantUser) == 0 || len(wantPass) == 0 {
		return false, nil
	}
	u := subtle.ConstantTimeCompare([]byte(user), wantUser)
	pw := subtle.ConstantTimeCompare([]byte(pass), wantPass)
	return u&pw == 1, nil
}
