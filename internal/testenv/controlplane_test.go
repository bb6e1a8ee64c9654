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
