package bridge_test

import (
	"net/http"
	"sync"
	"time"

	"github.com/go-logr/logr/funcr"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/trainyard-dev/trainyard/bridge"
)

var _ = Describe("the audit log", func() {
	It("has a line for each write that changes something, not for heartbeats or the multi-get", func() {
		var mu sync.Mutex
		var lines []string
		audit := funcr.New(func(_, args string) {
			mu.Lock()
			defer mu.Unlock()
			lines = append(lines, args)
		}, funcr.Options{})
		audited := func() []string {
			mu.Lock()
			defer mu.Unlock()
			return append([]string(nil), lines...)
		}
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
