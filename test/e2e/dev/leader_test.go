package dev

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/gbytes"
	"github.com/onsi/gomega/gexec"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/trainyard-dev/trainyard/plugin"
	"github.com/trainyard-dev/trainyard/test/util"
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
		Expect(util.ProcessesMentioning(state)).To(BeEmpty())
	})

	It("revokes a cluster's credential on both replicas within 5 s; registering again then needs a reissue token", func() {
		session, state, _ := startDev("-replicas", "2", "-agent=false", "-workloads", "")
		Eventually(session.Out, time.Minute).Should(gbytes.Say("trainyard is ready"))
		token := []string{"", registrationTokenOf(session)}
		replicas := replicaBridges(session)
		checkIn := func(base, bearer string) (int, string) { return checkInAs(base, bearer, "revoke-me") }
		code, credential := checkIn(replicas[0], token[1])
		Expect(code).To(Equal(http.StatusOK))
		Expect(credential).To(HavePrefix("tyc."))
		for _, r := range replicas {
			Eventually(func() int { c, _ := checkIn(r, credential); return c }, 5*time.Second).Should(Equal(http.StatusOK))
		}

		// The documented revocation: one kubectl command.
		kubectl := kubectlIn(state)
		out, err := kubectl("annotate", "clusterreport", "revoke-me", "trainyard.dev/credential-revoked=laptop stolen")
		Expect(err).NotTo(HaveOccurred(), out)
		revoked := time.Now()
		for _, r := range replicas {
			Eventually(func() int { c, _ := checkIn(r, credential); return c }, 5*time.Second, 100*time.Millisecond).
				Should(Equal(http.StatusUnauthorized), "replica %s", r)
		}
		Expect(time.Since(revoked)).To(BeNumerically("<", 5*time.Second))

		// The registration token does not take it back (issue 27 #4); the
		// operator's `kubectl trainyard cluster reissue` makes a single-use
		// token that does, on either replica.
		code, _ = checkIn(replicas[1], "not-a-registration-token")
		Expect(code).To(Equal(http.StatusUnauthorized))
		code, _ = checkIn(replicas[1], token[1])
		Expect(code).To(Equal(http.StatusForbidden))
		var stdout, stderr bytes.Buffer
		exit := plugin.Run([]string{"--kubeconfig", filepath.Join(state, "kubeconfig"), "-n", "default", "cluster", "reissue", "revoke-me", "--ttl", "10m"},
			plugin.Options{Streams: genericiooptions.IOStreams{In: &bytes.Buffer{}, Out: &stdout, ErrOut: &stderr}})
		Expect(exit).To(Equal(0), stderr.String())
		reissued := strings.TrimSpace(stdout.String())
		Expect(reissued).To(HavePrefix("tyr."))
		var fresh string
		Eventually(func() int { code, fresh = checkIn(replicas[1], reissued); return code }, 5*time.Second, 200*time.Millisecond).
			Should(Equal(http.StatusOK))
		code, _ = checkIn(replicas[0], reissued)
		Expect(code).To(Equal(http.StatusUnauthorized), "a reissue token registers once")
		Expect(fresh).To(HavePrefix("tyc."))
		Expect(fresh).NotTo(Equal(credential))
		for _, r := range replicas {
			Eventually(func() int { c, _ := checkIn(r, fresh); return c }, 5*time.Second).Should(Equal(http.StatusOK))
			c, _ := checkIn(r, credential)
			Expect(c).To(Equal(http.StatusUnauthorized))
		}

		session.Signal(syscall.SIGINT)
		Eventually(session, time.Minute).Should(gexec.Exit(0))
		Expect(util.ProcessesMentioning(state)).To(BeEmpty())
	})

	It("marks a cluster Stale on time across a leader change, from what the replicas persisted", func() {
		// A 50 s stale threshold: the persist interval is 2 s (a 25th).
		session, state, _ := startDev("-replicas", "2", "-agent=false", "-workloads", "", "--", "--stale-threshold=50s")
		Eventually(session.Out, time.Minute).Should(gbytes.Say("trainyard is ready"))
		token := []string{"", registrationTokenOf(session)}
		replicas := replicaBridges(session)
		pids := map[string]int{}
		for _, m := range regexp.MustCompile(`started the (manager-\d) \(pid (\d+)\)`).FindAllStringSubmatch(string(session.Err.Contents()), -1) {
			pids[m[1]], _ = strconv.Atoi(m[2])
		}
		acquired := regexp.MustCompile(`\[(manager-\d)\] .*(?i:successfully acquired lease)`)
		leader := func() string {
			m := acquired.FindAllStringSubmatch(string(session.Err.Contents()), -1)
			if len(m) == 0 {
				return ""
			}
			return m[len(m)-1][1]
		}
		Eventually(leader, 30*time.Second).ShouldNot(BeEmpty())
		first := leader()

		checkIn := func(base, bearer string) (int, string) { return checkInAs(base, bearer, "goes-quiet") }
		code, credential := checkIn(replicas[0], token[1])
		Expect(code).To(Equal(http.StatusOK))
		// Check-ins for 10 s through both replicas (held, persisted every
		// 2 s), then the cluster goes quiet.
		var last time.Time
		for i := range 20 {
			Eventually(func() int { c, _ := checkIn(replicas[i%2], credential); return c }).Should(Equal(http.StatusOK))
			last = time.Now()
			time.Sleep(500 * time.Millisecond)
		}
		// The leader stops (SIGTERM: its held check-ins are written); the
		// other replica takes over the controllers.
		Expect(syscall.Kill(pids[first], syscall.SIGTERM)).To(Succeed())
		Eventually(session.Err, 30*time.Second).Should(gbytes.Say(first + ` exited; 1 manager replicas remain`))
		Eventually(leader, 30*time.Second).ShouldNot(Equal(first))

		kubectl := kubectlIn(state)
		stale := func() string {
			out, _ := kubectl("get", "clusterreport", "goes-quiet", "-o", `jsonpath={.status.conditions[?(@.type=="Stale")].status}`)
			return out
		}
		// Not before the threshold (less a persist interval and a flush
		// tick), and by the threshold plus a few seconds of reconcile.
		// (Absent while the cluster has never been stale.)
		Consistently(stale, time.Until(last.Add(50*time.Second-6*time.Second)), time.Second).ShouldNot(Equal("True"))
		Eventually(stale, time.Until(last.Add(50*time.Second+10*time.Second)), time.Second).Should(Equal("True"), func() string {
			out, _ := kubectl("get", "clusterreport", "goes-quiet", "-o", "jsonpath={.status}")
			return fmt.Sprintf("last check-in %s, now %s, status %s", last.UTC().Format(time.RFC3339), time.Now().UTC().Format(time.RFC3339), out)
		})

		session.Signal(syscall.SIGINT)
		Eventually(session, time.Minute).Should(gexec.Exit(0))
		Expect(util.ProcessesMentioning(state)).To(BeEmpty())
	})
})

