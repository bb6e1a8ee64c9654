package verification

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// What a registry is asked for is bounded: how many signatures of an image
// are read, and how large each may be.
const (
	MaxRegistrySignatures = 8
	// DefaultRegistryTimeout bounds one Fetch when the policy says nothing.
	DefaultRegistryTimeout = 10 * time.Second
)

// MaxRegistryBody bounds any one answer of a registry (a referrers index, a
// manifest): go-containerregistry would read manifests of up to 100 MiB.
const MaxRegistryBody = 4 << 20

// LimitBodies makes rt's response bodies fail past limit bytes.
func LimitBodies(rt http.RoundTripper, limit int64) http.RoundTripper {
	return limitedBodies{rt: rt, limit: limit}
}

type limitedBodies struct {
	rt    http.RoundTripper
	limit int64
}

func (l limitedBodies) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := l.rt.RoundTrip(req)
	if err != nil || resp.Body == nil {
		return resp, err
	}
	if resp.ContentLength > l.limit {
		resp.Body.Close()
		return nil, fmt.Errorf("%s answered %d bytes, more than %d", req.URL.Host, resp.ContentLength, l.limit)
	}
	resp.Body = &limitedBody{rc: resp.Body, left: l.limit}
	return resp, nil
}

type limitedBody struct {
	rc   io.ReadCloser
	left int64
}

func (b *limitedBody) Read(p []byte) (int, error) {
	if b.left <= 0 {
		return 0, errors.New("the registry's answer is larger than allowed")
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.rc.Read(p)
	b.left -= int64(n)
	return n, err
}

func (b *limitedBody) Close() error { return b.rc.Close() }

// Terse is a fetch error without what the registry answered in its body:
// the error goes into a release's condition, which a release's editor
// reads, and the registry may be an in-cluster service.
func Terse(err error) error {
	if err == nil {
		return nil
	}
	var te *transport.Error
	if errors.As(err, &te) {
		return fmt.Errorf("the registry answered HTTP %d", te.StatusCode)
	}
	msg := err.Error()
	if len(msg) > 200 {
		msg = msg[:200] + "…"
	}
	return errors.New(msg)
}

// Signatures are what a registry holds for an image digest: Sigstore
// bundles (OCI referrers, as cosign v3 writes them) and cosign's older
// `.sig` tag signatures (a simple-signing payload and its signature).
type Signatures struct {
	Bundles [][]byte
	Simple  []SimpleSignature
}

// Fingerprint is the signatures' bytes in order, for a cache key.
func (s Signatures) Fingerprint() []byte {
	var b []byte
	for _, x := range s.Bundles {
		b = append(append(b, x...), 0)
	}
	for _, x := range s.Simple {
		b = append(append(append(append(b, x.Payload...), 0), x.Signature...), 0)
	}
	return b
}

// SimpleSignature is one layer of a cosign `.sig` image.
type SimpleSignature struct {
	Payload, Signature []byte
}

// Credentials for a private registry: a username and password (or an
// auth token as a dockerconfigjson's "auth" holds it).
type Credentials struct {
	Username, Password, Auth string
}

const bundleMediaTypePrefix = "application/vnd.dev.sigstore.bundle"

// cosign's `.sig` layer annotation that holds the signature (base64).
const cosignSignatureAnnotation = "dev.cosignproject.cosign/signature"

// Fetch reads the signatures of image (which must name a digest) from its
// registry through rt (nil: http.DefaultTransport), within timeout: the
// referrers that are Sigstore bundles, and the `.sig` tag. Nothing it
// reads is trusted: the Verifier decides.
func Fetch(ctx context.Context, image string, timeout time.Duration, creds *Credentials, rt http.RoundTripper) (Signatures, error) {
	if rt == nil {
		rt = http.DefaultTransport
	}
	var out Signatures
	ref, err := name.NewDigest(image)
	if err != nil {
		return out, fmt.Errorf("%q does not name a digest: %w", image, err)
	}
	if timeout <= 0 {
		timeout = DefaultRegistryTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	opts := []remote.Option{remote.WithContext(ctx), remote.WithTransport(rt), remote.WithReferrersTagFallback(true)}
	if creds != nil {
		opts = append(opts, remote.WithAuth(authn.FromConfig(authn.AuthConfig{Username: creds.Username, Password: creds.Password, Auth: creds.Auth})))
	}
	var errs []error
	if idx, err := remote.Referrers(ref, opts...); err != nil {
		errs = append(errs, fmt.Errorf("referrers: %w", err))
	} else if im, err := idx.IndexManifest(); err != nil {
		errs = append(errs, fmt.Errorf("referrers: %w", err))
	} else {
		for _, d := range im.Manifests {
			if len(out.Bundles) == MaxRegistrySignatures {
				break
			}
			if !strings.HasPrefix(d.ArtifactType, bundleMediaTypePrefix) {
				continue
			}
			b, err := bundleOf(ref.Context().Digest(d.Digest.String()), opts)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			out.Bundles = append(out.Bundles, b)
		}
	}
	sigTag := ref.Context().Tag(strings.Replace(ref.DigestStr(), ":", "-", 1) + ".sig")
	if img, err := remote.Image(sigTag, opts...); err == nil {
		out.Simple, err = simpleSignatures(img)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", sigTag, err))
		}
	} else if !notFound(err) {
		errs = append(errs, fmt.Errorf("%s: %w", sigTag, err))
	}
	if len(out.Bundles) == 0 && len(out.Simple) == 0 && len(errs) > 0 {
		return out, errors.Join(errs...)
	}
	return out, nil
}

func notFound(err error) bool {
	var te interface{ Error() string }
	return errors.As(err, &te) && (strings.Contains(err.Error(), "MANIFEST_UNKNOWN") || strings.Contains(err.Error(), "NAME_UNKNOWN") ||
		strings.Contains(err.Error(), "404"))
}

// bundleOf reads the bundle layer of a referrer artifact.
func bundleOf(ref name.Digest, opts []remote.Option) ([]byte, error) {
	img, err := remote.Image(ref, opts...)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", ref, err)
	}
	m, err := img.Manifest()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", ref, err)
	}
	for _, l := range m.Layers {
		if !strings.HasPrefix(string(l.MediaType), bundleMediaTypePrefix) && len(m.Layers) > 1 {
			continue
		}
		return readLayer(img, l, MaxBundleBytes)
	}
	return nil, fmt.Errorf("%s: no bundle layer", ref)
}

