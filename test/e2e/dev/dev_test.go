package dev

import (
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/gbytes"
	"github.com/onsi/gomega/gexec"

	"github.com/trainyard-dev/trainyard/internal/testenv"
	"github.com/trainyard-dev/trainyard/test/util"
)

func TestDev(t *testing.T) {
	if testing.Short() {
		t.Skip(testenv.UnitOnly)
	}
	RegisterFailHandler(Fail)
	RunSpecs(t, "make dev suite")
}

// The suite runs the real `make dev` program, as a user would, and checks
// that the control plane answers kubectl and that SIGINT (Ctrl-C) leaves no
// etcd, kube-apiserver or manager process behind.
var _ = Describe("make dev", func() {
	It("comes up, answers kubectl, and stops cleanly on Ctrl-C", func() {
		root := testenv.RepoRoot()
		session, state, managerBin := startDev("-samples", filepath.Join(root, "config", "samples"),
			"-workloads", filepath.Join(root, "hack", "dev", "workloads.yaml"))

		// gbytes.Say consumes what it matched, so the order is the output's.
		Eventually(session.Err, time.Minute).Should(gbytes.Say("applied 7 sample objects"))
		Eventually(session.Out, time.Minute).Should(gbytes.Say("get componentreleases,releasetrains,clusterreports"))
		Eventually(session.Err, 30*time.Second).Should(gbytes.Say("starting manager"))

		kubectl := kubectlIn(state)
		out, err := kubectl("get", "releasetrains,componentreleases,clusterreports", "-A")
		Expect(err).NotTo(HaveOccurred(), out)
		Expect(out).To(ContainSubstring("controller.stable"))
		Expect(out).To(ContainSubstring("9f1c2a4e-3b7d-4c8e-a1f0-5d6e7f8a9b0c"))

		// The status columns fill in.
		Eventually(func() string {
			out, _ := kubectl("get", "releasetrain", "router.stable", "-o", "jsonpath={.status.latest.version}")
			return out
		}, 30*time.Second).Should(Equal("v2.4.1"))

		// The API server calls the webhook, which the manager serves with the
		// CA it made itself: kubectl prints the webhook's messages.
		bad := filepath.Join(state, "bad.yaml")
		Expect(os.WriteFile(bad, []byte(`apiVersion: trainyard.dev/v1alpha1
kind: ComponentRelease
metadata:
  name: router-2.4.1
spec:
  component: router
  version: v2.4.1
`), 0o600)).To(Succeed())
		Eventually(func() string {
			out, _ := kubectl("apply", "-f", bad)
			return out
		}, 30*time.Second).Should(ContainSubstring(`must be "router.stable.v2.4.1"`))
		Expect(os.WriteFile(bad, []byte(`apiVersion: trainyard.dev/v1alpha1
kind: ComponentRelease
metadata:
  name: router.stable.v2.4.1
spec:
  component: router
  version: 2.4.1
`), 0o600)).To(Succeed())
		// 2.4.1 is v2.4.1: one semantic version has one name, so the API
		// server itself refuses the second.
		out, err = kubectl("create", "-f", bad)
		Expect(err).To(HaveOccurred())
		Expect(out).To(ContainSubstring(`"router.stable.v2.4.1" already exists`))
		Expect(os.WriteFile(bad, []byte(`apiVersion: trainyard.dev/v1alpha1
kind: ClusterReport
metadata:
  name: edge-1
spec:
  clusterID: edge-1
  properties:
    "node count": "3"
`), 0o600)).To(Succeed())
		out, err = kubectl("apply", "-f", bad)
		Expect(err).To(HaveOccurred())
		Expect(out).To(ContainSubstring(`spec.properties[node count]: Invalid value: "node count": keys may contain only letters, digits, '-', '_' and '.'`))

		// A check-in through the bridge, with the curl command the banner
		// prints, shows up in kubectl.
		Expect(session.Out).To(gbytes.Say(`curl -s -XPOST (http://127.0.0.1:\d+)/v3/clusters`))
		banner := string(session.Out.Contents())
		bridgeURL := regexp.MustCompile(`http://127\.0\.0\.1:\d+`).FindString(banner[strings.Index(banner, "curl"):])
		token := regexp.MustCompile(`Authorization: Bearer ([0-9a-f]+)`).FindStringSubmatch(banner)
		Expect(token).To(HaveLen(2), "the banner prints a registration token")
		Eventually(func() string {
			req, _ := http.NewRequest(http.MethodPost, bridgeURL+"/v3/clusters", strings.NewReader(
				`{"id":"dev-cluster","components":[{"component":{"name":"router"},"version":{"train":"stable","version":"v2.3.0"}}]}`))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Authorization", "Bearer "+token[1])
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				return err.Error()
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			return string(body)
		}, 30*time.Second).Should(ContainSubstring(`"id":"dev-cluster"`))
		Eventually(func() string {
			out, _ := kubectl("get", "clusterreport", "dev-cluster", "-o", "jsonpath={.status.components[0].state}")
			return out
		}, 30*time.Second).Should(Equal("UpdateAvailable"))

		// The dev agent reports the local control plane itself, under the
		// kube-system namespace's UID, with the labelled workload.
		uid, err := kubectl("get", "namespace", "kube-system", "-o", "jsonpath={.metadata.uid}")
		Expect(err).NotTo(HaveOccurred(), uid)
		Eventually(func() string {
			out, _ := kubectl("get", "clusterreport", uid, "-o", "jsonpath={.spec.components[0].name}@{.spec.components[0].version}")
			return out
		}, 60*time.Second).Should(Equal("router@v2.3.0"))

		children := util.ProcessesMentioning(state)
		Expect(children).NotTo(BeEmpty(), "etcd and kube-apiserver should run with the state dir in their arguments")

		session.Signal(syscall.SIGINT)
		Eventually(session, time.Minute).Should(gexec.Exit(0))
		Expect(util.ProcessesMentioning(state)).To(BeEmpty())
		Expect(util.ProcessesMentioning(managerBin)).To(BeEmpty())
	})
})

