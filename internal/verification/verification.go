// Package verification checks that a release's Sigstore bundle signs its
// image digest, against what a TrustPolicy trusts: public keys, or keyless
// certificate identities under a trusted root. Everything it trusts is
// given to it (from Secrets): it never fetches a trust root, so it works
// air-gapped and no default path touches the network (issue 31). It is
// pure: the controller reads the Secrets and the bundles, and caches the
// results per digest.
package verification

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	protobundle "github.com/sigstore/protobuf-specs/gen/pb-go/bundle/v1"
	protocommon "github.com/sigstore/protobuf-specs/gen/pb-go/common/v1"
	"github.com/sigstore/sigstore-go/pkg/bundle"
	"github.com/sigstore/sigstore-go/pkg/root"
	"github.com/sigstore/sigstore-go/pkg/verify"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature"
)

// Limits on what is given: a bundle and a trusted root are small JSON
// documents (a few KiB); anything far larger is refused before decoding.
const (
	MaxBundleBytes      = 64 << 10
	MaxTrustedRootBytes = 1 << 20
	MaxKeyBytes         = 16 << 10
)

// Key is one trusted public key, named for the record (its Secret and key).
type Key struct {
	Name string
	PEM  []byte
}

// Identity is a keyless signer: the OIDC issuer and the certificate's
// subject (SAN), each exact or a regular expression, as Flux's
// matchOIDCIdentity and cosign's --certificate-identity(-regexp).
type Identity struct {
	Issuer, IssuerRegExp, Subject, SubjectRegExp string
}

func (i Identity) String() string {
	return fmt.Sprintf("%s %s", orRegExp(i.Issuer, i.IssuerRegExp), orRegExp(i.Subject, i.SubjectRegExp))
}

func orRegExp(exact, re string) string {
	if exact != "" {
		return exact
	}
	return "~" + re
}

// Requirements say what a signature must come with, stated explicitly.
type Requirements struct {
	// TransparencyLog: entries in a transparency log (with an inclusion
	// promise or proof under the trusted root's logs) that must verify.
	TransparencyLog int
	// SignedTimestamps: RFC 3161 timestamps from the trusted root's
	// timestamping authorities that must verify.
	SignedTimestamps int
}

// Material is everything a policy trusts.
type Material struct {
	Keys []Key
	// TrustedRoot is a Sigstore trusted_root.json (keyless), with
	// Identities.
	TrustedRoot []byte
	Identities  []Identity
	Requirements
}

// Verifier verifies bundles against one policy's material.
type Verifier struct {
	keys       []keyVerifier
	keyless    *verify.Verifier
	identities []verify.CertificateIdentity
	names      []string // the identities, for the record
}

type keyVerifier struct {
	name string
	v    *verify.Verifier
}

