package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/gbytes"
	"github.com/onsi/gomega/gexec"

	"github.com/trainyard-dev/trainyard/internal/testenv"
)

func TestDev(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "make dev suite")
}

// The suite runs the real `make dev` program, as a user would, and checks
// that the control plane answers kubectl and that SIGINT (Ctrl-C) leaves no
// etcd, kube-apiserver or manager process behind.
var _ = Describe("make dev", func() {
	It("comes up, answers kubectl, and stops cleanly on Ctrl-C", func() {
		assets := os.Getenv("KUBEBUILDER_ASSETS")
		Expect(assets).NotTo(BeEmpty(), "run with `make test`")
		root := testenv.RepoRoot()
		devBin, err := gexec.Build("github.com/trainyard-dev/trainyard/hack/dev")
		Expect(err).NotTo(HaveOccurred())
		managerBin, err := gexec.Build("github.com/trainyard-dev/trainyard")
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(gexec.CleanupBuildArtifacts)

		state := GinkgoT().TempDir()
		cmd := exec.Command(devBin, "-dir", state, "-manager", managerBin,
			"-crds", filepath.Join(root, "config", "crd", "bases"),
			"-samples", filepath.Join(root, "config", "samples"),
			"--", "--metrics-bind-address=0", "--health-probe-bind-address=127.0.0.1:0")
		cmd.Dir = root
		session, err := gexec.Start(cmd, GinkgoWriter, GinkgoWriter)
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(func() { session.Kill() })

		// gbytes.Say consumes what it matched, so the order is the output's.
		Eventually(session.Err, time.Minute).Should(gbytes.Say("applied 7 sample objects"))
		Eventually(session.Out, time.Minute).Should(gbytes.Say("get componentreleases,releasetrains,clusterreports"))
		Eventually(session.Err, 30*time.Second).Should(gbytes.Say("starting manager"))

		kubeconfig := filepath.Join(state, "kubeconfig")
		out, err := exec.Command(filepath.Join(assets, "kubectl"), "--kubeconfig", kubeconfig,
			"get", "releasetrains,componentreleases,clusterreports", "-A").CombinedOutput()
		Expect(err).NotTo(HaveOccurred(), string(out))
		Expect(string(out)).To(ContainSubstring("controller.stable"))
		Expect(string(out)).To(ContainSubstring("9f1c2a4e-3b7d-4c8e-a1f0-5d6e7f8a9b0c"))

		children := processesMentioning(state)
		Expect(children).NotTo(BeEmpty(), "etcd and kube-apiserver should run with the state dir in their arguments")

		session.Signal(syscall.SIGINT)
		Eventually(session, time.Minute).Should(gexec.Exit(0))
		Expect(processesMentioning(state)).To(BeEmpty())
		Expect(processesMentioning(managerBin)).To(BeEmpty())
	})
})

// processesMentioning lists the live processes whose command line contains s.
func processesMentioning(s string) []string {
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
