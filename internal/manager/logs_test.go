package manager

import (
	"bufio"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/trainyard-dev/trainyard/internal/testenv"
)

// With --zap-encoder=json the manager's whole stderr is JSON, client-go's
// leader election included (internal/logging's test drives klog's global
// functions, which reflectors and throttling use, through the same logger).
func TestTheManagersLogIsJSONThroughoutLeaderElectionIncluded(t *testing.T) {
	if testing.Short() {
		t.Skip(testenv.UnitOnly)
	}
	env := testenv.New()
	if _, err := testenv.Start(env); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = env.Stop() }()
	dir := t.TempDir()
	kubeconfig := filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(kubeconfig, env.KubeConfig, 0o600); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "trainyard")
	if out, err := exec.Command("go", "build", "-o", bin, testenv.RepoRoot()).CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	cmd := exec.Command(bin, "--kubeconfig", kubeconfig, "--namespace", "default", "--leader-elect",
		"--enable-webhook=false", "--bridge-bind-address=0", "--metrics-bind-address=0",
		"--health-probe-bind-address=127.0.0.1:0", "--zap-encoder=json")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill() }()

	lines := make(chan string)
	go func() {
		defer close(lines)
		s := bufio.NewScanner(stderr)
		for s.Scan() {
			lines <- s.Text()
		}
	}()
	var seen []string
	acquired := false
	deadline := time.After(90 * time.Second)
	for !acquired {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("the manager stopped:\n%s", strings.Join(seen, "\n"))
			}
			seen = append(seen, l)
			acquired = strings.Contains(strings.ToLower(l), "successfully acquired lease")
		case <-deadline:
			t.Fatalf("no leader election line in 90s:\n%s", strings.Join(seen, "\n"))
		}
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	for l := range lines {
		seen = append(seen, l)
	}
	_ = cmd.Wait()

	for _, l := range seen {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Errorf("not JSON: %q", l)
		}
	}
	if len(seen) < 10 {
		t.Errorf("only %d lines:\n%s", len(seen), strings.Join(seen, "\n"))
	}
}