// registrationTokenOf is the registration token make dev printed.
func registrationTokenOf(session *gexec.Session) string {
	GinkgoHelper()
	token := regexp.MustCompile(`\((\S+) is a registration token`).FindStringSubmatch(string(session.Out.Contents()))
	Expect(token).To(HaveLen(2))
	return token[1]
}

// replicaBridges are the bridge URLs of each replica (not the port that
// reaches either), from their logs.
func replicaBridges(session *gexec.Session) []string {
	GinkgoHelper()
	var replicas []string
	Eventually(func() []string {
		replicas = nil
		for _, m := range regexp.MustCompile(`\[bridge-\d\] .*bridge listening.*?(127\.0\.0\.1:\d+)`).FindAllStringSubmatch(string(session.Err.Contents()), -1) {
			replicas = append(replicas, "http://"+m[1])
		}
		return replicas
	}, 30*time.Second).Should(HaveLen(2))
	return replicas
}

// checkInAs checks cluster id in at base with bearer, and returns the
// status and the credential the answer issued, if any.
func checkInAs(base, bearer, id string) (int, string) {
	GinkgoHelper()
	req, err := http.NewRequest(http.MethodPost, base+"/v3/clusters",
		strings.NewReader(`{"id":"`+id+`","components":[{"component":{"name":"router"},"version":{"version":"1.0.0"}}]}`))
	Expect(err).NotTo(HaveOccurred())
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+bearer)
	resp, err := http.DefaultClient.Do(req)
	Expect(err).NotTo(HaveOccurred())
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, resp.Header.Get("X-Trainyard-Credential")
}
