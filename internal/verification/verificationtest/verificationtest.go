// Package verificationtest makes what verification tests and benchmarks
// need, offline: ECDSA keys as `cosign generate-key-pair` makes them, and
// Sigstore bundles that sign an image manifest's digest with them, as
// `cosign sign-blob --key --bundle --new-bundle-format --tlog-upload=false`
// writes them. Not for production: nothing here is protected.
package verificationtest

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http/httptest"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	ggcrv1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
	protobundle "github.com/sigstore/protobuf-specs/gen/pb-go/bundle/v1"
	v1 "github.com/sigstore/protobuf-specs/gen/pb-go/common/v1"
	"github.com/sigstore/sigstore-go/pkg/root"
	"github.com/sigstore/sigstore-go/pkg/sign"
	"github.com/sigstore/sigstore-go/pkg/testing/ca"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"google.golang.org/protobuf/encoding/protojson"
)

// Manifest stands for an image manifest of a version: its sha256 is the
// image's digest ("sha256:…").
func Manifest(version string) (manifest []byte, digest string) {
	m := []byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","annotations":{"org.opencontainers.image.version":"` + version + `"}}`)
	sum := sha256.Sum256(m)
	return m, "sha256:" + hex.EncodeToString(sum[:])
}

// Key is a signing key made in the test.
type Key struct{ priv *ecdsa.PrivateKey }

// NewKey makes a P-256 key.
func NewKey() (*Key, error) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	return &Key{priv: k}, nil
}

// PEM is the public key, as cosign.pub holds it.
func (k *Key) PEM() []byte {
	b, err := cryptoutils.MarshalPublicKeyToPEM(k.priv.Public())
	if err != nil {
		panic(err) // a P-256 key always marshals
	}
	return b
}

// Sign is a bundle (JSON) signing the manifest.
func (k *Key) Sign(manifest []byte) ([]byte, error) {
	pb, err := sign.Bundle(&sign.PlainData{Data: manifest}, keypair{k.priv}, sign.BundleOptions{})
	if err != nil {
		return nil, fmt.Errorf("signing: %w", err)
	}
	return protojson.Marshal(pb)
}

// keypair is sigstore-go's signing interface over the key.
type keypair struct{ priv *ecdsa.PrivateKey }

func (keypair) GetHashAlgorithm() v1.HashAlgorithm { return v1.HashAlgorithm_SHA2_256 }
func (keypair) GetSigningAlgorithm() v1.PublicKeyDetails {
	return v1.PublicKeyDetails_PKIX_ECDSA_P256_SHA_256
}
func (keypair) GetHint() []byte                  { return []byte("test-key") }
func (keypair) GetKeyAlgorithm() string          { return "ECDSA" }
func (k keypair) GetPublicKey() crypto.PublicKey { return k.priv.Public() }
func (k keypair) GetPublicKeyPem() (string, error) {
	b, err := cryptoutils.MarshalPublicKeyToPEM(k.priv.Public())
	return string(b), err
}
func (k keypair) SignData(_ context.Context, data []byte) ([]byte, []byte, error) {
	sum := sha256.Sum256(data)
	sig, err := ecdsa.SignASN1(rand.Reader, k.priv, sum[:])
	return sig, sum[:], err
}

// Sigstore is sigstore-go's virtual Sigstore (a Fulcio CA, a transparency
// log and a timestamping authority, all in memory) and its trusted root, as
// the JSON a Secret would hold: keyless signing, offline.
type Sigstore struct {
	vs *ca.VirtualSigstore
	// Root is the trusted_root.json of this Sigstore.
	Root []byte
}

// NewSigstore starts a virtual Sigstore.
func NewSigstore() (*Sigstore, error) {
	vs, err := ca.NewVirtualSigstore()
	if err != nil {
		return nil, err
	}
	logs := func(in map[string]*root.TransparencyLog) (map[string]*root.TransparencyLog, error) {
		// The virtual logs' IDs are the hex text of their key IDs, which a
		// trusted root holds as bytes.
		out := map[string]*root.TransparencyLog{}
		for id, l := range in {
			c := *l
			b, err := hex.DecodeString(id)
			if err != nil {
				return nil, err
			}
			c.ID = b
			out[id] = &c
		}
		return out, nil
	}
	ct, err := logs(vs.CTLogs())
	if err != nil {
		return nil, err
	}
	rekor, err := logs(vs.RekorLogs())
	if err != nil {
		return nil, err
	}
	tr, err := root.NewTrustedRoot(root.TrustedRootMediaType01, vs.FulcioCertificateAuthorities(), ct, vs.TimestampingAuthorities(), rekor)
	if err != nil {
		return nil, err
	}
	b, err := json.Marshal(tr)
	if err != nil {
		return nil, err
	}
	return &Sigstore{vs: vs, Root: b}, nil
}

