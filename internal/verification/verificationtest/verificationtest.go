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
	"encoding/hex"
	"fmt"

	v1 "github.com/sigstore/protobuf-specs/gen/pb-go/common/v1"
	"github.com/sigstore/sigstore-go/pkg/sign"
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
