package verification_test

import (
	"strings"
	"testing"

	"github.com/trainyard-dev/trainyard/internal/verification"
	"github.com/trainyard-dev/trainyard/internal/verification/verificationtest"
)

func key(t *testing.T) *verificationtest.Key {
	t.Helper()
	k, err := verificationtest.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// signBlob is `cosign sign-blob --key --bundle --new-bundle-format
// --tlog-upload=false` over the manifest: a bundle JSON, made offline.
func signBlob(t *testing.T, k *verificationtest.Key, artifact []byte) []byte {
	t.Helper()
	b, err := k.Sign(artifact)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func sigstore(t *testing.T) *verificationtest.Sigstore {
	t.Helper()
	s, err := verificationtest.NewSigstore()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

const (
	issuer  = "https://token.actions.githubusercontent.com"
	subject = "https://github.com/example/app/.github/workflows/release.yml@refs/tags/v1.2.0"
)

func TestKeyBased(t *testing.T) {
	good, other := key(t), key(t)
	m120, d120 := verificationtest.Manifest("1.2.0")
	_, d130 := verificationtest.Manifest("1.3.0")
	v, err := verification.New(verification.Material{Keys: []verification.Key{{Name: "cosign-pub/cosign.pub", PEM: good.PEM()}}})
	if err != nil {
		t.Fatal(err)
	}
	b := signBlob(t, good, m120)
	if r := v.Verify(b, "registry.example/app@"+d120); !r.Verified || r.By != "cosign-pub/cosign.pub" {
		t.Errorf("signed 1.2.0: %+v", r)
	}
	keyless, err := sigstore(t).Sign(subject, issuer, m120)
	if err != nil {
		t.Fatal(err)
	}
	for name, tc := range map[string]struct {
		bundle []byte
		digest string
		reason string
	}{
		"another image's digest":   {b, d130, verification.ReasonNotTrusted},
		"signed by another key":    {signBlob(t, other, m120), d120, verification.ReasonNotTrusted},
		"no bundle":                {nil, d120, verification.ReasonNoSignature},
		"not a bundle":             {[]byte(`{"mediaType":"text/plain"}`), d120, verification.ReasonInvalidBundle},
		"a tag, not a digest":      {b, "registry.example/app:1.2.0", verification.ReasonInvalidDigest},
		"too large":                {make([]byte, verification.MaxBundleBytes+1), d120, verification.ReasonInvalidBundle},
		"a certificate, keys only": {keyless, d120, verification.ReasonNotTrusted},
	} {
		if r := v.Verify(tc.bundle, tc.digest); r.Verified || r.Reason != tc.reason || r.Message == "" {
			t.Errorf("%s: %+v, want reason %s", name, r, tc.reason)
		}
	}
	// Rotation: both keys listed, the new one verifies what it signed.
	rotated, err := verification.New(verification.Material{Keys: []verification.Key{
		{Name: "old", PEM: good.PEM()}, {Name: "new", PEM: other.PEM()}}})
	if err != nil {
		t.Fatal(err)
	}
	if r := rotated.Verify(signBlob(t, other, m120), d120); !r.Verified || r.By != "new" {
		t.Errorf("rotated: %+v", r)
	}
}

func TestKeyless(t *testing.T) {
	s := sigstore(t)
	m120, d120 := verificationtest.Manifest("1.2.0")
	m131, d131 := verificationtest.Manifest("1.3.1")
	v, err := verification.New(verification.Material{TrustedRoot: s.Root,
		Identities:   []verification.Identity{{Issuer: issuer, SubjectRegExp: `^https://github\.com/example/app/`}},
		Requirements: verification.Requirements{SignedTimestamps: 1}})
	if err != nil {
		t.Fatal(err)
	}
	signed, err := s.Sign(subject, issuer, m120)
	if err != nil {
		t.Fatal(err)
	}
	if r := v.Verify(signed, d120); !r.Verified || !strings.Contains(r.By, issuer) {
		t.Errorf("signed 1.2.0: %+v", r)
	}
	wrong, err := s.Sign("https://github.com/mallory/app/.github/workflows/release.yml@refs/tags/v1.3.1", issuer, m131)
	if err != nil {
		t.Fatal(err)
	}
	if r := v.Verify(wrong, d131); r.Verified || r.Reason != verification.ReasonIdentityMismatch {
		t.Errorf("1.3.1 by the wrong identity: %+v", r)
	}
	// Another Sigstore (another root) is not trusted.
	foreign, err := sigstore(t).Sign(subject, issuer, m120)
	if err != nil {
		t.Fatal(err)
	}
	if r := v.Verify(foreign, d120); r.Verified || r.Reason != verification.ReasonNotTrusted {
		t.Errorf("another root: %+v", r)
	}
	// A key-signed bundle under a keyless-only policy.
	if r := v.Verify(signBlob(t, key(t), m120), d120); r.Verified || !strings.Contains(r.Message, "keyless identities only") {
		t.Errorf("key bundle, keyless policy: %+v", r)
	}
	// Requiring a log entry the bundle does not carry fails.
	strict, err := verification.New(verification.Material{TrustedRoot: s.Root,
		Identities:   []verification.Identity{{Issuer: issuer, Subject: subject}},
		Requirements: verification.Requirements{TransparencyLog: 1, SignedTimestamps: 1}})
	if err != nil {
		t.Fatal(err)
	}
	if r := strict.Verify(signed, d120); r.Verified || !strings.Contains(r.Message, "log") {
		t.Errorf("no log entry, one required: %+v", r)
	}
}

func TestNewRefusesWhatCannotWork(t *testing.T) {
	root := sigstore(t).Root
	for name, m := range map[string]verification.Material{
		"nothing trusted":               {},
		"not a key":                     {Keys: []verification.Key{{Name: "s/k", PEM: []byte("hello")}}},
		"a root without identities":     {TrustedRoot: root},
		"not a trusted root":            {TrustedRoot: []byte(`{}`), Identities: []verification.Identity{{Issuer: "i", Subject: "s"}}},
		"keyless without a time source": {TrustedRoot: root, Identities: []verification.Identity{{Issuer: "i", Subject: "s"}}},
		"an identity whose regexp fails": {TrustedRoot: root, Identities: []verification.Identity{{Issuer: "i", SubjectRegExp: "("}},
			Requirements: verification.Requirements{TransparencyLog: 1}},
	} {
		if _, err := verification.New(m); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

// A statement signed by a trusted key is a signature only when it says so:
// an SBOM about the image is not a signature of it.
func TestAttestationsAreNotSignatures(t *testing.T) {
	k := key(t)
	_, d := verificationtest.Manifest("1.2.0")
	v, err := verification.New(verification.Material{Keys: []verification.Key{{Name: "k", PEM: k.PEM()}}})
	if err != nil {
		t.Fatal(err)
	}
	sbom, err := k.Attest(d, "https://cyclonedx.org/bom")
	if err != nil {
		t.Fatal(err)
	}
	if r := v.Verify(sbom, d); r.Verified || r.Reason != verification.ReasonNotASignature {
		t.Errorf("an SBOM: %+v", r)
	}
	signed, err := k.Attest(d, verification.SignaturePredicate)
	if err != nil {
		t.Fatal(err)
	}
	if r := v.Verify(signed, d); !r.Verified {
		t.Errorf("cosign's signature statement: %+v", r)
	}
	_, other := verificationtest.Manifest("9.9.9")
	if r := v.Verify(signed, other); r.Verified {
		t.Errorf("a statement about another digest: %+v", r)
	}
}

// A key's signature can be required to come with a log entry only under a
// trusted root, whose logs verify it.
func TestKeysWithALogNeedARoot(t *testing.T) {
	k := key(t)
	if _, err := verification.New(verification.Material{Keys: []verification.Key{{Name: "k", PEM: k.PEM()}},
		Requirements: verification.Requirements{TransparencyLog: 1}}); err == nil || !strings.Contains(err.Error(), "needs a trusted root") {
		t.Errorf("no root: %v", err)
	}
	v, err := verification.New(verification.Material{Keys: []verification.Key{{Name: "k", PEM: k.PEM()}}, TrustedRoot: sigstore(t).Root,
		Requirements: verification.Requirements{TransparencyLog: 1}})
	if err != nil {
		t.Fatal(err)
	}
	m, d := verificationtest.Manifest("1.2.0")
	if r := v.Verify(signBlob(t, k, m), d); r.Verified || !strings.Contains(r.Message, "log") {
		t.Errorf("no log entry, one required: %+v", r)
	}
}