// simpleSignatures reads a `.sig` image's layers: each a payload, with its
// signature in an annotation.
func simpleSignatures(img v1.Image) ([]SimpleSignature, error) {
	m, err := img.Manifest()
	if err != nil {
		return nil, err
	}
	var out []SimpleSignature
	for _, l := range m.Layers {
		if len(out) == MaxRegistrySignatures {
			break
		}
		sig, err := base64.StdEncoding.DecodeString(l.Annotations[cosignSignatureAnnotation])
		if err != nil || len(sig) == 0 {
			continue
		}
		payload, err := readLayer(img, l, MaxBundleBytes)
		if err != nil {
			return nil, err
		}
		out = append(out, SimpleSignature{Payload: payload, Signature: sig})
	}
	return out, nil
}

// readLayer reads a layer of at most limit bytes: a larger one (by its
// descriptor or by what arrives) is refused before it is read whole.
func readLayer(img v1.Image, d v1.Descriptor, limit int64) ([]byte, error) {
	if d.Size > limit {
		return nil, fmt.Errorf("layer %s is %d bytes, more than %d", d.Digest, d.Size, limit)
	}
	l, err := img.LayerByDigest(d.Digest)
	if err != nil {
		return nil, err
	}
	rc, err := l.Compressed()
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("layer %s is more than %d bytes", d.Digest, limit)
	}
	return b, nil
}

// DockerConfigCredentials are the credentials a kubernetes.io/dockerconfigjson
// Secret's data holds for the image's registry (nil when none).
func DockerConfigCredentials(dockerConfigJSON []byte, image string) (*Credentials, error) {
	ref, err := name.ParseReference(image)
	if err != nil {
		return nil, err
	}
	var cfg struct {
		Auths map[string]Credentials `json:"auths"`
	}
	if err := json.Unmarshal(dockerConfigJSON, &cfg); err != nil {
		return nil, fmt.Errorf("not a .dockerconfigjson: %w", err)
	}
	host := ref.Context().RegistryStr()
	for k, c := range cfg.Auths {
		k = strings.TrimPrefix(strings.TrimPrefix(k, "https://"), "http://")
		if strings.TrimSuffix(k, "/") == host || strings.HasPrefix(k, host+"/") {
			c := c
			return &c, nil
		}
	}
	return nil, nil
}
