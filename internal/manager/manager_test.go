package manager

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/trainyard-dev/trainyard/internal/testenv"
	"github.com/trainyard-dev/trainyard/internal/version"
)

func TestBuildInfoIsOneWithTheBuildAsLabels(t *testing.T) {
	reg := prometheus.NewRegistry()
	registerBuildInfo(reg, version.Info{Version: "v1.2.3", Commit: "abc123", GoVersion: "go1.26.8"})
	want := `
# HELP trainyard_build_info The running trainyard build: always 1, with its version, commit and Go version as labels.
# TYPE trainyard_build_info gauge
trainyard_build_info{commit="abc123",goversion="go1.26.8",version="v1.2.3"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "trainyard_build_info"); err != nil {
		t.Fatal(err)
	}
}

// `trainyard version` prints the version stamped by the build (the Makefile's
// and the Dockerfile's -ldflags -X).
func TestVersionIsStampedByTheBuild(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "trainyard")
	pkg := "github.com/trainyard-dev/trainyard/internal/version"
	build := exec.Command("go", "build", "-o", bin, "-ldflags", "-X "+pkg+".version=v9.8.7 -X "+pkg+".commit=0123abc", testenv.RepoRoot())
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	out, err := exec.Command(bin, "version").Output()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(out), "trainyard v9.8.7 (commit 0123abc, go") {
		t.Errorf("trainyard version: %q", out)
	}
}

// The image's build stage runs on the builder's platform and cross-compiles
// (no emulation for a multi-platform build), and stamps the version. No
// Docker engine runs here, so the Dockerfile is checked as text; the stamp
// itself is TestVersionIsStampedByTheBuild's.
func TestDockerfileCrossCompilesAndStampsTheVersion(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(testenv.RepoRoot(), "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	df := string(b)
	if !strings.Contains(df, "FROM --platform=$BUILDPLATFORM golang:") {
		t.Error("the build stage does not run on $BUILDPLATFORM")
	}
	for _, want := range []string{"GOOS=$TARGETOS GOARCH=$TARGETARCH", "internal/version.version=$VERSION", "internal/version.commit=$COMMIT", "ARG TARGETOS=linux TARGETARCH=amd64 VERSION="} {
		if !strings.Contains(df, want) {
			t.Errorf("the Dockerfile lacks %q", want)
		}
	}
	if n := strings.Count(df, `-ldflags="$LDFLAGS"`); n != 2 {
		t.Errorf("%d of the 2 go builds are stamped", n)
	}
}

func TestTheCASecretMustNotBeTheKeysSecret(t *testing.T) {
	err := Run([]string{"--webhook-secret=tls", "--webhook-ca-secret=tls"})
	if err == nil || !strings.Contains(err.Error(), `--webhook-ca-secret must name another Secret than --webhook-secret ("tls")`) {
		t.Fatalf("Run: %v", err)
	}
}
