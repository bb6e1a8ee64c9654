package verification_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"

	"github.com/trainyard-dev/trainyard/internal/verification"
	"github.com/trainyard-dev/trainyard/internal/verification/verificationtest"
)

func must[T any](t *testing.T, v T, err error) T {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestFetchFromARegistry(t *testing.T) {
	reg := verificationtest.NewRegistry()
	defer reg.Close()
	push := func(repo string) (name.Digest, []byte) {
		t.Helper()
		ref, manifest, err := reg.Push(repo, "1.2.0")
		return must(t, ref, err), manifest
	}
	k, other := key(t), key(t)
	v, err := verification.New(verification.Material{Keys: []verification.Key{{Name: "cosign-pub/cosign.pub", PEM: k.PEM()}}})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	// cosign v3: a bundle as an OCI referrer.
	ref, manifest := push("app")
	must(t, 0, reg.Refer(ref, signBlob(t, k, manifest)))
	got, err := verification.Fetch(ctx, ref.String(), 5*time.Second, nil, nil)
	if err != nil || len(got.Bundles) != 1 || len(got.Simple) != 0 {
		t.Fatalf("referrers: %+v, %v", got, err)
	}
	if r := v.Verify(got.Bundles[0], ref.String()); !r.Verified {
		t.Errorf("the referrer's bundle: %+v", r)
	}

	// cosign v2: a .sig tag; by the trusted key, and by another.
	ref2, _ := push("legacy")
	payload, sig, err := k.SignSimple(ref2.Context().String(), ref2.DigestStr())
	if err != nil {
		t.Fatal(err)
	}
	must(t, 0, reg.SigTag(ref2, payload, sig))
	got, err = verification.Fetch(ctx, ref2.String(), 5*time.Second, nil, nil)
	if err != nil || len(got.Simple) != 1 || len(got.Bundles) != 0 {
		t.Fatalf(".sig: %+v, %v", got, err)
	}
	if r := v.VerifySimpleSigning(got.Simple[0], ref2.String()); !r.Verified {
		t.Errorf("the .sig signature: %+v", r)
	}
	if r := v.VerifySimpleSigning(got.Simple[0], ref.String()); r.Verified || !strings.Contains(r.Message, "not "+ref.DigestStr()) {
		t.Errorf("a .sig of another digest: %+v", r)
	}
	p2, s2, err := other.SignSimple(ref2.Context().String(), ref2.DigestStr())
	if err != nil {
		t.Fatal(err)
	}
	if r := v.VerifySimpleSigning(verification.SimpleSignature{Payload: p2, Signature: s2}, ref2.String()); r.Verified {
		t.Errorf("a .sig by another key: %+v", r)
	}

	// Unsigned: nothing found, no error.
	ref3, _ := push("unsigned")
	if got, err := verification.Fetch(ctx, ref3.String(), 5*time.Second, nil, nil); err != nil || len(got.Bundles)+len(got.Simple) != 0 {
		t.Errorf("unsigned: %+v, %v", got, err)
	}
	// A bundle larger than a bundle can be is refused before it is read.
	ref4, _ := push("huge")
	must(t, 0, reg.Refer(ref4, make([]byte, verification.MaxBundleBytes+1)))
	if got, err := verification.Fetch(ctx, ref4.String(), 5*time.Second, nil, nil); err == nil || len(got.Bundles) != 0 {
		t.Errorf("a huge bundle: %+v, %v", got, err)
	}
	// A tag is not a digest.
	if _, err := verification.Fetch(ctx, reg.Host+"/app:1.2.0", time.Second, nil, nil); err == nil {
		t.Error("a tag: no error")
	}
}

func TestFetchGivesUpAtItsTimeout(t *testing.T) {
	hang := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-hang }))
	defer srv.Close()
	defer close(hang)
	start := time.Now()
	_, err := verification.Fetch(context.Background(), strings.TrimPrefix(srv.URL, "http://")+"/app@sha256:"+strings.Repeat("0", 64), 300*time.Millisecond, nil, nil)
	if err == nil || time.Since(start) > 5*time.Second {
		t.Errorf("after %s: %v", time.Since(start), err)
	}
}

func TestDockerConfigCredentials(t *testing.T) {
	cfg := []byte(`{"auths":{"https://registry.example":{"username":"u","password":"p"},"other.example":{"auth":"dTpw"}}}`)
	c, err := verification.DockerConfigCredentials(cfg, "registry.example/app@sha256:"+strings.Repeat("0", 64))
	if err != nil || c == nil || c.Username != "u" || c.Password != "p" {
		t.Errorf("%+v, %v", c, err)
	}
	if c, err := verification.DockerConfigCredentials(cfg, "third.example/app:1"); err != nil || c != nil {
		t.Errorf("no entry: %+v, %v", c, err)
	}
	if _, err := verification.DockerConfigCredentials([]byte("nope"), "registry.example/app:1"); err == nil {
		t.Error("not JSON: no error")
	}
}

// A registry's answer past the limit fails the read, whatever its
// Content-Length says.
func TestLimitBodies(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/declared" {
			w.Header().Set("Content-Length", "100")
		} else {
			w.(http.Flusher).Flush() // chunked: no length declared
		}
		w.Write([]byte(strings.Repeat("x", 100)))
	}))
	defer srv.Close()
	c := &http.Client{Transport: verification.LimitBodies(http.DefaultTransport, 10)}
	if _, err := c.Get(srv.URL + "/declared"); err == nil || !strings.Contains(err.Error(), "more than 10") {
		t.Errorf("declared: %v", err)
	}
	resp, err := c.Get(srv.URL + "/chunked")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err == nil || len(b) > 10 {
		t.Errorf("read %d bytes, %v", len(b), err)
	}
}
