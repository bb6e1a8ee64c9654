package bridge_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"k8s.io/client-go/kubernetes"

	trainyardv1 "github.com/trainyard-dev/trainyard/api/v1alpha1"
)

// reportBytesCeiling is the most a new cluster's report with three
// components may take as the API server serves it (issue 32): every list of
// the fleet sends it, every write stores it. It was 4,464 bytes,
// managedFields 2,124 of them, and is 1,911 now; the goal, 1,500,
// is not reached yet (docs/performance.md says what the rest is).
const reportBytesCeiling = 2000

var _ = Describe("a stored report's size", func() {
	It("stays under the goal for a new cluster of three components, with the whole stack in place", func() {
		ns := namespace()
		m := tokenMode(ns)
		for i := range 3 {
			for _, v := range []string{"1.0.0", "1.1.0", "2.0.0"} {
				Expect(m.publish("stable", fmt.Sprintf("comp-%d", i), v, `{}`).code).To(Equal(http.StatusOK))
			}
		}
		// A registration: what onboarding stores (credential annotations
		// included).
		r := do(http.MethodPost, m.url+"/v3/clusters", "application/json", checkinBody(clusterID, "1.0.0", "1.1.0", "2.0.0"), bearerAuth("token-a"))
		Expect(r.code).To(Equal(http.StatusOK), string(r.body))

		cs := kubernetes.NewForConfigOrDie(cfg)
		var raw []byte
		var stored trainyardv1.ClusterReport
		// Once the controller has computed the status and its labels.
		Eventually(func(g Gomega) {
			var err error
			raw, err = cs.RESTClient().Get().AbsPath("/apis/trainyard.dev/v1alpha1/namespaces", ns, "clusterreports",
				trainyardv1.ClusterReportName(clusterID)).DoRaw(context.Background())
			g.Expect(err).NotTo(HaveOccurred())
			stored = trainyardv1.ClusterReport{}
			g.Expect(json.Unmarshal(raw, &stored)).To(Succeed())
			g.Expect(stored.Status.Summary).NotTo(BeNil())
			g.Expect(stored.Status.Summary.UpdateAvailable).To(BeEquivalentTo(2))
			// No labels: a client selects on the summary's counts.
			g.Expect(stored.Labels).To(BeEmpty())
		}).Should(Succeed())
		Expect(stored.ManagedFields).To(BeEmpty(), "the webhook clears them at creation, and no write brings them back")
		Expect(stored.Status.Components).To(HaveLen(3))
		Expect(stored.Status.Components[0].GetPath()).To(Equal([]string{"2.0.0"}))
		AddReportEntry("bytes per report", len(raw))
		Expect(len(raw)).To(BeNumerically("<", reportBytesCeiling), "the stored report:\n%s", raw)
	})
})
