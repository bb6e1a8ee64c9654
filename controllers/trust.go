package controllers

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	trainyardv1 "github.com/trainyard-dev/trainyard/api/v1alpha1"
	"github.com/trainyard-dev/trainyard/internal/egress"
	"github.com/trainyard-dev/trainyard/internal/validation"
	"github.com/trainyard-dev/trainyard/internal/verification"
)

// trust verifies releases against the TrustPolicies that cover them
// (issue 31). A policy's verifier is built once per policy generation and
// resourceVersions of its Secrets (its fingerprint); a release's result is
// kept per fingerprint, digest and bundle, so each digest is verified once
// per policy generation and key change, whatever the number of reconciles.
//
// Secrets are read from the API server (the manager may get Secrets only in
// the namespaces the chart names, never list or watch them), each at most
// once per secretTTL; a covered train is verified again every resync, so a
// rotated or removed key takes effect within about a minute.
type trust struct {
	secrets client.Reader
	clock   func() time.Time
	// registry is the transport of signature fetches: it refuses
	// loopback, link-local and the like (internal/egress), as an image's
	// registry is whatever a publisher wrote.
	registry http.RoundTripper

	mu        sync.Mutex
	verifiers map[types.UID]*policyVerifier
	results   map[resultKey]verification.Result
	read      map[types.NamespacedName]readSecret
	fetched   map[string]fetched
}

type readSecret struct {
	sec *corev1.Secret // nil: not found
	at  time.Time
}

// secretTTL is how long a Secret read is used; maxSecrets bounds what is
// kept (policies name at most 17 each).
const (
	secretTTL  = 10 * time.Second
	maxSecrets = 10000
	// maxFetched bounds the registry answers kept (each at most
	// MaxRegistrySignatures bundles of MaxBundleBytes: 512 KiB).
	maxFetched = 1000
)

type policyVerifier struct {
	fingerprint string
	v           *verification.Verifier
	err         error
}

type resultKey struct{ fingerprint, digest, bundle string }

// maxResults bounds the results kept; past it they are dropped (and
// computed again as needed).
const maxResults = 100000

func newTrust(secrets client.Reader, clock func() time.Time, registry http.RoundTripper) *trust {
	return &trust{secrets: secrets, clock: clock, registry: registry, verifiers: map[types.UID]*policyVerifier{},
		results: map[resultKey]verification.Result{}, read: map[types.NamespacedName]readSecret{}, fetched: map[string]fetched{}}
}

// secret reads a Secret, or uses what was read less than secretTTL ago.
func (t *trust) secret(ctx context.Context, key types.NamespacedName) (*corev1.Secret, error) {
	now := t.clock()
	t.mu.Lock()
	r, ok := t.read[key]
	t.mu.Unlock()
	if ok && now.Sub(r.at) < secretTTL {
		return r.sec, nil
	}
	sec := &corev1.Secret{}
	if err := t.secrets.Get(ctx, key, sec); apierrors.IsNotFound(err) {
		sec = nil
	} else if err != nil {
		return nil, err
	}
	t.mu.Lock()
	if len(t.read) >= maxSecrets {
		clear(t.read)
	}
	t.read[key] = readSecret{sec: sec, at: now}
	t.mu.Unlock()
	return sec, nil
}

// policyFor is a TrustPolicy of the namespace that covers component on
// train (the first by name), or nil.
func policyFor(ctx context.Context, c client.Reader, ns, component, train string) (*trainyardv1.TrustPolicy, error) {
	all, err := policiesFor(ctx, c, ns, component, train)
	if err != nil || len(all) == 0 {
		return nil, err
	}
	return all[0], nil
}

