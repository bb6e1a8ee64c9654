package bridge_test

import (
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/trainyard-dev/trainyard/bridge"
)

// auditLog is an audit logger that keeps its lines, and what it has kept.
func auditLog() (logr.Logger, func() []string) {
	var mu sync.Mutex
	var lines []string
	audit := funcr.New(func(_, args string) {
		mu.Lock()
		defer mu.Unlock()
		lines = append(lines, args)
	}, funcr.Options{})
	return audit, func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), lines...)
	}
}

var _ = Describe("the audit log", func() {
	It("has a line for each write that changes something, not for heartbeats or the multi-get", func() {
		audit, audited := auditLog()
		m := startManager(namespace(), time.Minute, func(o *bridge.Options) { o.Audit = audit })
		DeferCleanup(func() { m.stop() })

		checkIn := func(version string) {
			GinkgoHelper()
			r := post(m.url+"/v3/clusters", `{"id":"audited","components":[{"component":{"name":"router"},"version":{"train":"stable","version":"`+version+`"}}]}`)
			Expect(r.code).To(Equal(http.StatusOK), string(r.body))
		}
		checkIn("v1.0.0") // a new cluster
		Expect(audited()).To(HaveLen(1))
		Expect(audited()[0]).To(And(ContainSubstring(`"path"="/v3/clusters"`), ContainSubstring(`"code"=200`)))

		checkIn("v1.0.0") // nothing changed: a heartbeat
		Expect(post(m.url+"/v3/versions/latest", `{"data":[{"component":{"name":"router"}}]}`).code).To(Equal(http.StatusOK))
		Expect(audited()).To(HaveLen(1))

		checkIn("v1.1.0") // what the cluster runs changed
		Expect(audited()).To(HaveLen(2))

		// Refused writes are audited too.
		Expect(post(m.url+"/v3/clusters", `{"id":""}`).code).To(Equal(http.StatusUnprocessableEntity))
		Expect(audited()).To(HaveLen(3))
		Expect(audited()[2]).To(ContainSubstring(`"code"=422`))
	})
})

var _ = Describe("request IDs", func() {
	It("names every answer, its error body and its audit line with the client's X-Request-ID, or a new one", func() {
		audit, audited := auditLog()
		m := startManager(namespace(), time.Minute, func(o *bridge.Options) { o.Audit = audit })
		DeferCleanup(func() { m.stop() })
		withID := func(id string) func(*http.Request) {
			return func(r *http.Request) { r.Header.Set(bridge.HeaderRequestID, id) }
		}

		// The client's ID is kept: on the answer, in the error body, in the audit line.
		r := do(http.MethodPost, m.url+"/v3/clusters", "application/json", `{"id":""}`, withID("ci-run-42/step.7"))
		Expect(r.code).To(Equal(http.StatusUnprocessableEntity))
		Expect(r.header.Get(bridge.HeaderRequestID)).To(Equal("ci-run-42/step.7"))
		Expect(r.errorOf().RequestID).To(Equal("ci-run-42/step.7"))
		Eventually(audited).Should(ContainElement(ContainSubstring(`"requestId"="ci-run-42/step.7"`)))

		// Success answers carry one too; without a header, a new one.
		r = post(m.url+"/v3/clusters", checkinBody("c1"))
		Expect(r.code).To(Equal(http.StatusOK))
		Expect(r.header.Get(bridge.HeaderRequestID)).To(MatchRegexp(`^[0-9a-f]{32}$`))
		// Routes that exist nowhere, too.
		r = get(m.url + "/v9/nothing")
		Expect(r.header.Get(bridge.HeaderRequestID)).To(MatchRegexp(`^[0-9a-f]{32}$`))
		Expect(r.errorOf().RequestID).To(Equal(r.header.Get(bridge.HeaderRequestID)))

		// An ID that is empty, too long or not printable is replaced, never echoed.
		for _, bad := range []string{strings.Repeat("x", 65), "two words", "new\u00e9"} {
			r = do(http.MethodGet, m.url+"/v3/clusters/nope", "", "", withID(bad))
			Expect(r.code).To(Equal(http.StatusNotFound))
			Expect(r.header.Get(bridge.HeaderRequestID)).To(MatchRegexp(`^[0-9a-f]{32}$`), "for %q", bad)
			Expect(r.errorOf().RequestID).To(Equal(r.header.Get(bridge.HeaderRequestID)))
		}
		Expect(do(http.MethodGet, m.url+"/v3/clusters/nope", "", "", withID(strings.Repeat("y", 64))).header.Get(bridge.HeaderRequestID)).
			To(Equal(strings.Repeat("y", 64)))
	})
})
