// Package testenv starts the real control plane (kube-apiserver and etcd from
// KUBEBUILDER_ASSETS, see hack/controlplane) with trainyard's CRDs installed,
// for the envtest suites.
package testenv

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/onsi/ginkgo/v2"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// RepoRoot is the repository's root directory, found from this file's path so
// that suites work from any package directory.
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// New returns an envtest environment with the CRDs from config/crd/bases.
// Callers may add webhook options before Start.
func New() *envtest.Environment {
	return &envtest.Environment{
		CRDDirectoryPaths:     []string{filepath.Join(RepoRoot(), "config", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
	}
}

// Start starts env, explaining how to get the binaries when they are missing.
// Under `go test -short` (make test-unit) it skips the Ginkgo suite or
// container instead (a plain Go test checks testing.Short itself first).
func Start(env *envtest.Environment) (*rest.Config, error) {
	SkipIfShort()
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		return nil, fmt.Errorf("KUBEBUILDER_ASSETS is not set: run the tests with `make test`, " +
			"or export KUBEBUILDER_ASSETS=$(hack/controlplane/build.sh)")
	}
	cfg, err := env.Start()
	if err != nil || len(env.WebhookInstallOptions.Paths) == 0 {
		return cfg, err
	}
	// A suite with the webhook has the admission policies beside it, as
	// the chart installs both.
	c, err := client.New(cfg, client.Options{})
	if err == nil {
		err = InstallPolicies(context.Background(), c)
	}
	if err == nil {
		err = WaitPolicies(c)
	}
	if err != nil {
		_ = env.Stop()
		return nil, fmt.Errorf("installing the admission policies: %w", err)
	}
	return cfg, nil
}

// UnitOnly is the reason a suite gives for not running under -short.
const UnitOnly = "needs a control plane (or helm): `make test` runs it, `make test-unit` (go test -short) does not"

// SkipIfShort skips the calling Ginkgo suite or container under `go test
// -short`: the fast loop runs only what needs no control plane.
func SkipIfShort() {
	// The benchmarks under hack/bench start envtest from a plain binary,
	// where testing.Short panics.
	if testing.Testing() && testing.Short() {
		ginkgo.Skip(UnitOnly)
	}
}

// WebhookServing is a check for Eventually: nil once the webhook server
// that w's configurations point at answers TLS.
func WebhookServing(w envtest.WebhookInstallOptions) func() error {
	addr := net.JoinHostPort(w.LocalServingHost, fmt.Sprint(w.LocalServingPort))
	return func() error {
		conn, err := tls.DialWithDialer(&net.Dialer{Timeout: time.Second}, "tcp", addr, &tls.Config{InsecureSkipVerify: true})
		if err != nil {
			return err
		}
		return conn.Close()
	}
}
