package webhook_test

import (
	"context"
	"fmt"
	"slices"
	"sync"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	trainyardv1 "github.com/trainyard-dev/trainyard/api/v1alpha1"
	"github.com/trainyard-dev/trainyard/internal/testenv"
)

func namespace() string {
	GinkgoHelper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "w-"}}
	Expect(k8sClient.Create(ctx, ns)).To(Succeed())
	return ns.Name
}

func newRelease(ns, component, train, version string) *trainyardv1.ComponentRelease {
	return &trainyardv1.ComponentRelease{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: trainyardv1.ReleaseName(component, train, version)},
		Spec:       trainyardv1.ComponentReleaseSpec{Component: component, Train: train, Version: version},
	}
}

func latestOf(ns, name string) func() string {
	return func() string {
		t := &trainyardv1.ReleaseTrain{}
		if err := k8sClient.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, t); err != nil || t.Status.Latest == nil {
			return ""
		}
		return t.Status.Latest.Version
	}
}

var _ = Describe("the webhook, called by the API server", func() {
	var ns string
	BeforeEach(func() { ns = namespace(); warnings.take() })

	It("defaults the release time and the trains", func() {
		r := newRelease(ns, "router", "", "v1.0.0")
		r.Name = "router.stable.v1.0.0"
		Expect(k8sClient.Create(ctx, r)).To(Succeed())
		Expect(r.Spec.Train).To(Equal("stable"))
		Expect(r.Spec.Released).NotTo(BeNil())
		Expect(r.Spec.Released.Time).To(BeTemporally("~", r.CreationTimestamp.Time, 5e9))

		rep := &trainyardv1.ClusterReport{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "c1"},
			Spec: trainyardv1.ClusterReportSpec{ClusterID: "c1",
				Components: []trainyardv1.ReportedComponent{{Name: "router", Version: "v1.0.0"}}},
		}
		Expect(k8sClient.Create(ctx, rep)).To(Succeed())
		Expect(rep.Spec.Components[0].Train).To(Equal("stable"))
	})

	It("mutates a report only while it has managedFields, clears them, and leaves its trains to the schema", func() {
		// The schema's default fills an omitted train in the API server.
		// The one mutating webhook for reports is called only for an object
		// with managedFields (its creation; a report stored before): once
		// cleared, a report's writes cost one webhook call, not two. An
		// empty train sent on purpose is refused, not guessed at.
		var mutating admissionregistrationv1.MutatingWebhookConfigurationList
		Expect(k8sClient.List(ctx, &mutating)).To(Succeed())
		Expect(mutating.Items).NotTo(BeEmpty())
		var forReports []admissionregistrationv1.MutatingWebhook
		for _, c := range mutating.Items {
			for _, h := range c.Webhooks {
				for _, rule := range h.Rules {
					if slices.Contains(rule.Resources, "clusterreports") {
						forReports = append(forReports, h)
					}
				}
			}
		}
		Expect(forReports).To(HaveLen(1))
		Expect(forReports[0].MatchConditions).To(ConsistOf(HaveField("Expression",
			"has(object.metadata.managedFields) && size(object.metadata.managedFields) > 0")))

		rep := &trainyardv1.ClusterReport{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "c3"},
			Spec: trainyardv1.ClusterReportSpec{ClusterID: "c3", Components: []trainyardv1.ReportedComponent{{Name: "router", Version: "v1.0.0"}}}}
		Expect(k8sClient.Create(ctx, rep)).To(Succeed())
		Expect(rep.ManagedFields).To(BeEmpty(), "cleared at creation")
		// A patch, not an update: the report controller runs in this suite
		// and may write the status first, and an update would then conflict.
		statusPatch := client.MergeFrom(rep.DeepCopy())
		rep.Status.CheckIns = 1
		Expect(k8sClient.Status().Patch(ctx, rep, statusPatch)).To(Succeed())
		patch := client.MergeFrom(rep.DeepCopy())
		rep.Spec.Components[0].Version = "v1.1.0"
		Expect(k8sClient.Patch(ctx, rep, patch)).To(Succeed())
		Expect(rep.ManagedFields).To(BeEmpty(), "none tracked after, by updates and patches")
		Expect(rep.Spec.Components[0].Train).To(Equal("stable"))
		u := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "trainyard.dev/v1alpha1", "kind": "ClusterReport",
			"metadata": map[string]any{"namespace": ns, "name": "c2"},
			"spec": map[string]any{"clusterID": "c2", "components": []any{
				map[string]any{"name": "router", "version": "v1.0.0", "train": ""}}},
		}}
		err := k8sClient.Create(ctx, u)
		Expect(apierrors.IsInvalid(err)).To(BeTrue(), "%v", err)
		Expect(err.Error()).To(ContainSubstring("spec.components[0].train"))
		Expect(err.Error()).To(ContainSubstring("at least 1 chars long"))
	})

	It("drops a new report's managedFields in the API server (the admission policy), so the mutating webhook is not called; without the policy, the webhook does it", func() {
		mutateCalls := func() float64 { return webhookCalls("/mutate-trainyard-dev-v1alpha1-clusterreport") }
		n := 0
		// callsFor is how often a creation called the mutating webhook.
		callsFor := func(g Gomega) float64 {
			n++
			id := fmt.Sprintf("policy-%d", n)
			rep := &trainyardv1.ClusterReport{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: id},
				Spec: trainyardv1.ClusterReportSpec{ClusterID: id, Components: []trainyardv1.ReportedComponent{{Name: "router", Version: "v1.0.0"}}}}
			before := mutateCalls()
			g.Expect(k8sClient.Create(ctx, rep)).To(Succeed())
			g.Expect(rep.ManagedFields).To(BeEmpty(), "cleared at creation")
			return mutateCalls() - before
		}
		// The policy is in place and run (testenv.Start installs
		// config/webhook/policy.yaml, as the chart does, and waits for it).
		Expect(callsFor(Default)).To(BeZero(), "the policy cleared them before the webhook's matchConditions were evaluated")
		Expect(callsFor(Default)).To(BeZero())

		// A hub without the policy (Kubernetes before 1.36, or the chart's
		// admissionPolicies.enabled=false): the webhook clears them. The
		// API server drops the binding from its own informer a moment later.
		binding := &unstructured.Unstructured{}
		binding.SetAPIVersion("admissionregistration.k8s.io/v1")
		binding.SetKind("MutatingAdmissionPolicyBinding")
		binding.SetName("clusterreport-managed-fields")
		Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(binding), binding)).To(Succeed())
		Expect(k8sClient.Delete(ctx, binding)).To(Succeed())
		DeferCleanup(func() {
			Expect(testenv.InstallPolicies(context.Background(), k8sClient)).To(Succeed())
			Eventually(callsFor).Should(BeZero(), "the policy runs again for the specs after this one")
		})
		Eventually(callsFor).Should(BeNumerically(">=", 1), "the webhook is called once the policy is gone, and clears them")
	})

	It("validates a report's writes that change its spec or annotations, and is not called for a label patch", func() {
		calls := func() float64 { return webhookCalls("/validate-trainyard-dev-v1alpha1-clusterreport") }
		var validating admissionregistrationv1.ValidatingWebhookConfigurationList
		Expect(k8sClient.List(ctx, &validating)).To(Succeed())
		var conds []admissionregistrationv1.MatchCondition
		for _, c := range validating.Items {
			for _, h := range c.Webhooks {
				if h.Name == "vclusterreport.trainyard.dev" {
					conds = append(conds, h.MatchConditions...)
				}
			}
		}
		Expect(conds).To(HaveLen(1))
		Expect(conds[0].Expression).To(ContainSubstring(":"+trainyardv1.ClusterServiceAccountPrefix+"')"),
			"a cluster's ServiceAccount is always validated")

		rep := &trainyardv1.ClusterReport{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "c4"},
			Spec: trainyardv1.ClusterReportSpec{ClusterID: "c4", Components: []trainyardv1.ReportedComponent{{Name: "router", Version: "v1.0.0"}}}}
		before := calls()
		Expect(k8sClient.Create(ctx, rep)).To(Succeed())
		Expect(calls()).To(Equal(before+1), "a creation is validated")

		// A label patch (the report controller's stale label): not sent.
		before = calls()
		Expect(k8sClient.Patch(ctx, rep, client.RawPatch(types.MergePatchType, []byte(`{"metadata":{"labels":{"team":"edge"}}}`)))).To(Succeed())
		Expect(rep.Labels).To(HaveKeyWithValue("team", "edge"))
		Expect(calls()).To(Equal(before))

		// A spec change and an annotation change are validated (the
		// annotation refused: only the webhook knows the pair's rules).
		patch := client.MergeFrom(rep.DeepCopy())
		rep.Spec.Components[0].Version = "v1.1.0"
		// (At least once: the API server runs a patch's admission again
		// when the report controller's status write lands in between.)
		Expect(k8sClient.Patch(ctx, rep, patch)).To(Succeed())
		Expect(calls()).To(BeNumerically(">", before))
		before = calls()
		err := k8sClient.Patch(ctx, rep, client.RawPatch(types.MergePatchType, []byte(`{"metadata":{"annotations":{"`+trainyardv1.AnnotationReissueHash+`":"x"}}}`)))
		Expect(apierrors.IsInvalid(err)).To(BeTrue(), "%v", err)
		Expect(err.Error()).To(ContainSubstring(trainyardv1.AnnotationReissueExpires))
		Expect(calls()).To(BeNumerically(">", before))
		stored := &trainyardv1.ClusterReport{}
		Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(rep), stored)).To(Succeed())
		Expect(stored.Annotations).NotTo(HaveKey(trainyardv1.AnnotationReissueHash))
	})

	It("names the field and what it expects when a value does not decode, not Go's words (issue 27 #18)", func() {
		release := func(spec map[string]any) *unstructured.Unstructured {
			return &unstructured.Unstructured{Object: map[string]any{
				"apiVersion": "trainyard.dev/v1alpha1", "kind": "ComponentRelease",
				"metadata": map[string]any{"namespace": ns, "name": "router.stable.v9.0.0"},
				"spec":     spec,
			}}
		}
		err := k8sClient.Create(ctx, release(map[string]any{"component": "router", "train": "stable", "version": "v9.0.0", "released": "yesterday"}))
		Expect(err).To(HaveOccurred())
		Expect(err.Error()).To(ContainSubstring(`spec.released: Invalid value: "yesterday": must be an RFC 3339 time such as 2026-12-03T10:00:00Z`))
		Expect(err.Error()).NotTo(ContainSubstring("2006-01-02"))
		err = k8sClient.Create(ctx, release(map[string]any{"component": "router", "train": "stable", "version": 9}))
		Expect(err).To(HaveOccurred())
		Expect(err.Error()).To(ContainSubstring(`spec.version: Invalid value: "9": must be a string, not a number`))
		Expect(err.Error()).NotTo(ContainSubstring("Go value"))
		var rel trainyardv1.ComponentRelease
		Expect(apierrors.IsNotFound(k8sClient.Get(ctx, client.ObjectKey{Namespace: ns, Name: "router.stable.v9.0.0"}, &rel))).To(BeTrue())
	})

	It("rejects a release whose name is not canonical, saying which name to use", func() {
		r := newRelease(ns, "router", "stable", "v1.0.0")
		r.Name = "router-1"
		err := k8sClient.Create(ctx, r)
		Expect(apierrors.IsInvalid(err)).To(BeTrue(), "%v", err)
		Expect(err.Error()).To(ContainSubstring(`metadata.name: Invalid value: "router-1": must be "router.stable.v1.0.0"`))
	})

	It("refuses a second release of the same semantic version, however spelled, with AlreadyExists", func() {
		Expect(k8sClient.Create(ctx, newRelease(ns, "router", "stable", "v1.0.0"))).To(Succeed())
		// The canonical name makes it the API server's refusal, so a client
		// that retries a create (the bridge's idempotent publish) sees 409
		// AlreadyExists, not a validation error.
		err := k8sClient.Create(ctx, newRelease(ns, "router", "stable", "1.0.0"))
		Expect(apierrors.IsAlreadyExists(err)).To(BeTrue(), "%v", err)
		Expect(err.Error()).To(ContainSubstring(`"router.stable.v1.0.0" already exists`))
	})

	It("lets exactly one of many concurrent creates of one semantic version win, whatever the spelling", func() {
		const n = 20
		var wg sync.WaitGroup
		errs := make([]error, n)
		for i := range n {
			version := "2.0.0"
			if i%2 == 1 {
				version = "v2.0.0"
			}
			wg.Go(func() { errs[i] = k8sClient.Create(ctx, newRelease(ns, "dns", "stable", version)) })
		}
		wg.Wait()
		won := 0
		for _, err := range errs {
			if err == nil {
				won++
				continue
			}
			Expect(apierrors.IsAlreadyExists(err)).To(BeTrue(), "%v", err)
			Expect(err.Error()).To(ContainSubstring("dns.stable.v2.0.0"))
		}
		Expect(won).To(Equal(1))
		var list trainyardv1.ComponentReleaseList
		Expect(k8sClient.List(ctx, &list, client.InNamespace(ns))).To(Succeed())
		Expect(list.Items).To(HaveLen(1))
	})

	It("rejects changes to identity with the webhook's message", func() {
		r := newRelease(ns, "router", "stable", "v2.0.0")
		Expect(k8sClient.Create(ctx, r)).To(Succeed())
		// Merge patches: the controller writes the status meanwhile.
		before := r.DeepCopy()
		r.Spec.Image = "example/router:v2"
		Expect(k8sClient.Patch(ctx, r, client.MergeFrom(before))).To(Succeed())
		before = r.DeepCopy()
		r.Spec.Train = "beta"
		err := k8sClient.Patch(ctx, r, client.MergeFrom(before))
		Expect(apierrors.IsInvalid(err)).To(BeTrue(), "%v", err)
		Expect(err.Error()).To(ContainSubstring("spec.train"))
		Expect(err.Error()).To(ContainSubstring("immutable"))
	})

	It("rejects a train with a range that does not parse", func() {
		t := &trainyardv1.ReleaseTrain{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "router.stable"},
			Spec:       trainyardv1.ReleaseTrainSpec{Component: "router", Train: "stable", VersionRange: ">>1"},
		}
		err := k8sClient.Create(ctx, t)
		Expect(apierrors.IsInvalid(err)).To(BeTrue(), "%v", err)
		Expect(err.Error()).To(ContainSubstring(`spec.versionRange: Invalid value: ">>1": must be a semantic-version constraint`))
	})

	It("rejects a report with a bad data key and an empty-version component", func() {
		rep := &trainyardv1.ClusterReport{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "c2"},
			Spec: trainyardv1.ClusterReportSpec{ClusterID: "c2",
				Properties: map[string]string{"bad key": "x"}},
		}
		err := k8sClient.Create(ctx, rep)
		Expect(apierrors.IsInvalid(err)).To(BeTrue(), "%v", err)
		Expect(err.Error()).To(ContainSubstring(`spec.properties[bad key]: Invalid value: "bad key": keys may contain only letters, digits, '-', '_' and '.'`))
	})

	It("warns about a non-semver version and one lower than the latest", func() {
		Expect(k8sClient.Create(ctx, newRelease(ns, "router", "stable", "v3.0.0"))).To(Succeed())
		Eventually(latestOf(ns, "router.stable")).Should(Equal("v3.0.0"))
		warnings.take()

		Expect(k8sClient.Create(ctx, newRelease(ns, "router", "stable", "v2.9.0"))).To(Succeed())
		Expect(warnings.take()).To(ContainElement(
			"version v2.9.0 is lower than v3.0.0, the latest on router.stable; it will not become latest"))

		Expect(k8sClient.Create(ctx, newRelease(ns, "router", "stable", "nightly"))).To(Succeed())
		Expect(warnings.take()).To(ContainElement(ContainSubstring(`version "nightly" is not a semantic version`)))

		Expect(k8sClient.Create(ctx, newRelease(ns, "router", "stable", "v3.1.0"))).To(Succeed())
		Expect(warnings.take()).To(BeEmpty())
	})
})

// webhookCalls is how often this suite's webhook server answered path.
func webhookCalls(path string) float64 {
	GinkgoHelper()
	families, err := ctrlmetrics.Registry.Gather()
	Expect(err).NotTo(HaveOccurred())
	n := 0.0
	for _, f := range families {
		if f.GetName() != "controller_runtime_webhook_requests_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "webhook" && l.GetValue() == path {
					n += m.GetCounter().GetValue()
				}
			}
		}
	}
	return n
}
