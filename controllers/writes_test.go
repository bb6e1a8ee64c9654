package controllers_test

import (
	"strings"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	trainyardv1 "github.com/trainyard-dev/trainyard/api/v1alpha1"
)

var _ = Describe("Writes", func() {
	It("writes nothing when a forced resync changes nothing", func() {
		ns := newNamespace()
		publish(ns, "router", "stable", "v1.0.0", 1)
		publish(ns, "router", "stable", "v1.1.0", 2)
		publish(ns, "router", "stable", "nightly", 3)
		checkIn(ns, "a", comp("router", "stable", "v1.0.0"))
		checkIn(ns, "b", comp("router", "stable", "v1.1.0"))
		Eventually(adoptionSummary(ns, "router.stable")).Should(Equal("1/2"))
		Eventually(stateOf(ns, "a", "router")).Should(Equal(trainyardv1.StateUpdateAvailable))
		Eventually(stateOf(ns, "b", "router")).Should(Equal(trainyardv1.StateUpToDate))
		for _, id := range []string{"a", "b"} {
			Eventually(conditionOf(ns, id, trainyardv1.ConditionReady)).Should(Equal(metav1.ConditionTrue))
		}
		Eventually(func() bool { return release(ns, "router.stable.v1.1.0").Status.Latest }).Should(BeTrue())
		for _, name := range []string{"router.stable.v1.0.0", "router.stable.v1.1.0", "router.stable.nightly"} {
			Eventually(func() bool {
				return meta.IsStatusConditionTrue(release(ns, name).Status.Conditions, trainyardv1.ConditionReady)
			}).Should(BeTrue(), name)
		}

		versions := func() map[string]string {
			rv := map[string]string{}
			var rels trainyardv1.ComponentReleaseList
			var trains trainyardv1.ReleaseTrainList
			var reps trainyardv1.ClusterReportList
			for _, l := range []client.ObjectList{&rels, &trains, &reps} {
				Expect(k8sClient.List(suiteCtx, l, client.InNamespace(ns))).To(Succeed())
			}
			for _, o := range rels.Items {
				rv["release/"+o.Name] = o.ResourceVersion
			}
			for _, o := range trains.Items {
				rv["train/"+o.Name] = o.ResourceVersion
			}
			for _, o := range reps.Items {
				rv["report/"+o.Name] = o.ResourceVersion
			}
			return rv
		}
		settled(ns, "a")
		settled(ns, "b")
		before := versions()
		Expect(before).To(HaveLen(3 + 1 + 2))
		for _, name := range []string{"router.stable", "a", "b"} {
			req := reconcile.Request{NamespacedName: types.NamespacedName{Namespace: ns, Name: name}}
			if strings.Contains(name, ".") {
				_, err := trainRec.Reconcile(suiteCtx, req)
				Expect(err).NotTo(HaveOccurred())
			} else {
				_, err := reportRec.Reconcile(suiteCtx, req)
				Expect(err).NotTo(HaveOccurred())
			}
		}
		Expect(versions()).To(Equal(before))
	})
})
