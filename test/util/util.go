// Package util holds what the end-to-end suites under test/e2e share:
// binaries built once per test process, and the processes they leave.
package util

import (
	"bytes"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"github.com/onsi/gomega/gexec"
)

var (
	buildMu sync.Mutex
	built   = map[string]string{}
)

// Binary builds a main package of the module (gexec.Build) the first time
// it is asked for and returns its path; later calls return the same
// binary. gexec.CleanupBuildArtifacts removes them all.
func Binary(pkg string) (string, error) {
	buildMu.Lock()
	defer buildMu.Unlock()
	if bin, ok := built[pkg]; ok {
		if _, err := os.Stat(bin); err == nil {
			return bin, nil
		}
	}
	bin, err := gexec.Build(pkg)
	if err != nil {
		return "", err
	}
	built[pkg] = bin
	return bin, nil
}

// The module's binaries.
const (
	Manager = "github.com/trainyard-dev/trainyard"
	Agent   = "github.com/trainyard-dev/trainyard/cmd/trainyard-agent"
	Dev     = "github.com/trainyard-dev/trainyard/hack/dev"
)

// KillMentioning kills what a failed spec left running: the processes whose
// command line contains s (a state directory, say).
func KillMentioning(s string) {
	for _, p := range ProcessesMentioning(s) {
		if pid, err := strconv.Atoi(strings.SplitN(p, ":", 2)[0]); err == nil {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// ProcessesMentioning lists the live processes whose command line contains
// s, as "pid: command line".
func ProcessesMentioning(s string) []string {
	var found []string
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || !bytes.Contains(cmdline, []byte(s)) || e.Name() == "self" {
			continue
		}
		if stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat")); err == nil &&
			strings.Contains(string(stat), ") Z ") {
			continue // a zombie has exited; only its parent's wait is missing
		}
		found = append(found, e.Name()+": "+strings.ReplaceAll(string(cmdline), "\x00", " "))
	}
	return found
}

// FreePort is a TCP port on 127.0.0.1 that nothing listens on now.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
