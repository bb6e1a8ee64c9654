package dev

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/gbytes"
	"github.com/onsi/gomega/gexec"

	"github.com/trainyard-dev/trainyard/internal/testenv"
	"github.com/trainyard-dev/trainyard/test/util"
)

// quickstart reads the shell commands of the README's quickstart, in order.
func quickstart(readme string) []string { return shellLines(readme, "quickstart") }

// shellLines reads the lines of the sh blocks between <!-- name:begin -->
// and <!-- name:end -->, in order.
func shellLines(doc, name string) []string {
	GinkgoHelper()
	begin, end := strings.Index(doc, "<!-- "+name+":begin -->"), strings.Index(doc, "<!-- "+name+":end -->")
	Expect(begin).To(BeNumerically(">=", 0), "no %s section", name)
	Expect(end).To(BeNumerically(">", begin))
	var cmds []string
	inBlock := false
	for _, line := range strings.Split(doc[begin:end], "\n") {
		switch {
		case strings.HasPrefix(line, "```sh"):
			inBlock = true
		case strings.HasPrefix(line, "```"):
			inBlock = false
		case inBlock && strings.TrimSpace(line) != "":
			cmds = append(cmds, line)
		}
	}
	return cmds
}

// table splits `kubectl get` output into its header and rows, by the
// header's column positions.
func table(out string) (header []string, rows map[string]map[string]string) {
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	cols := regexp.MustCompile(`\S+`).FindAllStringIndex(lines[0], -1)
	for _, c := range cols {
		header = append(header, lines[0][c[0]:c[1]])
	}
	rows = map[string]map[string]string{}
	for _, l := range lines[1:] {
		row := map[string]string{}
		for i, c := range cols {
			endCol := len(l)
			if i+1 < len(cols) {
				endCol = min(cols[i+1][0], len(l))
			}
			if c[0] < len(l) {
				row[header[i]] = strings.TrimSpace(l[c[0]:endCol])
			}
		}
		rows[row["NAME"]] = row
	}
	return header, rows
}

