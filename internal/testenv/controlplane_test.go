package testenv_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
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

// Where the release binaries cannot be had, build.sh builds from source what
// is missing. The download is pointed at an index nobody serves, so the
// fallback runs on any machine; the store is empty, so all three are
// built. The go command that builds them is a
// stand-in that records its arguments and writes a script (a real source
// build takes ~12 minutes on 2 cores with a cold cache): the test checks
// what build.sh asks for, and stays cheap whatever the cache holds. The
// real build is the one `make test` runs where nothing can be downloaded.
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
	// The stand-in: `go build ... -o OUT PKG` appends its arguments to
	// calls.log and writes OUT, a script that prints the package it was
	// built from; any other go command is the real one (build.sh asks go
	// for the module's versions).
	realGo, err := exec.LookPath("go")
	if err != nil {
		t.Fatal(err)
	}
	fake := filepath.Join(t.TempDir(), "go")
	calls := filepath.Join(filepath.Dir(fake), "calls.log")
	script := `#!/usr/bin/env bash
if [[ "$1" != build ]]; then exec ` + realGo + ` "$@"; fi
echo "$*" >>` + calls + `
out=; pkg=; prev=
for a in "$@"; do [[ "$prev" == -o ]] && out=$a; prev=$a; pkg=$a; done
printf '#!/bin/sh\necho built from %s\n' "$pkg" >"$out" && chmod +x "$out"
`
	if err := os.WriteFile(fake, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(filepath.Join(testenv.RepoRoot(), "hack", "controlplane", "build.sh"))
	cmd.Env = append(os.Environ(), "ENVTEST_STORE="+store, "ENVTEST_INDEX_URL=http://127.0.0.1:1/envtest-releases.yaml",
		"CONTROLPLANE_DOWNLOAD_TIMEOUT=60", "CONTROLPLANE_GO="+fake)
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
	// What it asked the compiler for: static, trimmed, version-stamped
	// builds of the packages go.mod pins.
	b, err := os.ReadFile(calls)
	if err != nil {
		t.Fatal(err)
	}
	builds := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(builds) != 3 {
		t.Fatalf("%d builds, want etcd, kube-apiserver and kubectl:\n%s", len(builds), b)
	}
	version := strings.TrimSuffix(filepath.Base(assets), "-"+runtime.GOOS+"-"+runtime.GOARCH)
	for _, want := range []struct{ bin, pkg, stamp string }{
		{"etcd", "./etcd", "go.etcd.io/etcd/api/v3/version.GitSHA=v"},
		{"kube-apiserver", "k8s.io/kubernetes/cmd/kube-apiserver", "k8s.io/component-base/version.gitVersion=v" + version},
		{"kubectl", "k8s.io/kubernetes/cmd/kubectl", "k8s.io/client-go/pkg/version.gitVersion=v" + version},
	} {
		i := slices.IndexFunc(builds, func(b string) bool { return strings.HasSuffix(b, " "+want.pkg) })
		if i < 0 {
			t.Errorf("no build of %s:\n%s", want.pkg, b)
			continue
		}
		for _, arg := range []string{"-trimpath", want.stamp} {
			if !strings.Contains(builds[i], arg) {
				t.Errorf("the build of %s lacks %s: %s", want.pkg, arg, builds[i])
			}
		}
		got, err := exec.Command(filepath.Join(dir, want.bin)).Output()
		if err != nil || strings.TrimSpace(string(got)) != "built from "+want.pkg {
			t.Errorf("%s in the store is not what was built from %s: %q, %v", want.bin, want.pkg, got, err)
		}
	}
}
