package agent_test

import (
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"fmt"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/trainyard-dev/trainyard/agent"
	"github.com/trainyard-dev/trainyard/agent/helmrelease"
	trainyardv1 "github.com/trainyard-dev/trainyard/api/v1alpha1"
)

// releaseSecret is a Secret as Helm 3's storage driver writes it: the
// release JSON, gzipped, base64-encoded (and base64 again by the API).
func releaseSecret(ns, name string, revision int, status, chart, version string, labels map[string]string) *corev1.Secret {
	var gz bytes.Buffer
	w := gzip.NewWriter(&gz)
	fmt.Fprintf(w, `{"name":%q,"version":%d,"chart":{"metadata":{"name":%q,"version":%q,"appVersion":"1.0"},"values":{}},"manifest":"---"}`,
		name, revision, chart, version)
	Expect(w.Close()).To(Succeed())
	l := map[string]string{"owner": "helm", "name": name, "status": status, "version": fmt.Sprint(revision)}
	for k, v := range labels {
		l[k] = v
	}
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("sh.helm.release.v1.%s.v%d", name, revision), Labels: l},
		Type:       helmrelease.SecretType,
		Data:       map[string][]byte{"release": []byte(base64.StdEncoding.EncodeToString(gz.Bytes()))},
	}
}

var _ = Describe("Helm releases", func() {
	It("decodes a release and refuses what is not one", func() {
		s := releaseSecret("x", "web", 1, "deployed", "nginx", "18.1.0", nil)
		chart, version, app, err := helmrelease.Decode(s.Data["release"])
		Expect(err).NotTo(HaveOccurred())
		Expect([]string{chart, version, app}).To(Equal([]string{"nginx", "18.1.0", "1.0"}))
		for _, bad := range []string{"", "not base64!", base64.StdEncoding.EncodeToString([]byte(`{"chart":{}}`)),
			base64.StdEncoding.EncodeToString([]byte{0x1f, 0x8b, 0x08, 0, 0})} {
			_, _, _, err := helmrelease.Decode([]byte(bad))
			Expect(err).To(HaveOccurred(), "%q", bad)
		}
	})

	It("reports deployed releases as components behind the flag, and a release change triggers a check-in", func() {
		ns := namespace(workload)
		Expect(workload.Create(ctx, deployment(ns, "web", "web", "2.0.0", nil))).To(Succeed())
		for _, s := range []*corev1.Secret{
			releaseSecret(ns, "ingress", 1, "superseded", "ingress-nginx", "4.10.0", nil),
			releaseSecret(ns, "ingress", 2, "deployed", "ingress-nginx", "4.11.0", map[string]string{agent.LabelTrain: "lts"}),
			// The same name as a labelled workload: the workload wins.
			releaseSecret(ns, "web", 1, "deployed", "web", "0.3.0", nil),
			releaseSecret(ns, "broken", 1, "deployed", "", "", nil),
		} {
			Expect(workload.Create(ctx, s)).To(Succeed())
		}
		b := directHub(hubCfg)
		a := newAgent(agent.Options{Hub: b, ClusterID: "helm-1",
			Interval: time.Hour, Debounce: 100 * time.Millisecond}, []string{ns}, "workloads", "helm")
		run(a)

		components := func() []trainyardv1.ReportedComponent {
			if r := hubReport("helm-1"); r != nil {
				return r.Spec.Components
			}
			return nil
		}
		Eventually(components).Should(ConsistOf(
			trainyardv1.ReportedComponent{Name: "ingress-nginx", Train: "lts", Version: "4.11.0", Type: "HelmRelease"},
			trainyardv1.ReportedComponent{Name: "web", Train: "stable", Version: "2.0.0", Type: "Deployment", Image: "example/web:2.0.0", Readiness: notRolledOut},
		))

		// helm upgrade: the new revision is deployed, the old superseded.
		old := &corev1.Secret{}
		Expect(workload.Get(ctx, client.ObjectKey{Namespace: ns, Name: "sh.helm.release.v1.ingress.v2"}, old)).To(Succeed())
		old.Labels["status"] = "superseded"
		Expect(workload.Update(ctx, old)).To(Succeed())
		Expect(workload.Create(ctx, releaseSecret(ns, "ingress", 3, "deployed", "ingress-nginx", "4.12.0", nil))).To(Succeed())
		Eventually(components, 10*time.Second).Should(ContainElement(
			trainyardv1.ReportedComponent{Name: "ingress-nginx", Train: "stable", Version: "4.12.0", Type: "HelmRelease"}))

		// Without the flag, no release is reported.
		plain := newAgent(agent.Options{Hub: b, ClusterID: "helm-2"}, []string{ns})
		Expect(plain.CheckIn(ctx)).To(Succeed())
		Expect(hubReport("helm-2").Spec.Components).To(ConsistOf(HaveField("Name", "web")))
	})
})

var _ = Describe("updates", func() {
	// The hub has a newer release of the component the cluster runs.
	newer := func(component string) []string {
		GinkgoHelper()
		ns := namespace(workload)
		Expect(workload.Create(ctx, deployment(ns, component, component, "3.1.0", nil))).To(Succeed())
		Expect(hub.Create(ctx, &trainyardv1.ComponentRelease{
			ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: trainyardv1.ReleaseName(component, "stable", "3.2.0")},
			Spec:       trainyardv1.ComponentReleaseSpec{Component: component, Train: "stable", Version: "3.2.0"},
		})).To(Succeed())
		return []string{ns}
	}

	It("are asked of the hub's multi-get after a check-in and logged", func() {
		a := newAgent(agent.Options{HubURL: hubURL, Token: registrationToken, ClusterID: "updates-1"}, newer("queue"))
		// Once the hub's controller has made 3.2.0 the train's latest.
		Eventually(func() int64 {
			Expect(a.CheckIn(ctx)).To(Succeed())
			return a.Updates()
		}, 20*time.Second, 200*time.Millisecond).Should(BeEquivalentTo(1))
	})

	It("are read from the report's status in direct mode", func() {
		a := newAgent(agent.Options{Hub: directHub(hubCfg), ClusterID: "updates-2"}, newer("stream"))
		// Once the hub's controllers have made 3.2.0 the train's latest and
		// computed the report's status.
		Eventually(func() int64 {
			Expect(a.CheckIn(ctx)).To(Succeed())
			return a.Updates()
		}, 20*time.Second, 200*time.Millisecond).Should(BeEquivalentTo(1))
	})
})
