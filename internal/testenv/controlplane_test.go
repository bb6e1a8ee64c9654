package testenv_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/trainyard-dev/trainyard/internal/testenv"
)

// `make test` builds the control plane before running the tests, so calling
// the build script again here is the second run: it must rebuild nothing and
// point at the same binaries.
func TestControlPlaneBuildIsReused(t *testing.T) {
	if testing.Short() {
		t.Skip(testenv.UnitOnly)
	}
	assets := os.Getenv("KUBEBUILDER_ASSETS")
	if assets == "" {
		t.Fatal("KUBEBUILDER_ASSETS is not set: run with `make test`")
	}
	before := mtimes(t, assets)
	cmd := exec.Command(filepath.Join(testenv.RepoRoot(), "hack", "controlplane", "build.sh"))
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("build.sh: %v\n%s", err, stderr.String())
	}
	if got := strings.TrimSpace(string(out)); got != assets {
		t.Errorf("build.sh printed %q, KUBEBUILDER_ASSETS is %q", got, assets)
	}
	if strings.Contains(stderr.String(), "building") {
		t.Errorf("the second run rebuilt something:\n%s", stderr.String())
	}
	after := mtimes(t, assets)
	for name, m := range before {
		if after[name] != m {
			t.Errorf("%s was rewritten", name)
		}
	}
}

func mtimes(t *testing.T, dir string) map[string]int64 {
	t.Helper()
	m := map[string]int64{}
	for _, name := range []string{"kube-apiserver", "etcd", "kubectl"} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatalf("control plane binary missing: %v", err)
		}
		m[name] = fi.ModTime().UnixNano()
	}
	return m
}

// Where the release binaries cannot be had, build.sh builds them from
// source. The download is pointed at an index nobody serves, so the fallback
// runs on any machine; the store is empty, so all three are built (quickly:
// their packages are in Go's build cache once `make test` has built the
// control plane).
func TestControlPlaneFallsBackToTheSourceBuild(t *testing.T) {
	if testing.Short() {
		t.Skip(testenv.UnitOnly)
	}
	assets := os.Getenv("KUBEBUILDER_ASSETS")
	if assets == "" {
		t.Fatal("KUBEBUILDER_ASSETS is not set: run with `make test`")
	}
	store := t.TempDir()
	dir := filepath.Join(store, "k8s", filepath.Base(assets))
	cmd := exec.Command(filepath.Join(testenv.RepoRoot(), "hack", "controlplane", "build.sh"))
	cmd.Env = append(os.Environ(), "ENVTEST_STORE="+store, "ENVTEST_INDEX_URL=http://127.0.0.1:1/envtest-releases.yaml",
		"CONTROLPLANE_DOWNLOAD_TIMEOUT=60")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("build.sh: %v\n%s", err, stderr.String())
	}
	log := stderr.String()
	for _, want := range []string{"trying the release binaries", "no release binaries (unable to", "127.0.0.1:1",
		"building etcd", "building kube-apiserver", "building kubectl"} {
		if !strings.Contains(log, want) {
			t.Errorf("build.sh did not say %q:\n%s", want, log)
		}
	}
	if got := strings.TrimSpace(string(out)); got != dir {
		t.Errorf("build.sh printed %q, want %q", got, dir)
	}
	for _, bin := range [][]string{{"kubectl", "version", "--client"}, {"etcd", "--version"}, {"kube-apiserver", "--version"}} {
		if out, err := exec.Command(filepath.Join(dir, bin[0]), bin[1:]...).CombinedOutput(); err != nil {
			t.Errorf("the %s built from source does not run: %v\n%s", bin[0], err, out)
		}
	}
}
