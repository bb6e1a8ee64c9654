package verification_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"strings"
	"testing"

	"github.com/sigstore/protobuf-specs/gen/pb-go/common/v1"
	"github.com/sigstore/sigstore-go/pkg/root"
	"github.com/sigstore/sigstore-go/pkg/sign"
	"github.com/sigstore/sigstore-go/pkg/testing/ca"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/trainyard-dev/trainyard/internal/verification"
)

// manifest stands for an image manifest: its sha256 is the image's digest.
func manifest(version string) ([]byte, string) {
	m := []byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","annotations":{"version":"` + version + `"}}`)
	sum := sha256.Sum256(m)
	return m, "sha256:" + hex.EncodeToString(sum[:])
}

// keypair is a key made in the test, as `cosign generate-key-pair` makes one.
type keypair struct {
	priv *ecdsa.PrivateKey
}

func newKeypair(t *testing.T) *keypair {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return &keypair{priv: k}
}

func (k *keypair) pem(t *testing.T) []byte {
	t.Helper()
	b, err := cryptoutils.MarshalPublicKeyToPEM(k.priv.Public())
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func (k *keypair) GetHashAlgorithm() v1.HashAlgorithm { return v1.HashAlgorithm_SHA2_256 }
func (k *keypair) GetSigningAlgorithm() v1.PublicKeyDetails {
	return v1.PublicKeyDetails_PKIX_ECDSA_P256_SHA_256
}
func (k *keypair) GetHint() []byte                { return []byte("test-key") }
func (k *keypair) GetKeyAlgorithm() string        { return "ECDSA" }
func (k *keypair) GetPublicKey() crypto.PublicKey { return k.priv.Public() }
func (k *keypair) GetPublicKeyPem() (string, error) {
	b, err := cryptoutils.MarshalPublicKeyToPEM(k.priv.Public())
	return string(b), err
}
func (k *keypair) SignData(_ context.Context, data []byte) ([]byte, []byte, error) {
	sum := sha256.Sum256(data)
	sig, err := ecdsa.SignASN1(rand.Reader, k.priv, sum[:])
	return sig, sum[:], err
}

// signBlob is `cosign sign-blob --key --bundle --new-bundle-format
// --tlog-upload=false` over the manifest: a bundle JSON, made offline.
func signBlob(t *testing.T, k *keypair, artifact []byte) []byte {
	t.Helper()
	pb, err := sign.Bundle(&sign.PlainData{Data: artifact}, k, sign.BundleOptions{})
	if err != nil {
		t.Fatal(err)
	}
	b, err := protojson.Marshal(pb)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestKeyBased(t *testing.T) {
	good, other := newKeypair(t), newKeypair(t)
	m120, d120 := manifest("1.2.0")
	_, d130 := manifest("1.3.0")
	v, err := verification.New(verification.Material{Keys: []verification.Key{{Name: "cosign-pub/cosign.pub", PEM: good.pem(t)}}})
	if err != nil {
		t.Fatal(err)
	}
	b := signBlob(t, good, m120)
	if r := v.Verify(b, "registry.example/app@"+d120); !r.Verified || r.By != "cosign-pub/cosign.pub" {
		t.Errorf("signed 1.2.0: %+v", r)
	}
	for name, tc := range map[string]struct {
		bundle []byte
		digest string
		reason string
	}{
		"another image's digest": {b, d130, verification.ReasonNotTrusted},
		"signed by another key":  {signBlob(t, other, m120), d120, verification.ReasonNotTrusted},
		"no bundle":              {nil, d120, verification.ReasonNoSignature},
		"not a bundle":           {[]byte(`{"mediaType":"text/plain"}`), d120, verification.ReasonInvalidBundle},
		"a tag, not a digest":    {b, "registry.example/app:1.2.0", verification.ReasonInvalidDigest},
		"too large":              {make([]byte, verification.MaxBundleBytes+1), d120, verification.ReasonInvalidBundle},
	} {
		if r := v.Verify(tc.bundle, tc.digest); r.Verified || r.Reason != tc.reason || r.Message == "" {
			t.Errorf("%s: %+v, want reason %s", name, r, tc.reason)
		}
	}
	// A key-only policy does not accept a certificate, and the other way round.
	keyless := virtual(t)
	entity, err := keyless.vs.Sign("https://github.com/example/app/.github/workflows/release.yml@refs/heads/main",
		"https://token.actions.githubusercontent.com", m120)
	if err != nil {
		t.Fatal(err)
	}
	if r := v.VerifyEntity(entity, d120); r.Verified || !strings.Contains(r.Message, "trusts keys only") {
		t.Errorf("keyless bundle, key policy: %+v", r)
	}
	// Rotation: the new key verifies what it signed; both keys listed, both verify.
	rotated, err := verification.New(verification.Material{Keys: []verification.Key{
		{Name: "old", PEM: good.pem(t)}, {Name: "new", PEM: other.pem(t)}}})
	if err != nil {
		t.Fatal(err)
	}
	if r := rotated.Verify(signBlob(t, other, m120), d120); !r.Verified || r.By != "new" {
		t.Errorf("rotated: %+v", r)
	}
}

// virtualSigstore is sigstore-go's virtual Sigstore, and its trusted root
// as the JSON a Secret would hold.
type virtualSigstore struct {
	vs   *ca.VirtualSigstore
	root []byte
}

func virtual(t *testing.T) virtualSigstore {
	t.Helper()
	vs, err := ca.NewVirtualSigstore()
	if err != nil {
		t.Fatal(err)
	}
	tr, err := root.NewTrustedRoot(root.TrustedRootMediaType01, vs.FulcioCertificateAuthorities(), logs(t, vs.CTLogs()),
		vs.TimestampingAuthorities(), logs(t, vs.RekorLogs()))
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(tr)
	if err != nil {
		t.Fatal(err)
	}
	return virtualSigstore{vs: vs, root: b}
}

// logs are the virtual Sigstore's logs as a trusted root names them: its
// IDs are the hex text of the key IDs, which a trusted root holds as bytes.
func logs(t *testing.T, in map[string]*root.TransparencyLog) map[string]*root.TransparencyLog {
	t.Helper()
	out := map[string]*root.TransparencyLog{}
	for id, l := range in {
		c := *l
		b, err := hex.DecodeString(id)
		if err != nil {
			t.Fatal(err)
		}
		c.ID = b
		out[id] = &c
	}
	return out
}

func TestKeyless(t *testing.T) {
	s := virtual(t)
	const issuer = "https://token.actions.githubusercontent.com"
	const subject = "https://github.com/example/app/.github/workflows/release.yml@refs/heads/main"
	m120, d120 := manifest("1.2.0")
	m131, d131 := manifest("1.3.1")
	v, err := verification.New(verification.Material{TrustedRoot: s.root,
		Identities:   []verification.Identity{{Issuer: issuer, SubjectRegExp: `^https://github\.com/example/app/`}},
		Requirements: verification.Requirements{TransparencyLog: 1}})
	if err != nil {
		t.Fatal(err)
	}
	signed, err := s.vs.Sign(subject, issuer, m120)
	if err != nil {
		t.Fatal(err)
	}
	if r := v.VerifyEntity(signed, d120); !r.Verified || !strings.Contains(r.By, issuer) {
		t.Errorf("signed 1.2.0: %+v", r)
	}
	wrong, err := s.vs.Sign("https://github.com/mallory/app/.github/workflows/release.yml@refs/heads/main", issuer, m131)
	if err != nil {
		t.Fatal(err)
	}
	if r := v.VerifyEntity(wrong, d131); r.Verified || r.Reason != verification.ReasonIdentityMismatch {
		t.Errorf("1.3.1 by the wrong identity: %+v", r)
	}
	// Another Sigstore (another root) is not trusted.
	elsewhere := virtual(t)
	foreign, err := elsewhere.vs.Sign(subject, issuer, m120)
	if err != nil {
		t.Fatal(err)
	}
	if r := v.VerifyEntity(foreign, d120); r.Verified || r.Reason != verification.ReasonNotTrusted {
		t.Errorf("another root: %+v", r)
	}
	// A key-signed bundle under a keyless-only policy.
	if r := v.Verify(signBlob(t, newKeypair(t), m120), d120); r.Verified || !strings.Contains(r.Message, "keyless identities only") {
		t.Errorf("key bundle, keyless policy: %+v", r)
	}
	// Requiring more signed timestamps than the entity carries (one) fails.
	strict, err := verification.New(verification.Material{TrustedRoot: s.root,
		Identities:   []verification.Identity{{Issuer: issuer, Subject: subject}},
		Requirements: verification.Requirements{TransparencyLog: 1, SignedTimestamps: 2}})
	if err != nil {
		t.Fatal(err)
	}
	if r := strict.VerifyEntity(signed, d120); r.Verified || !strings.Contains(r.Message, "timestamp") {
		t.Errorf("one signed timestamp, two required: %+v", r)
	}
}

func TestNewRefusesWhatCannotWork(t *testing.T) {
	for name, m := range map[string]verification.Material{
		"nothing trusted":                {},
		"not a key":                      {Keys: []verification.Key{{Name: "s/k", PEM: []byte("hello")}}},
		"a root without identities":      {TrustedRoot: virtual(t).root},
		"not a trusted root":             {TrustedRoot: []byte(`{}`), Identities: []verification.Identity{{Issuer: "i", Subject: "s"}}},
		"keyless without a time source":  {TrustedRoot: virtual(t).root, Identities: []verification.Identity{{Issuer: "i", Subject: "s"}}},
		"an identity whose regexp fails": {TrustedRoot: virtual(t).root, Identities: []verification.Identity{{Issuer: "i", SubjectRegExp: "("}}, Requirements: verification.Requirements{TransparencyLog: 1}},
	} {
		if _, err := verification.New(m); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}