var _ = Describe("make dev run twice", func() {
	It("keeps the objects of the first run in the second", func() {
		state := GinkgoT().TempDir()
		for run := 1; run <= 2; run++ {
			session, _, _ := startDevIn(state, "-agent=false", "-workloads", "")
			Eventually(session.Out, time.Minute).Should(gbytes.Say("trainyard is ready"))
			kubectl := kubectlIn(state)
			if run == 1 {
				out, err := kubectl("create", "configmap", "kept", "--from-literal=run=1")
				Expect(err).NotTo(HaveOccurred(), out)
			} else {
				out, err := kubectl("get", "configmap", "kept", "-o", "jsonpath={.data.run}")
				Expect(err).NotTo(HaveOccurred(), out)
				Expect(out).To(Equal("1"))
			}
			session.Signal(syscall.SIGINT)
			Eventually(session, time.Minute).Should(gexec.Exit(0))
		}
	})
})

// startDev runs the dev program (built from source, with a manager built
// from source) with its own state directory, any free ports and flags, and
// returns its session, the state directory and the manager binary.
func startDev(flags ...string) (*gexec.Session, string, string) {
	GinkgoHelper()
	return startDevIn(GinkgoT().TempDir(), flags...)
}

// startDevIn is startDev with a given state directory.
func startDevIn(state string, flags ...string) (*gexec.Session, string, string) {
	GinkgoHelper()
	Expect(os.Getenv("KUBEBUILDER_ASSETS")).NotTo(BeEmpty(), "run with `make test`")
	root := testenv.RepoRoot()
	devBin, err := util.Binary(util.Dev)
	Expect(err).NotTo(HaveOccurred())
	managerBin, err := util.Binary(util.Manager)
	Expect(err).NotTo(HaveOccurred())
	// As make dev runs it: the agent alone, as the chart does.
	agentBin, err := util.Binary(util.Agent)
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(gexec.CleanupBuildArtifacts)

	args := append([]string{"-dir", state, "-manager", managerBin, "-agent-binary", agentBin,
		"-crds", filepath.Join(root, "config", "crd", "bases"),
		"-webhooks", filepath.Join(root, "config", "webhook", "manifests.yaml"), "-webhook-port", "0", "-bridge-port", "0"}, flags...)
	// Flags after a "--" among flags are the manager's.
	var managerArgs []string
	if i := slices.Index(args, "--"); i >= 0 {
		args, managerArgs = args[:i:i], slices.Clone(args[i+1:])
	}
	cmd := exec.Command(devBin, append(append(args, "--", "--metrics-bind-address=0", "--health-probe-bind-address=127.0.0.1:0"), managerArgs...)...)
	cmd.Dir = root
	session, err := gexec.Start(cmd, GinkgoWriter, GinkgoWriter)
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(func() { session.Kill(); util.KillMentioning(state) })
	return session, state, managerBin
}

// kubectlIn runs the source-built kubectl against the dev control plane in
// state, in the default namespace.
func kubectlIn(state string) func(args ...string) (string, error) {
	return func(args ...string) (string, error) {
		out, err := exec.Command(filepath.Join(os.Getenv("KUBEBUILDER_ASSETS"), "kubectl"),
			append([]string{"--kubeconfig", filepath.Join(state, "kubeconfig"), "-n", "default"}, args...)...).CombinedOutput()
		return string(out), err
	}
}

// CI shows only the tail of a run: the causes of its failures come last.
var _ = ReportAfterSuite("failure digest", testenv.FailureDigest(12))