var _ = Describe("the README's quickstart", func() {
	It("works as written: make dev, apply the samples, check in with curl, kubectl get, Ctrl-C", func() {
		root := testenv.RepoRoot()
		readme, err := os.ReadFile(filepath.Join(root, "README.md"))
		Expect(err).NotTo(HaveOccurred())
		cmds := quickstart(string(readme))
		Expect(cmds).To(HaveLen(8))
		Expect(cmds[0]).To(Equal("make dev"))

		// The README's fixed state directory and bridge address become this
		// run's own, so that a `make dev` the developer has open is left alone.
		// The bridge's port is the one make dev picks and prints: a port the
		// test picked beforehand could be taken by the control plane make
		// dev starts in the meantime.
		state := GinkgoT().TempDir()
		var bridgeAddr string
		local := func(cmd string) string {
			cmd = strings.ReplaceAll(cmd, ".dev/", state+"/")
			return strings.ReplaceAll(cmd, "127.0.0.1:8080", bridgeAddr)
		}

		makeDev := exec.Command("make", "dev",
			fmt.Sprintf("DEV_FLAGS=-dir %s -bridge-port 0 -webhook-port 0", state),
			"DEV_MANAGER_ARGS=--metrics-bind-address=0 --health-probe-bind-address=127.0.0.1:0")
		makeDev.Dir = root
		// A make of its own, not the one running the tests.
		for _, kv := range os.Environ() {
			if k, _, _ := strings.Cut(kv, "="); k != "MAKEFLAGS" && k != "MAKELEVEL" && k != "MFLAGS" {
				makeDev.Env = append(makeDev.Env, kv)
			}
		}
		// Its own process group, like a shell's foreground job: Ctrl-C
		// reaches make and the dev program together.
		makeDev.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		session, err := gexec.Start(makeDev, GinkgoWriter, GinkgoWriter)
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(func() { _ = syscall.Kill(-makeDev.Process.Pid, syscall.SIGKILL); util.KillMentioning(state) })
		// make dev first builds: on a cold build cache (CI's, the static
		// binaries of `make build`) that alone takes minutes. The start
		// that follows has a budget of its own.
		// What the dev program said on stderr (which child started, which
		// exited) tells why it did not get ready.
		stderr := func() string {
			lines := strings.Split(strings.TrimRight(string(session.Err.Contents()), "\n"), "\n")
			return "make dev's stderr ends with:\n" + strings.Join(lines[max(0, len(lines)-8):], "\n")
		}
		Eventually(session.Out, 15*time.Minute).Should(gbytes.Say(`bin/dev -manager `), stderr)
		Eventually(session.Out, 3*time.Minute).Should(gbytes.Say("trainyard is ready"), stderr)
		Eventually(session.Out, 10*time.Second).Should(gbytes.Say(`listens on http://(127\.0\.0\.1:\d+):`))
		bridgeAddr = regexp.MustCompile(`listens on http://(127\.0\.0\.1:\d+):`).FindStringSubmatch(string(session.Out.Contents()))[1]

		// One shell for the commands, as the README has them typed in one.
		script := "set -euo pipefail\n"
		for i, c := range cmds[1:4] {
			script += fmt.Sprintf("echo '### %d'\n%s\necho\n", i, local(c))
		}
		sh := exec.Command("bash", "-c", script)
		sh.Dir = root
		out, err := sh.CombinedOutput()
		Expect(err).NotTo(HaveOccurred(), string(out))
		Expect(string(out)).To(ContainSubstring("componentrelease.trainyard.dev/router.stable.v2.4.1 created"))
		Expect(string(out)).To(ContainSubstring("clusterreport.trainyard.dev/9f1c2a4e-3b7d-4c8e-a1f0-5d6e7f8a9b0c created"))
		Expect(string(out)).To(MatchRegexp(`"id":\s*"my-laptop"`))

		get := func(cmd string) func(Gomega) map[string]map[string]string {
			return func(g Gomega) map[string]map[string]string {
				c := exec.Command("bash", "-c", local(cmd))
				c.Dir = root
				out, err := c.CombinedOutput()
				g.Expect(err).NotTo(HaveOccurred(), string(out))
				_, rows := table(string(out))
				return rows
			}
		}
		Expect(cmds[4]).To(HaveSuffix("get componentreleases"))
		Eventually(get(cmds[4]), 90*time.Second).Should(And(
			HaveKeyWithValue("router.stable.v2.4.1", And(HaveKeyWithValue("COMPONENT", "router"), HaveKeyWithValue("TRAIN", "stable"),
				HaveKeyWithValue("VERSION", "v2.4.1"), HaveKeyWithValue("LATEST", "true"))),
			HaveKeyWithValue("router.stable.v2.3.0", HaveKeyWithValue("LATEST", "false")),
		))
		Expect(cmds[5]).To(HaveSuffix("get releasetrains"))
		Eventually(get(cmds[5]), 90*time.Second).Should(HaveKeyWithValue("router.stable", And(
			HaveKeyWithValue("LATEST", "v2.4.1"), HaveKeyWithValue("RELEASES", "2"),
			HaveKeyWithValue("UP-TO-DATE", Not(BeEmpty())), HaveKeyWithValue("READY", "True"))))
		Expect(cmds[6]).To(HaveSuffix("get clusterreports"))
		Eventually(get(cmds[6]), 90*time.Second).Should(HaveKeyWithValue("my-laptop", And(
			HaveKeyWithValue("COMPONENTS", "1"), HaveKeyWithValue("UP-TO-DATE", "0"), HaveKeyWithValue("UPDATES", "1"),
			// Stale is absent while the cluster has never been stale (abnormal-true).
			HaveKeyWithValue("STALE", ""), HaveKeyWithValue("LAST-SEEN", Not(BeEmpty())))))

		// kubectl finds the plugin on the PATH; it lists the sample cluster's
		// outdated and retracted components and exits 2 (a retracted release runs).
		Expect(cmds[7]).To(HaveSuffix("kubectl trainyard --kubeconfig .dev/kubeconfig outdated"))
		var outdated string
		Eventually(func(g Gomega) {
			c := exec.Command("bash", "-c", local(cmds[7]))
			c.Dir = root
			out, err := c.Output()
			var exit *exec.ExitError
			g.Expect(errors.As(err, &exit)).To(BeTrue(), "exit code 2 expected: %v\n%s", err, out)
			g.Expect(exit.ExitCode()).To(Equal(2), string(out)+string(exit.Stderr))
			outdated = string(out)
			g.Expect(outdated).To(ContainSubstring("my-laptop")) // computed once its report has its status
		}, 90*time.Second).Should(Succeed())
		header, _ := table(outdated)
		Expect(header).To(Equal([]string{"CLUSTER", "COMPONENT", "TRAIN", "RUNNING", "LATEST", "BEHIND", "LATEST-AGE", "STATE"}))
		Expect(outdated).To(MatchRegexp(`(?m)^9f1c2a4e-3b7d-4c8e-a1f0-5d6e7f8a9b0c +router +stable +v2\.3\.0 +v2\.4\.1 +minor +\S+ +UpdateAvailable$`))
		Expect(outdated).To(MatchRegexp(`(?m)^9f1c2a4e-3b7d-4c8e-a1f0-5d6e7f8a9b0c +controller +stable +1\.8\.1 +1\.8\.0 +none +\S+ +Retracted$`))
		Expect(outdated).To(MatchRegexp(`(?m)^my-laptop +router +stable +v2\.3\.0 +v2\.4\.1 +minor +\S+ +UpdateAvailable$`))

		// docs/bridge.md's "Trying it in make dev", as written (issue 27 #17:
		// it once checked in without the token the default mode needs).
		bridgeDoc, err := os.ReadFile(filepath.Join(root, "docs", "bridge.md"))
		Expect(err).NotTo(HaveOccurred())
		try := "set -euo pipefail\n" + local(strings.Join(shellLines(string(bridgeDoc), "try-bridge"), "\n"))
		sh = exec.Command("bash", "-c", try)
		sh.Dir = root
		out, err = sh.CombinedOutput()
		Expect(err).NotTo(HaveOccurred(), string(out))
		Expect(string(out)).To(MatchRegexp(`"id":\s*"f47ac10b-58cc-4372-a567-0e02b2c3d479"`))
		Expect(string(out)).To(MatchRegexp(`"version":\s*"v2\.4\.1"`), "the latest router on stable")
		Expect(string(out)).To(MatchRegexp(`(?m)^f47ac10b-58cc-4372-a567-0e02b2c3d479 `), "kubectl get clusterreports lists it")

		// Ctrl-C: everything stops, nothing is left behind.
		Expect(syscall.Kill(-makeDev.Process.Pid, syscall.SIGINT)).To(Succeed())
		Eventually(session, time.Minute).Should(gexec.Exit())
		Expect(session.Err).To(gbytes.Say("stopping kube-apiserver and etcd"))
		Expect(util.ProcessesMentioning(state)).To(BeEmpty())
	})
})
