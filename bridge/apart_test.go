package bridge_test

import (
	"context"
	"net"
	"net/http"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	trainyardv1 "github.com/trainyard-dev/trainyard/api/v1alpha1"
	"github.com/trainyard-dev/trainyard/bridge"
	"github.com/trainyard-dev/trainyard/internal/index"
	tymanager "github.com/trainyard-dev/trainyard/internal/manager"
	"github.com/trainyard-dev/trainyard/internal/testenv"
)

// `trainyard bridge` caches slim reports (bridge.SlimReport): no labels, no
// conditions, no summary, few component statuses. Its writes must not send
// what it lacks back to the API server.
var _ = Describe("the bridge apart, with its slim cache", func() {
	It("writes a check-in, a version change and held check-ins without touching what it does not cache", func() {
		ns := namespace()
		m := startManager(ns, time.Hour) // the controllers (and a bridge this spec does not use)
		DeferCleanup(func() { m.stop() })
		l, err := net.Listen("tcp", "127.0.0.1:0")
		Expect(err).NotTo(HaveOccurred())
		o := bridge.Options{Namespace: ns, CheckInAuth: bridge.CheckInOpen, Heartbeat: time.Hour,
			RateLimit: 1e6, RateBurst: 1e6, Listener: l}
		// As `trainyard bridge` sets itself up (internal/manager/bridge.go).
		_, stop, err := testenv.StartManager(cfg, testenv.Manager{Scheme: scheme, Cache: tymanager.BridgeCacheOptions(),
			Setups: []tymanager.Setup{tymanager.SetupIndexes(index.Bridge...), tymanager.SetupBridge(o)}})
		Expect(err).NotTo(HaveOccurred())
		stopped := false
		DeferCleanup(func() {
			if !stopped {
				Expect(stop()).To(Succeed())
			}
		})
		base := "http://" + l.Addr().String()
		Eventually(func() int { return post(base+"/v3/clusters", checkinBody(clusterID, "1.0.0")).code }).Should(Equal(http.StatusOK))

		// The controller's status, and a label of the platform team's.
		key := types.NamespacedName{Namespace: ns, Name: trainyardv1.ClusterReportName(clusterID)}
		Eventually(func(g Gomega) {
			r := report(ns, clusterID)
			g.Expect(r).NotTo(BeNil())
			g.Expect(r.Status.Components).To(HaveLen(1))
			g.Expect(r.Status.Conditions).NotTo(BeEmpty())
			g.Expect(r.Status.Summary).NotTo(BeNil())
		}).Should(Succeed())
		Expect(k8sClient.Patch(context.Background(), &trainyardv1.ClusterReport{ObjectMeta: report(ns, clusterID).ObjectMeta},
			client.RawPatch(types.MergePatchType, []byte(`{"metadata":{"labels":{"team":"edge"}}}`)))).To(Succeed())

		// Every version of the report from here on keeps them.
		wc, err := client.NewWithWatch(cfg, client.Options{Scheme: scheme})
		Expect(err).NotTo(HaveOccurred())
		w, err := wc.Watch(context.Background(), &trainyardv1.ClusterReportList{}, client.InNamespace(ns))
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(w.Stop)
		var seen []*trainyardv1.ClusterReport
		collect := func() []*trainyardv1.ClusterReport {
			for {
				select {
				case e := <-w.ResultChan():
					if r, ok := e.Object.(*trainyardv1.ClusterReport); ok && r.Name == key.Name {
						seen = append(seen, r)
					}
				default:
					return seen
				}
			}
		}

		// A version change (a spec patch), then two held check-ins, written
		// as the bridge stops (a status patch).
		Expect(post(base+"/v3/clusters", checkinBody(clusterID, "1.1.0")).code).To(Equal(http.StatusOK))
		Eventually(func() string { return report(ns, clusterID).Spec.Components[0].Version }).Should(Equal("1.1.0"))
		for range 2 {
			Expect(post(base+"/v3/clusters", checkinBody(clusterID, "1.1.0")).code).To(Equal(http.StatusOK))
		}
		Expect(stop()).To(Succeed())
		stopped = true
		Eventually(func() int64 { return report(ns, clusterID).Status.CheckIns }).Should(BeEquivalentTo(4))

		Eventually(collect).ShouldNot(BeEmpty())
		Consistently(collect, time.Second).Should(HaveEach(Satisfy(func(r *trainyardv1.ClusterReport) bool {
			return r.Labels["team"] == "edge" && len(r.Status.Components) == 1 && len(r.Status.Conditions) > 0 &&
				r.Status.Summary != nil
		})), "a write of the bridge apart dropped what its cache lacks")
	})
})