// New prepares a verifier. Its errors name the key or the part of the
// trusted root at fault.
func New(m Material) (*Verifier, error) {
	if len(m.Keys) == 0 && len(m.TrustedRoot) == 0 {
		return nil, errors.New("the policy trusts no key and no trusted root")
	}
	v := &Verifier{}
	// The trusted root, when given, also holds the logs and timestamping
	// authorities that a key's signature may be required to come with.
	var tr *root.TrustedRoot
	if len(m.TrustedRoot) > 0 {
		if len(m.TrustedRoot) > MaxTrustedRootBytes {
			return nil, fmt.Errorf("trusted root: larger than %d bytes", MaxTrustedRootBytes)
		}
		var err error
		if tr, err = root.NewTrustedRootFromJSON(m.TrustedRoot); err != nil {
			return nil, fmt.Errorf("trusted root: %w", err)
		}
	}
	if len(m.Keys) > 0 && tr == nil && (m.TransparencyLog > 0 || m.SignedTimestamps > 0) {
		return nil, errors.New("a transparency-log or signed-timestamp threshold needs a trusted root: its logs and timestamping authorities verify them")
	}
	for _, k := range m.Keys {
		if len(k.PEM) > MaxKeyBytes {
			return nil, fmt.Errorf("key %s: larger than %d bytes", k.Name, MaxKeyBytes)
		}
		pub, err := cryptoutils.UnmarshalPEMToPublicKey(bytes.TrimSpace(k.PEM))
		if err != nil {
			return nil, fmt.Errorf("key %s: not a PEM public key: %w", k.Name, err)
		}
		sv, err := signature.LoadDefaultVerifier(pub)
		if err != nil {
			return nil, fmt.Errorf("key %s: %w", k.Name, err)
		}
		// Any key hint: the bundle's hint is the signer's choice, the key
		// is ours.
		var material root.TrustedMaterial = root.NewTrustedPublicKeyMaterial(func(string) (root.TimeConstrainedVerifier, error) {
			return root.NewExpiringKey(sv, time0, time0), nil
		})
		if tr != nil {
			material = root.TrustedMaterialCollection{material, tr}
		}
		kv, err := verify.NewVerifier(material, options(m.Requirements, true)...)
		if err != nil {
			return nil, fmt.Errorf("key %s: %w", k.Name, err)
		}
		v.keys = append(v.keys, keyVerifier{name: k.Name, v: kv})
	}
	if tr != nil && len(m.Identities) > 0 {
		var err error
		if v.keyless, err = verify.NewVerifier(tr, options(m.Requirements, false)...); err != nil {
			return nil, fmt.Errorf("trusted root: %w", err)
		}
		for i, id := range m.Identities {
			ci, err := verify.NewShortCertificateIdentity(id.Issuer, id.IssuerRegExp, id.Subject, id.SubjectRegExp)
			if err != nil {
				return nil, fmt.Errorf("identity %d: %w", i, err)
			}
			v.identities = append(v.identities, ci)
			v.names = append(v.names, id.String())
		}
	} else if tr != nil && len(m.Keys) == 0 {
		return nil, errors.New("a trusted root without identities would trust any signer it certifies")
	}
	return v, nil
}

// time0 leaves a key's validity unbounded.
var time0 time.Time

// options are the verifier's requirements. A key needs no time source
// (keys do not expire); a certificate is short-lived, so keyless needs the
// time the log or a timestamping authority vouches for.
func options(r Requirements, key bool) []verify.VerifierOption {
	var opts []verify.VerifierOption
	if r.TransparencyLog > 0 {
		opts = append(opts, verify.WithTransparencyLog(r.TransparencyLog), verify.WithIntegratedTimestamps(r.TransparencyLog))
	}
	if r.SignedTimestamps > 0 {
		opts = append(opts, verify.WithSignedTimestamps(r.SignedTimestamps))
	}
	if len(opts) == 0 && key {
		opts = append(opts, verify.WithNoObserverTimestamps())
	}
	return opts
}

// Reasons of a Result, as the Verified condition has them.
const (
	ReasonVerified         = "Verified"
	ReasonNoSignature      = "NoSignature"
	ReasonInvalidBundle    = "InvalidBundle"
	ReasonInvalidDigest    = "InvalidDigest"
	ReasonNotTrusted       = "NotTrusted"
	ReasonIdentityMismatch = "IdentityMismatch"
	ReasonNotASignature    = "NotASignature"
)

// Result is the outcome of one verification.
type Result struct {
	Verified bool
	// Reason is one word (the Reason* constants); By names the key or the
	// identity that verified; Message says why, for people.
	Reason, By, Message string
}

// Digest parses a "sha256:<64 hex>" digest (an image reference's part
// after '@', or the whole of it).
func Digest(ref string) ([]byte, error) {
	_, d, _ := strings.Cut(ref, "@")
	if d == "" {
		d = ref
	}
	alg, hexDigest, ok := strings.Cut(d, ":")
	if !ok || alg != "sha256" || len(hexDigest) != 2*sha256.Size {
		return nil, fmt.Errorf("%q is not a sha256 digest (sha256: and 64 hexadecimal digits)", d)
	}
	b, err := hex.DecodeString(hexDigest)
	if err != nil || strings.ToLower(hexDigest) != hexDigest {
		return nil, fmt.Errorf("%q is not a sha256 digest (sha256: and 64 lower-case hexadecimal digits)", d)
	}
	return b, nil
}