// Sign is a keyless bundle (JSON) over the manifest: a certificate the
// virtual Fulcio issued to identity (the SAN) from issuer (the OIDC
// issuer), and a signed timestamp from the virtual TSA (no log entry: a
// policy needs signedTimestamps.threshold 1 for it).
func (s *Sigstore) Sign(identity, issuer string, manifest []byte) ([]byte, error) {
	cert, priv, err := s.vs.GenerateLeafCert(identity, issuer)
	if err != nil {
		return nil, err
	}
	k, ok := priv.(*ecdsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("the virtual Fulcio made a %T key", priv)
	}
	pb, err := sign.Bundle(&sign.PlainData{Data: manifest}, keypair{k}, sign.BundleOptions{CertificateProvider: fixedCert(cert.Raw)})
	if err != nil {
		return nil, fmt.Errorf("signing: %w", err)
	}
	ts, err := s.vs.TimestampResponse(pb.GetMessageSignature().GetSignature())
	if err != nil {
		return nil, err
	}
	pb.VerificationMaterial.TimestampVerificationData = &protobundle.TimestampVerificationData{
		Rfc3161Timestamps: []*v1.RFC3161SignedTimestamp{{SignedTimestamp: ts}}}
	return protojson.Marshal(pb)
}

// fixedCert hands sign.Bundle a certificate already issued.
type fixedCert []byte

func (c fixedCert) GetCertificate(context.Context, sign.Keypair, *sign.CertificateProviderOptions) ([]byte, error) {
	return c, nil
}

// SignSimple is a cosign `.sig` signature of the image digest: the
// simple-signing payload and its signature (ASN.1 ECDSA over its SHA-256).
func (k *Key) SignSimple(image, digest string) (payload, signature []byte, err error) {
	payload = []byte(`{"critical":{"identity":{"docker-reference":"` + image + `"},"image":{"docker-manifest-digest":"` + digest +
		`"},"type":"cosign container image signature"},"optional":null}`)
	sum := sha256.Sum256(payload)
	signature, err = ecdsa.SignASN1(rand.Reader, k.priv, sum[:])
	return payload, signature, err
}

// Registry is go-containerregistry's in-memory registry, served on
// loopback.
type Registry struct {
	srv *httptest.Server
	// Host is its address, as an image reference names it.
	Host string
}

// NewRegistry serves a registry until Close.
func NewRegistry() *Registry {
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	return &Registry{srv: srv, Host: strings.TrimPrefix(srv.URL, "http://")}
}

// Close stops it.
func (r *Registry) Close() { r.srv.Close() }

// Push pushes a small random image as repo:tag, and returns its reference
// by digest and its manifest (whose sha256 is the digest: what a bundle
// signs).
func (r *Registry) Push(repo, tag string) (name.Digest, []byte, error) {
	img, err := random.Image(64, 1)
	if err != nil {
		return name.Digest{}, nil, err
	}
	t, err := name.NewTag(r.Host + "/" + repo + ":" + tag)
	if err != nil {
		return name.Digest{}, nil, err
	}
	if err := remote.Write(t, img); err != nil {
		return name.Digest{}, nil, err
	}
	d, err := img.Digest()
	if err != nil {
		return name.Digest{}, nil, err
	}
	raw, err := img.RawManifest()
	return t.Context().Digest(d.String()), raw, err
}

// Refer pushes a bundle as cosign v3 does: an OCI artifact whose subject
// is the image.
func (r *Registry) Refer(ref name.Digest, bundle []byte) error {
	desc, err := remote.Head(ref)
	if err != nil {
		return err
	}
	const bundleType = "application/vnd.dev.sigstore.bundle.v0.3+json"
	art := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), bundleType)
	art, err = mutate.Append(art, mutate.Addendum{Layer: static.NewLayer(bundle, bundleType)})
	if err != nil {
		return err
	}
	art = mutate.Subject(art, *desc).(ggcrv1.Image)
	d, err := art.Digest()
	if err != nil {
		return err
	}
	return remote.Write(ref.Context().Digest(d.String()), art)
}

// SigTag pushes a cosign (v2) `.sig` image for the digest.
func (r *Registry) SigTag(ref name.Digest, payload, signature []byte) error {
	img, err := mutate.Append(mutate.MediaType(empty.Image, types.OCIManifestSchema1), mutate.Addendum{
		Layer:       static.NewLayer(payload, "application/vnd.dev.cosign.simplesigning.v1+json"),
		Annotations: map[string]string{"dev.cosignproject.cosign/signature": base64.StdEncoding.EncodeToString(signature)}})
	if err != nil {
		return err
	}
	return remote.Write(ref.Context().Tag(strings.Replace(ref.DigestStr(), ":", "-", 1)+".sig"), img)
}

// Attest is a DSSE bundle of an in-toto statement about the image digest
// ("sha256:…") with predicateType, as `cosign attest --new-bundle-format`
// writes one (an SBOM, a scan result), or cosign's own signature statement.
func (k *Key) Attest(digest, predicateType string) ([]byte, error) {
	_, hexDigest, _ := strings.Cut(digest, ":")
	statement := []byte(`{"_type":"https://in-toto.io/Statement/v1","subject":[{"name":"registry.example/app","digest":{"sha256":"` +
		hexDigest + `"}}],"predicateType":"` + predicateType + `","predicate":{}}`)
	pb, err := sign.Bundle(&sign.DSSEData{Data: statement, PayloadType: "application/vnd.in-toto+json"}, keypair{k.priv}, sign.BundleOptions{})
	if err != nil {
		return nil, fmt.Errorf("attesting: %w", err)
	}
	return protojson.Marshal(pb)
}