// policiesFor are every TrustPolicy of the namespace that covers component
// on train, by name: a release must satisfy all of them (a looser policy
// added beside a stricter one does not weaken it).
func policiesFor(ctx context.Context, c client.Reader, ns, component, train string) ([]*trainyardv1.TrustPolicy, error) {
	var list trainyardv1.TrustPolicyList
	if err := c.List(ctx, &list, client.InNamespace(ns), client.UnsafeDisableDeepCopy); err != nil {
		return nil, err
	}
	var out []*trainyardv1.TrustPolicy
	for i := range list.Items {
		if validation.Covers(&list.Items[i].Spec, component, train) {
			out = append(out, &list.Items[i])
		}
	}
	slices.SortFunc(out, func(a, b *trainyardv1.TrustPolicy) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// material reads what the policy trusts from its Secrets, and the
// fingerprint of what was read. A Secret or key that is missing, or that
// does not match its pin, is named in problems and left out: the rest
// still verifies.
func (t *trust) material(ctx context.Context, tp *trainyardv1.TrustPolicy) (m verification.Material, fingerprint string, problems []string, err error) {
	fp := []string{string(tp.UID), fmt.Sprint(tp.Generation)}
	read := func(ref trainyardv1.SecretKeyRef) ([]byte, error) {
		sec, err := t.secret(ctx, types.NamespacedName{Namespace: tp.Namespace, Name: ref.Name})
		if err != nil {
			return nil, err
		}
		if sec == nil {
			problems = append(problems, fmt.Sprintf("Secret %s not found", ref.Name))
			fp = append(fp, ref.Name+"/-")
			return nil, nil
		}
		fp = append(fp, ref.Name+"/"+sec.ResourceVersion)
		b, ok := sec.Data[ref.Key]
		if !ok {
			problems = append(problems, fmt.Sprintf("Secret %s has no key %s", ref.Name, ref.Key))
			return nil, nil
		}
		if ref.SHA256 != "" {
			if sum := sha256.Sum256(b); hex.EncodeToString(sum[:]) != ref.SHA256 {
				problems = append(problems, fmt.Sprintf("Secret %s key %s does not match its pinned sha256 (%s)", ref.Name, ref.Key, ref.SHA256))
				return nil, nil
			}
		}
		return b, nil
	}
	for _, k := range tp.Spec.Keys {
		b, err := read(k)
		if err != nil {
			return m, "", nil, err
		}
		if b != nil {
			m.Keys = append(m.Keys, verification.Key{Name: k.Name + "/" + k.Key, PEM: b})
		}
	}
	if kl := tp.Spec.Keyless; kl != nil {
		b, err := read(kl.TrustedRoot)
		if err != nil {
			return m, "", nil, err
		}
		m.TrustedRoot = b
		for _, id := range kl.Identities {
			m.Identities = append(m.Identities, verification.Identity{Issuer: id.Issuer, IssuerRegExp: id.IssuerRegExp,
				Subject: id.Subject, SubjectRegExp: id.SubjectRegExp})
		}
	}
	m.Requirements = verification.Requirements{TransparencyLog: int(tp.Spec.TransparencyLog.Threshold),
		SignedTimestamps: int(tp.Spec.SignedTimestamps.Threshold)}
	return m, strings.Join(fp, ","), problems, nil
}

// verifier is the policy's verifier for what its Secrets hold now.
func (t *trust) verifier(ctx context.Context, tp *trainyardv1.TrustPolicy) (*policyVerifier, []string, error) {
	m, fp, problems, err := t.material(ctx, tp)
	if err != nil {
		return nil, nil, err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if pv := t.verifiers[tp.UID]; pv != nil && pv.fingerprint == fp {
		return pv, problems, nil
	}
	pv := &policyVerifier{fingerprint: fp}
	pv.v, pv.err = verification.New(m)
	t.verifiers[tp.UID] = pv
	return pv, problems, nil
}

// forget drops a deleted policy's verifier.
func (t *trust) forget(uid types.UID) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.verifiers, uid)
}

// verify is a release's result under the policy's verifier: its own
// bundle, or what its registry holds when it has none and the policy
// opts in to fetching.
func (t *trust) verify(ctx context.Context, tp *trainyardv1.TrustPolicy, pv *policyVerifier, rel *trainyardv1.ComponentRelease) verification.Result {
	if pv.err != nil {
		return verification.Result{Reason: verification.ReasonNotTrusted, Message: "the policy cannot verify: " + pv.err.Error()}
	}
	_, digest, _ := strings.Cut(rel.Spec.Image, "@")
	if digest == "" {
		return verification.Result{Reason: verification.ReasonInvalidDigest, Message: fmt.Sprintf("the image %q names no digest", rel.Spec.Image)}
	}
	material := []byte(rel.Spec.SignatureBundle)
	var sigs verification.Signatures
	fromRegistry := len(material) == 0 && tp.Spec.Registry != nil && tp.Spec.Registry.Enabled
	if fromRegistry {
		var err error
		if sigs, err = t.fetch(ctx, tp, rel.Spec.Image); err != nil {
			return verification.Result{Reason: ReasonSignatureFetchFailed, Message: "reading the registry's signatures: " + err.Error()}
		}
		material = sigs.Fingerprint()
	}
	sum := sha256.Sum256(material)
	key := resultKey{fingerprint: pv.fingerprint, digest: digest, bundle: hex.EncodeToString(sum[:])}
	t.mu.Lock()
	r, ok := t.results[key]
	t.mu.Unlock()
	if ok {
		return r
	}
	if fromRegistry {
		r = fromSignatures(pv.v, sigs, rel.Spec.Image)
	} else {
		r = pv.v.Verify(material, rel.Spec.Image)
	}
	t.mu.Lock()
	if len(t.results) >= maxResults {
		clear(t.results)
	}
	t.results[key] = r
	verifications.Inc()
	t.mu.Unlock()
	return r
}

// ReasonSignatureFetchFailed: the policy fetches signatures from the
// registry, and that failed (tried again at the next resync).
const ReasonSignatureFetchFailed = "SignatureFetchFailed"

// fromSignatures is the first verified of a registry's signatures, or
// why none verifies.
func fromSignatures(v *verification.Verifier, sigs verification.Signatures, image string) verification.Result {
	var first *verification.Result
	for _, b := range sigs.Bundles {
		r := v.Verify(b, image)
		if r.Verified {
			return r
		}
		if first == nil {
			first = &r
		}
	}
	for _, s := range sigs.Simple {
		r := v.VerifySimpleSigning(s, image)
		if r.Verified {
			return r
		}
		if first == nil {
			first = &r
		}
	}
	if first != nil {
		return *first
	}
	return verification.Result{Reason: verification.ReasonNoSignature,
		Message: "the release carries no bundle, and its registry holds none (no Sigstore referrer, no .sig tag)"}
}

// fetched is a registry's answer for a digest, kept for fetchTTL: a train
// reconciled every second does not ask the registry every second.
type fetched struct {
	sigs verification.Signatures
	err  error
	at   time.Time
}

const fetchTTL = time.Minute

// fetch reads an image's signatures from its registry, or uses what was
// read less than fetchTTL ago.
func (t *trust) fetch(ctx context.Context, tp *trainyardv1.TrustPolicy, image string) (verification.Signatures, error) {
	now := t.clock()
	t.mu.Lock()
	fkey := string(tp.UID) + "/" + image // credentials and answers are the policy's own
	f, ok := t.fetched[fkey]
	t.mu.Unlock()
	if ok && now.Sub(f.at) < fetchTTL {
		return f.sigs, f.err
	}
	var creds *verification.Credentials
	var err error
	if ps := tp.Spec.Registry.PullSecret; ps != "" {
		sec, serr := t.secret(ctx, types.NamespacedName{Namespace: tp.Namespace, Name: ps})
		switch {
		case serr != nil:
			return verification.Signatures{}, serr
		case sec == nil:
			err = fmt.Errorf("pull Secret %s not found", ps)
		default:
			creds, err = verification.DockerConfigCredentials(sec.Data[corev1.DockerConfigJsonKey], image)
		}
	}
	var sigs verification.Signatures
	if err == nil {
		var timeout time.Duration
		if tp.Spec.Registry.Timeout != nil {
			timeout = tp.Spec.Registry.Timeout.Duration
		}
		sigs, err = verification.Fetch(ctx, image, timeout, creds, t.registry)
		err = verification.Terse(err)
	}
	t.mu.Lock()
	if len(t.fetched) >= maxFetched {
		clear(t.fetched)
	}
	t.fetched[fkey] = fetched{sigs: sigs, err: err, at: now}
	t.mu.Unlock()
	return sigs, err
}

// RegistryTransport is the transport of signature fetches allowing the
// ranges given (a test's loopback registry); every other refused range
// stays refused.
func RegistryTransport(allowed ...netip.Prefix) http.RoundTripper {
	d := egress.Destinations{Allowed: allowed, Purpose: "registries trainyard fetches signatures from"}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	// No proxy: through one, the only address dialled would be the
	// proxy's, and the check above would see nothing of the registry's.
	tr.Proxy = nil
	tr.DialContext = d.Dialer(10 * time.Second).DialContext
	return verification.LimitBodies(tr, verification.MaxRegistryBody)
}