// Verify checks a bundle (JSON, as cosign writes it) against the digest.
func (v *Verifier) Verify(bundleJSON []byte, digest string) Result {
	if len(bundleJSON) == 0 {
		return Result{Reason: ReasonNoSignature, Message: "the release has no signature bundle"}
	}
	if len(bundleJSON) > MaxBundleBytes {
		return Result{Reason: ReasonInvalidBundle, Message: fmt.Sprintf("the bundle is larger than %d bytes", MaxBundleBytes)}
	}
	b := &bundle.Bundle{}
	if err := b.UnmarshalJSON(bundleJSON); err != nil {
		return Result{Reason: ReasonInvalidBundle, Message: "the bundle is not a Sigstore bundle: " + err.Error()}
	}
	return v.VerifyEntity(b, digest)
}

// VerifyEntity checks a signed entity against the digest: the first key
// or identity that verifies it is named.
func (v *Verifier) VerifyEntity(e verify.SignedEntity, digest string) Result {
	d, err := Digest(digest)
	if err != nil {
		return Result{Reason: ReasonInvalidDigest, Message: err.Error()}
	}
	artifact := verify.WithArtifactDigest("sha256", d)
	var failures []string
	certified := false
	if vc, err := e.VerificationContent(); err == nil && vc.Certificate() != nil {
		certified = true
	}
	switch {
	case certified && v.keyless != nil:
		opts := make([]verify.PolicyOption, 0, len(v.identities))
		for _, id := range v.identities {
			opts = append(opts, verify.WithCertificateIdentity(id))
		}
		res, err := v.keyless.Verify(e, verify.NewPolicy(artifact, opts...))
		if err == nil && !isSignature(res) {
			return notASignature(res)
		}
		if err == nil {
			by := "keyless"
			if res.VerifiedIdentity != nil {
				by = fmt.Sprintf("%s %s", res.VerifiedIdentity.Issuer.Issuer, orRegExp(res.VerifiedIdentity.SubjectAlternativeName.SubjectAlternativeName,
					regexpString(res.VerifiedIdentity)))
			}
			return Result{Verified: true, Reason: ReasonVerified, By: by, Message: "signed by " + by}
		}
		reason := ReasonNotTrusted
		var mismatch *verify.ErrNoMatchingCertificateIdentity
		if errors.As(err, &mismatch) {
			reason = ReasonIdentityMismatch
		}
		return Result{Reason: reason, Message: fmt.Sprintf("keyless: %v (trusted identities: %s)", err, strings.Join(v.names, "; "))}
	case certified:
		return Result{Reason: ReasonNotTrusted, Message: "signed with a certificate, and the policy trusts keys only"}
	}
	for _, k := range v.keys {
		if res, err := k.v.Verify(e, verify.NewPolicy(artifact, verify.WithKey())); err == nil {
			if !isSignature(res) {
				return notASignature(res)
			}
			return Result{Verified: true, Reason: ReasonVerified, By: k.name, Message: "signed by key " + k.name}
		} else {
			failures = append(failures, fmt.Sprintf("%s: %v", k.name, err))
		}
	}
	if len(v.keys) == 0 {
		return Result{Reason: ReasonNotTrusted, Message: "signed with a key, and the policy trusts keyless identities only"}
	}
	return Result{Reason: ReasonNotTrusted, Message: "no trusted key verifies it: " + strings.Join(failures, "; ")}
}

// SignaturePredicate is the in-toto predicate type of cosign's image
// signature as a DSSE statement (cosign v3's --new-bundle-format): the only
// statement that says "this image is signed". An SBOM or a scan result
// names the image as its subject too, and signs something else.
const SignaturePredicate = "https://sigstore.dev/cosign/sign/v1"

