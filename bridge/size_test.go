package bridge_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/client-go/kubernetes"

	trainyardv1 "github.com/trainyard-dev/trainyard/api/v1alpha1"
	"github.com/trainyard-dev/trainyard/bridge"
)

// The most a new cluster's report with three components may take as the
// API server serves it (issue 32): every list of the fleet sends it, every
// write stores it. It was 4,464 bytes (managedFields 2,124 of them), then
// 1,928 with every field the controller computes stored.
const (
	// reportBytesGoal is issue 32's goal, for the report as the fleet holds
	// it: the cluster has checked in with its credential.
	reportBytesGoal = 1500
	// registeredBytesCeiling is the same report between the registration
	// and the first check-in with the credential (minutes: an agent checks
	// in at once): the credential-unused annotation, 56 bytes, is there.
	registeredBytesCeiling = 1560
)

var _ = Describe("a stored report's size", func() {
	It("stays under the goal for a new cluster of three components, with the whole stack in place", func() {
		ns := namespace()
		m := tokenMode(ns)
		for i := range 3 {
			for _, v := range []string{"1.0.0", "1.1.0", "2.0.0"} {
				Expect(m.publish("stable", fmt.Sprintf("comp-%d", i), v, `{}`).code).To(Equal(http.StatusOK))
			}
		}
		cs := kubernetes.NewForConfigOrDie(cfg)
		// stored is the report as the API server serves it, once the
		// controller has computed every component's state.
		stored := func(checkIns int64) (raw []byte, rep trainyardv1.ClusterReport) {
			GinkgoHelper()
			Eventually(func(g Gomega) {
				var err error
				raw, err = cs.RESTClient().Get().AbsPath("/apis/trainyard.dev/v1alpha1/namespaces", ns, "clusterreports",
					trainyardv1.ClusterReportName(clusterID)).DoRaw(context.Background())
				g.Expect(err).NotTo(HaveOccurred())
				rep = trainyardv1.ClusterReport{}
				g.Expect(json.Unmarshal(raw, &rep)).To(Succeed())
				g.Expect(rep.Status.CheckIns).To(Equal(checkIns))
				g.Expect(rep.Status.ObservedGeneration).To(Equal(rep.Generation))
				g.Expect(rep.Status.Summary).NotTo(BeNil())
				g.Expect(*rep.Status.Summary).To(Equal(trainyardv1.ComponentSummary{Total: 3, UpdateAvailable: 2, UpToDate: 1}))
			}).Should(Succeed())
			return raw, rep
		}

		// A registration: what onboarding stores (credential annotations
		// included).
		r := do(http.MethodPost, m.url+"/v3/clusters", "application/json", checkinBody(clusterID, "1.0.0", "1.1.0", "2.0.0"), bearerAuth("token-a"))
		Expect(r.code).To(Equal(http.StatusOK), string(r.body))
		cred := r.header.Get(bridge.HeaderCredential)
		Expect(cred).NotTo(BeEmpty())
		usedTokens.add(cred)
		raw, rep := stored(1)
		Expect(rep.Annotations).To(HaveKey(trainyardv1.AnnotationCredentialUnused))
		AddReportEntry("bytes per report, registered", len(raw))
		Expect(len(raw)).To(BeNumerically("<", registeredBytesCeiling), "the stored report:\n%s", raw)

		// The first check-in with the credential: the report as the fleet
		// holds it.
		r = do(http.MethodPost, m.url+"/v3/clusters", "application/json", checkinBody(clusterID, "1.0.0", "1.1.0", "2.0.0"), bearerAuth(cred))
		Expect(r.code).To(Equal(http.StatusOK), string(r.body))
		raw, rep = stored(2)
		Expect(rep.Annotations).NotTo(HaveKey(trainyardv1.AnnotationCredentialUnused))
		Expect(rep.ManagedFields).To(BeEmpty(), "the webhook clears them at creation, and no write brings them back")
		Expect(rep.Labels).To(BeEmpty(), "no labels: a client selects on the summary's counts")
		Expect(meta.FindStatusCondition(rep.Status.Conditions, trainyardv1.ConditionStale)).To(BeNil(), "never stale: no Stale condition")

		// What is left out is what the getters derive: nothing is lost.
		Expect(rep.Status.Components).To(HaveLen(3))
		for i, want := range []struct {
			state          trainyardv1.ComponentState
			latest, recomm string
		}{{trainyardv1.StateUpdateAvailable, "2.0.0", "2.0.0"}, {trainyardv1.StateUpdateAvailable, "2.0.0", "2.0.0"}, {trainyardv1.StateUpToDate, "2.0.0", ""}} {
			c := rep.Status.Components[i]
			Expect(c.State).To(Equal(want.state), c.Name)
			Expect(c.GetLatest()).To(Equal(want.latest), c.Name)
			Expect(c.Recommended).To(Equal(want.recomm), c.Name)
			if want.recomm != "" {
				Expect(c.GetPath()).To(Equal([]string{want.recomm}), c.Name)
			}
			Expect(c.SinceOr(rep.Status.FirstSeen)).To(Equal(rep.Status.FirstSeen), c.Name)
		}
		AddReportEntry("bytes per report, checked in", len(raw))
		Expect(len(raw)).To(BeNumerically("<", reportBytesGoal), "the stored report:\n%s", raw)
	})
})
