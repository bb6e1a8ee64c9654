package controllers_test

import (
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	trainyardv1 "github.com/trainyard-dev/trainyard/api/v1alpha1"
	"github.com/trainyard-dev/trainyard/internal/testenv"
)

// argoHealth runs the check docs/argocd.md documents (testenv.ArgoHealth).
func argoHealth(obj map[string]any) (status, message string) {
	GinkgoHelper()
	status, message, err := testenv.ArgoHealth(obj)
	Expect(err).NotTo(HaveOccurred())
	return status, message
}

// served is an object as the API server serves it (kind and all).
func served(ns, kind, name string) (map[string]any, error) {
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(trainyardv1.GroupVersion.WithKind(kind))
	err := k8sClient.Get(suiteCtx, types.NamespacedName{Namespace: ns, Name: name}, u)
	return u.Object, err
}

// healthOf is "<status>: <message>" of an object, for Eventually.
func healthOf(ns, kind, name string) func() (string, error) {
	return func() (string, error) {
		obj, err := served(ns, kind, name)
		if err != nil {
			return "", err
		}
		status, message := argoHealth(obj)
		return status + ": " + message, nil
	}
}

var _ = Describe("The documented Argo CD health check", func() {
	var ns string
	BeforeEach(func() { ns = newNamespace() })

	It("reads releases and trains: Healthy when Ready, Degraded when Stalled, Progressing before the controller has looked", func() {
		publish(ns, "db", "stable", "14.2.3", 1)
		Eventually(healthOf(ns, "ReleaseTrain", "db.stable")).Should(HavePrefix("Healthy: "))
		Eventually(healthOf(ns, "ComponentRelease", "db.stable.14.2.3")).Should(HavePrefix("Healthy: "))

		t := train(ns, "db.stable")
		before := t.DeepCopy()
		t.Spec.VersionRange = ">>14"
		Expect(k8sClient.Patch(suiteCtx, t, client.MergeFrom(before))).To(Succeed())
		Eventually(healthOf(ns, "ReleaseTrain", "db.stable")).Should(
			HavePrefix(`Degraded: versionRange ">>14" is not a semantic-version constraint`))

		// A spec change the controller has not yet seen.
		obj, err := served(ns, "ComponentRelease", "db.stable.14.2.3")
		Expect(err).NotTo(HaveOccurred())
		Expect(unstructured.SetNestedField(obj, int64(99), "metadata", "generation")).To(Succeed())
		status, message := argoHealth(obj)
		Expect(status).To(Equal("Progressing"))
		Expect(message).To(Equal("Waiting for the controller to observe generation 99"))
		delete(obj, "status")
		status, _ = argoHealth(obj)
		Expect(status).To(Equal("Progressing"))
	})

	It("reads cluster reports: Degraded when a retracted release runs or the cluster is stale, Healthy when merely behind", func() {
		publish(ns, "router", "stable", "v1.0.0", 1)
		publish(ns, "router", "stable", "v1.1.0", 2)
		checkIn(ns, "behind", comp("router", "stable", "v1.0.0"))
		Eventually(stateOf(ns, "behind", "router")).Should(Equal(trainyardv1.StateUpdateAvailable))
		Eventually(healthOf(ns, "ClusterReport", "behind")).Should(HavePrefix("Healthy: "))

		r := release(ns, "router.stable.v1.0.0")
		before := r.DeepCopy()
		r.Spec.Retracted = &trainyardv1.Retraction{Reason: "corrupts the cache"}
		Expect(k8sClient.Patch(suiteCtx, r, client.MergeFrom(before))).To(Succeed())
		Eventually(healthOf(ns, "ClusterReport", "behind")).Should(Equal("Degraded: router v1.0.0"))

		checkIn(ns, "quiet", comp("router", "stable", "v1.1.0"))
		Eventually(healthOf(ns, "ClusterReport", "quiet")).Should(HavePrefix("Healthy: "))
		fakeClock.Step(staleThreshold)
		Eventually(healthOf(ns, "ClusterReport", "quiet")).Should(HavePrefix("Degraded: no check-in within the stale threshold"))
	})
})