// isSignature tells a signature from an attestation: a message signature,
// or a statement of SignaturePredicate.
func isSignature(res *verify.VerificationResult) bool {
	return res.Statement == nil || res.Statement.GetPredicateType() == SignaturePredicate
}

func notASignature(res *verify.VerificationResult) Result {
	return Result{Reason: ReasonNotASignature, Message: fmt.Sprintf(
		"the bundle is an attestation of type %s, not a signature of the image (%s)", res.Statement.GetPredicateType(), SignaturePredicate)}
}

func regexpString(ci *verify.CertificateIdentity) string {
	return ci.SubjectAlternativeName.Regexp.String()
}

// simpleSigning is the part of cosign's simple-signing payload that names
// what was signed.
type simpleSigning struct {
	Critical struct {
		Image struct {
			DockerManifestDigest string `json:"docker-manifest-digest"`
		} `json:"image"`
		Type string `json:"type"`
	} `json:"critical"`
}

// VerifySimpleSigning checks one of cosign's `.sig` signatures: a
// simple-signing payload that names the image's digest, signed by a
// trusted key. (A keyless `.sig` signature keeps its log entry in a form
// this does not read: sign keyless releases with Sigstore bundles.)
func (v *Verifier) VerifySimpleSigning(s SimpleSignature, digest string) Result {
	if _, err := Digest(digest); err != nil {
		return Result{Reason: ReasonInvalidDigest, Message: err.Error()}
	}
	if len(s.Payload) > MaxBundleBytes {
		return Result{Reason: ReasonInvalidBundle, Message: fmt.Sprintf("the signed payload is larger than %d bytes", MaxBundleBytes)}
	}
	var p simpleSigning
	if err := json.Unmarshal(s.Payload, &p); err != nil || p.Critical.Type != "cosign container image signature" {
		return Result{Reason: ReasonInvalidBundle, Message: "the .sig payload is not a cosign simple-signing payload"}
	}
	if _, d, ok := strings.Cut(digest, "@"); ok {
		digest = d
	}
	if p.Critical.Image.DockerManifestDigest != digest {
		return Result{Reason: ReasonNotTrusted, Message: fmt.Sprintf("the .sig payload signs %s, not %s", p.Critical.Image.DockerManifestDigest, digest)}
	}
	if len(v.keys) == 0 {
		return Result{Reason: ReasonNotTrusted, Message: "a .sig signature is verified with keys, and the policy trusts keyless identities only"}
	}
	sum := sha256.Sum256(s.Payload)
	pb := &protobundle.Bundle{MediaType: "application/vnd.dev.sigstore.bundle.v0.3+json",
		VerificationMaterial: &protobundle.VerificationMaterial{Content: &protobundle.VerificationMaterial_PublicKey{
			PublicKey: &protocommon.PublicKeyIdentifier{Hint: "cosign"}}},
		Content: &protobundle.Bundle_MessageSignature{MessageSignature: &protocommon.MessageSignature{
			MessageDigest: &protocommon.HashOutput{Algorithm: protocommon.HashAlgorithm_SHA2_256, Digest: sum[:]},
			Signature:     s.Signature}}}
	b, err := bundle.NewBundle(pb)
	if err != nil {
		return Result{Reason: ReasonInvalidBundle, Message: err.Error()}
	}
	var failures []string
	for _, k := range v.keys {
		if _, err := k.v.Verify(b, verify.NewPolicy(verify.WithArtifact(bytes.NewReader(s.Payload)), verify.WithKey())); err == nil {
			return Result{Verified: true, Reason: ReasonVerified, By: k.name, Message: "signed by key " + k.name + " (a cosign .sig signature)"}
		} else {
			failures = append(failures, fmt.Sprintf("%s: %v", k.name, err))
		}
	}
	return Result{Reason: ReasonNotTrusted, Message: "no trusted key verifies the .sig signature: " + strings.Join(failures, "; ")}
}
