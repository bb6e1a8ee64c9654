package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"syscall"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/gbytes"
	"github.com/onsi/gomega/gexec"
)

var _ = Describe("make dev DEV_REPLICAS=2", func() {
	It("runs two managers; when the leader stops, the other takes over the controllers", func() {
		session, state, _ := startDev("-replicas", "2", "-agent=false", "-workloads", "")
		Eventually(session.Out, time.Minute).Should(gbytes.Say("trainyard is ready"))

		pids := map[string]int{}
		for _, m := range regexp.MustCompile(`started the (manager-\d) \(pid (\d+)\)`).FindAllStringSubmatch(string(session.Err.Contents()), -1) {
			pids[m[1]], _ = strconv.Atoi(m[2])
		}
		Expect(pids).To(HaveLen(2))

		acquired := regexp.MustCompile(`\[(manager-\d)\] .*(?i:successfully acquired lease).*default/trainyard-manager\.trainyard\.dev`)
		leader := func() string {
			m := acquired.FindAllStringSubmatch(string(session.Err.Contents()), -1)
			if len(m) == 0 {
				return ""
			}
			return m[len(m)-1][1]
		}
		Eventually(leader, 30*time.Second).ShouldNot(BeEmpty())
		first := leader()
		Consistently(func() int { return len(acquired.FindAllString(string(session.Err.Contents()), -1)) }, "2s").
			Should(Equal(1), "only one replica leads")

		kubectl := kubectlIn(state)
		holder := func() string {
			out, _ := kubectl("get", "lease", "trainyard-manager.trainyard.dev", "-o", "jsonpath={.spec.holderIdentity}")
			return out
		}
		firstHolder := holder()
		Expect(firstHolder).NotTo(BeEmpty())

		// Stop the leader as Kubernetes stops a pod: SIGTERM.
		Expect(syscall.Kill(pids[first], syscall.SIGTERM)).To(Succeed())
		Eventually(session.Err, 30*time.Second).Should(gbytes.Say(first + ` exited; 1 manager replicas remain`))
		Eventually(leader, 30*time.Second).ShouldNot(Equal(first))
		Eventually(holder, 30*time.Second).ShouldNot(Or(Equal(firstHolder), BeEmpty()))

		// The new leader runs the controllers, and the survivor serves the
		// webhook (through the port that reaches whichever replica is up).
		release := filepath.Join(state, "release.yaml")
		Expect(os.WriteFile(release, []byte(`apiVersion: trainyard.dev/v1alpha1
kind: ComponentRelease
metadata:
  name: failover.stable.v1.0.0
spec:
  component: failover
  version: 1.0.0
`), 0o600)).To(Succeed())
		Eventually(func() error { _, err := kubectl("apply", "-f", release); return err }, 30*time.Second).Should(Succeed())
		Eventually(func() string {
			out, _ := kubectl("get", "releasetrain", "failover.stable", "-o", "jsonpath={.status.latest.version}")
			return out
		}, 30*time.Second).Should(Equal("1.0.0"))

		session.Signal(syscall.SIGINT)
		Eventually(session, time.Minute).Should(gexec.Exit(0))
		Expect(processesMentioning(state)).To(BeEmpty())
	})
})
