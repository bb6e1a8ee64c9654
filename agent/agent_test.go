package agent_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/trainyard-dev/trainyard/agent"
	trainyardv1 "github.com/trainyard-dev/trainyard/api/v1alpha1"
)

func namespace(c client.Client) string {
	GinkgoHelper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "a-"}}
	Expect(c.Create(ctx, ns)).To(Succeed())
	return ns.Name
}

// hubReport is the hub's ClusterReport of the workload cluster.
func hubReport(id string) *trainyardv1.ClusterReport {
	r := &trainyardv1.ClusterReport{}
	if err := hub.Get(ctx, types.NamespacedName{Namespace: "default", Name: trainyardv1.ClusterReportName(id)}, r); err != nil {
		return nil
	}
	return r
}

func kubeSystemUID() string {
	GinkgoHelper()
	ns := &corev1.Namespace{}
	Expect(workload.Get(ctx, types.NamespacedName{Name: "kube-system"}, ns)).To(Succeed())
	return string(ns.UID)
}

// newKube reads the workload cluster in namespaces (all when none).
func newKube(namespaces []string) *agent.Kube {
	GinkgoHelper()
	k, err := agent.NewKube(wlCfg, namespaces)
	Expect(err).NotTo(HaveOccurred())
	return k
}

// notRolledOut is the readiness of a Deployment no controller rolled out
// (the workload cluster runs no kube-controller-manager).
var notRolledOut = &trainyardv1.WorkloadReadiness{Ready: 0, Desired: 1}

// run starts an agent until the spec ends.
func run(a *agent.Agent) {
	c, cancel := context.WithCancel(agentCtx)
	DeferCleanup(cancel)
	go func() {
		defer GinkgoRecover()
		Expect(a.Start(c)).To(Succeed())
	}()
}

var _ = Describe("the agent against a real hub", Ordered, func() {
	var ns string
	BeforeAll(func() {
		ns = namespace(workload)
		Expect(workload.Create(ctx, deployment(ns, "router", "router", "v2.3.0", nil))).To(Succeed())
		Expect(workload.Create(ctx, deployment(ns, "db", "db", "14.2.0", map[string]string{agent.LabelTrain: "lts"}))).To(Succeed())
		unlabelled := deployment(ns, "sidecar", "sidecar", "1", nil)
		delete(unlabelled.Labels, agent.LabelName)
		Expect(workload.Create(ctx, unlabelled)).To(Succeed())
		deis := deployment(ns, "deis-builder", "builder", "", nil)
		delete(deis.Labels, agent.LabelVersion)
		deis.Annotations = map[string]string{agent.AnnotationDeisVer: "v2.10.0"}
		Expect(workload.Create(ctx, deis)).To(Succeed())
	})

	It("reports the labelled workloads under the kube-system UID and their readiness; a label or readiness change reaches the hub without waiting for the timer", func() {
		a := newAgent(agent.Options{HubURL: hubURL, Token: registrationToken,
			Interval: time.Hour, Debounce: 100 * time.Millisecond, ServerVersion: serverVersion}, []string{ns})
		run(a)

		id := kubeSystemUID()
		Eventually(func() []trainyardv1.ReportedComponent {
			if r := hubReport(id); r != nil {
				return r.Spec.Components
			}
			return nil
		}).Should(ConsistOf(
			trainyardv1.ReportedComponent{Name: "builder", Train: "stable", Version: "v2.10.0", Type: "Deployment", Image: "example/builder:", Readiness: notRolledOut},
			trainyardv1.ReportedComponent{Name: "db", Train: "lts", Version: "14.2.0", Type: "Deployment", Image: "example/db:14.2.0", Readiness: notRolledOut},
			trainyardv1.ReportedComponent{Name: "router", Train: "stable", Version: "v2.3.0", Type: "Deployment", Image: "example/router:v2.3.0", Readiness: notRolledOut},
		))

		Expect(hubReport(id).Spec.Properties).To(HaveKeyWithValue("kubernetesVersion", "v1.37.2"))
		Expect(hubReport(id).Spec.Properties).To(HaveKey("nodes"))

		d := &appsv1.Deployment{}
		Expect(workload.Get(ctx, types.NamespacedName{Namespace: ns, Name: "router"}, d)).To(Succeed())
		before := d.DeepCopy()
		d.Labels[agent.LabelVersion] = "v2.4.1"
		Expect(workload.Patch(ctx, d, client.MergeFrom(before))).To(Succeed())
		Eventually(func() string {
			for _, c := range hubReport(id).Spec.Components {
				if c.Name == "router" {
					return c.Version
				}
			}
			return ""
		}, 10*time.Second).Should(Equal("v2.4.1"))

		// Each workload's readiness, and its turning ready, reach the hub
		// without waiting for the timer (issue 29 #2).
		router := func() *trainyardv1.ComponentStatus {
			for _, c := range hubReport(id).Status.Components {
				if c.Name == "router" {
					return &c
				}
			}
			return nil
		}
		// No kube-controller-manager here: the Deployments never rolled out.
		Eventually(router).Should(HaveField("Ready", trainyardv1.NotReady))

		d = &appsv1.Deployment{}
		Expect(workload.Get(ctx, types.NamespacedName{Namespace: ns, Name: "router"}, d)).To(Succeed())
		since := metav1.NewTime(time.Now().Add(-time.Minute).Truncate(time.Second))
		d.Status = appsv1.DeploymentStatus{ObservedGeneration: d.Generation, Replicas: 1, UpdatedReplicas: 1, ReadyReplicas: 1, AvailableReplicas: 1,
			Conditions: []appsv1.DeploymentCondition{{Type: appsv1.DeploymentAvailable, Status: corev1.ConditionTrue,
				LastTransitionTime: since, LastUpdateTime: since, Reason: "MinimumReplicasAvailable"}}}
		turned := time.Now().Truncate(time.Second)
		Expect(workload.Status().Update(ctx, d)).To(Succeed())
		Eventually(func() *trainyardv1.WorkloadReadiness {
			for _, c := range hubReport(id).Spec.Components {
				if c.Name == "router" {
					return c.Readiness
				}
			}
			return nil
		}, 10*time.Second).Should(HaveValue(Equal(trainyardv1.WorkloadReadiness{Ready: 1, Desired: 1})))
		// The hub stamps when it first saw it ready (the agent sends no
		// time: the Available condition's is a minute older).
		Eventually(router).Should(And(HaveField("Ready", trainyardv1.Ready),
			HaveField("ReadySince", HaveValue(HaveField("Time", BeTemporally(">=", turned))))))
	})

	It("keeps its cluster ID across a restart", func() {
		first, err := agent.ClusterID(ctx, newKube(nil), "")
		Expect(err).NotTo(HaveOccurred())
		second, err := agent.ClusterID(ctx, newKube(nil), "")
		Expect(err).NotTo(HaveOccurred())
		Expect(second).To(Equal(first))
		Expect(first).To(Equal(kubeSystemUID()))
		explicit, _ := agent.ClusterID(ctx, newKube(nil), "prod-eu-1")
		Expect(explicit).To(Equal("prod-eu-1"))
	})
})

var _ = Describe("the agent against a troubled hub", func() {
	It("retries a 503 after the hub's Retry-After", func() {
		f := &fakeHub{codes: []int{http.StatusServiceUnavailable, http.StatusOK}, retry: "1"}
		srv := httptest.NewServer(f)
		DeferCleanup(srv.Close)
		run(newAgent(agent.Options{HubURL: srv.URL, ClusterID: "c1", Interval: time.Hour,
			BackoffBase: 10 * time.Millisecond}, nil))
		Eventually(func() int { return len(f.arrivals()) }).Should(BeNumerically(">=", 2))
		t := f.arrivals()
		Expect(t[1].Sub(t[0])).To(BeNumerically(">=", time.Second))
		Consistently(func() int { return len(f.arrivals()) }, "500ms").Should(Equal(2)) // then the hour
	})

	It("stops at a wrong token instead of storming the hub", func() {
		f := &fakeHub{codes: []int{http.StatusUnauthorized}}
		srv := httptest.NewServer(f)
		DeferCleanup(srv.Close)
		run(newAgent(agent.Options{HubURL: srv.URL, Token: "wrong", ClusterID: "c1",
			Interval: time.Hour, BackoffBase: time.Millisecond}, nil))
		Eventually(func() int { return len(f.arrivals()) }).Should(Equal(1))
		Consistently(func() int { return len(f.arrivals()) }, "1s").Should(Equal(1))
	})

	It("says which token is wrong", func() {
		f := &fakeHub{codes: []int{http.StatusForbidden}}
		srv := httptest.NewServer(f)
		DeferCleanup(srv.Close)
		err := newAgent(agent.Options{HubURL: srv.URL, Token: "t", ClusterID: "c1"}, nil).CheckIn(ctx)
		Expect(err).To(MatchError(ContainSubstring("refused the check-in (403")))
		Expect(err).To(MatchError(ContainSubstring("check the registration token")))
		Expect(err.Error()).NotTo(ContainSubstring(`"t"`))
	})
})

var _ = Describe("cluster properties", func() {
	It("counts the nodes and names the most common provider", func() {
		for i, id := range []string{"aws:///us-east-1a/i-1", "aws:///us-east-1b/i-2", "gce://p/z/n-3"} {
			Expect(workload.Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("node-%d", i)},
				Spec: corev1.NodeSpec{ProviderID: id}})).To(Succeed())
		}
		props, err := agent.Properties(ctx, newKube(nil), func() (string, error) { return "v1.37.2", nil })
		Expect(err).NotTo(HaveOccurred())
		Expect(props).To(Equal(map[string]string{"kubernetesVersion": "v1.37.2", "nodes": "3", "provider": "aws"}))
	})
})

var _ = Describe("direct mode", func() {
	It("writes the ClusterReport into the hub's API, with the bridge's heartbeat budget", func() {
		ns := namespace(workload)
		Expect(workload.Create(ctx, deployment(ns, "cache", "cache", "7.2.0", nil))).To(Succeed())
		b := directHub(hubCfg)
		a := newAgent(agent.Options{Hub: b, ClusterID: "direct-1"}, []string{ns})
		Expect(a.CheckIn(ctx)).To(Succeed())
		r := hubReport("direct-1")
		Expect(r).NotTo(BeNil())
		Expect(r.Spec.Components).To(ConsistOf(trainyardv1.ReportedComponent{
			Name: "cache", Train: "stable", Version: "7.2.0", Type: "Deployment", Image: "example/cache:7.2.0", Readiness: notRolledOut}))
		// The hub's controller records the creation as the first check-in.
		Eventually(func() int64 { return hubReport("direct-1").Status.CheckIns }).Should(BeEquivalentTo(1))

		// Unchanged and within the persist interval: held, not written
		// (the hub's controllers write the status meanwhile, so the check is
		// on the check-in record, not the resourceVersion).
		Expect(a.CheckIn(ctx)).To(Succeed())
		Consistently(func() int64 { return hubReport("direct-1").Status.CheckIns }, "500ms").Should(BeEquivalentTo(1))
		b.Flush(ctx)
		Expect(hubReport("direct-1").Status.CheckIns).To(BeEquivalentTo(2))
	})
})

var _ = Describe("the token file", func() {
	It("is read before every check-in, so a rotated Secret takes effect without a restart", func() {
		var seen []string
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/v3/clusters" {
				seen = append(seen, r.Header.Get("Authorization"))
			}
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(`{"data":[]}`))
		}))
		DeferCleanup(srv.Close)
		file := filepath.Join(GinkgoT().TempDir(), "token")
		Expect(os.WriteFile(file, []byte("first\n"), 0o600)).To(Succeed())
		a := newAgent(agent.Options{HubURL: srv.URL, TokenFile: file, ClusterID: "rotated"}, nil)
		Expect(a.CheckIn(ctx)).To(Succeed())
		Expect(os.WriteFile(file, []byte("second"), 0o600)).To(Succeed())
		Expect(a.CheckIn(ctx)).To(Succeed())
		Expect(seen).To(Equal([]string{"Bearer first", "Bearer second"}))
	})
})

var _ = Describe("the agent's cache limited to namespaces", func() {
	It("holds the labelled workloads of those namespaces and still reads the cluster's ID and nodes", func() {
		in, out := namespace(workload), namespace(workload)
		Expect(workload.Create(ctx, deployment(in, "inside", "inside", "1.0.0", nil))).To(Succeed())
		Expect(workload.Create(ctx, deployment(out, "outside", "outside", "1.0.0", nil))).To(Succeed())
		c := newKube([]string{in})
		sources, err := agent.NewSources([]string{"workloads", "helm"}, agent.Config{Kube: c})
		Expect(err).NotTo(HaveOccurred())
		for _, s := range sources {
			Expect(s.Watch(c, func() {})).To(Succeed())
		}
		cctx, cancel := context.WithCancel(ctx)
		DeferCleanup(cancel)
		Expect(c.Sync(cctx)).To(Succeed())
		Eventually(func() []string {
			comps, _, err := sources[0].List(ctx)
			Expect(err).NotTo(HaveOccurred())
			var names []string
			for _, cv := range comps {
				names = append(names, cv.Component.Name)
			}
			return names
		}).Should(Equal([]string{"inside"}))
		id, err := agent.ClusterID(ctx, c, "")
		Expect(err).NotTo(HaveOccurred())
		Expect(id).To(Equal(kubeSystemUID()))
		_, err = agent.Properties(ctx, c, nil)
		Expect(err).NotTo(HaveOccurred())
	})
})

var _ = Describe("direct mode with the hub Role of docs/agent.md", func() {
	It("needs nothing more, and writes its own cluster's report only", func() {
		ns := namespace(workload)
		Expect(workload.Create(ctx, deployment(ns, "proxy", "proxy", "3.0.0", nil))).To(Succeed())
		cs, err := kubernetes.NewForConfig(hubCfg)
		Expect(err).NotTo(HaveOccurred())
		// As docs/agent.md has it: one ServiceAccount and Role per cluster.
		sa := trainyardv1.ClusterServiceAccountPrefix + "edge-7"
		_, err = cs.CoreV1().ServiceAccounts("default").Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: sa}}, metav1.CreateOptions{})
		Expect(err).NotTo(HaveOccurred())
		_, err = cs.RbacV1().Roles("default").Create(ctx, &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: sa},
			Rules: []rbacv1.PolicyRule{
				{APIGroups: []string{"trainyard.dev"}, Resources: []string{"clusterreports"}, Verbs: []string{"create"}},
				{APIGroups: []string{"trainyard.dev"}, Resources: []string{"clusterreports", "clusterreports/status"},
					ResourceNames: []string{"edge-7"}, Verbs: []string{"get", "patch"}},
			}}, metav1.CreateOptions{})
		Expect(err).NotTo(HaveOccurred())
		_, err = cs.RbacV1().RoleBindings("default").Create(ctx, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: sa},
			RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: sa},
			Subjects: []rbacv1.Subject{{Kind: "ServiceAccount", Name: sa, Namespace: "default"}}}, metav1.CreateOptions{})
		Expect(err).NotTo(HaveOccurred())
		tr, err := cs.CoreV1().ServiceAccounts("default").CreateToken(ctx, sa, &authnv1.TokenRequest{}, metav1.CreateOptions{})
		Expect(err).NotTo(HaveOccurred())
		asAgent := rest.AnonymousClientConfig(hubCfg)
		asAgent.BearerToken = tr.Status.Token

		// As agent/cli builds it in direct mode: every read and write as
		// that identity, no cache.
		b := directHub(asAgent)
		a := newAgent(agent.Options{Hub: b, ClusterID: "edge-7"}, []string{ns})
		Eventually(func() error { return a.CheckIn(ctx) }).Should(Succeed()) // once RBAC sees the binding
		d := &appsv1.Deployment{}
		Expect(workload.Get(ctx, types.NamespacedName{Namespace: ns, Name: "proxy"}, d)).To(Succeed())
		before := d.DeepCopy()
		d.Labels[agent.LabelVersion] = "3.1.0"
		Expect(workload.Patch(ctx, d, client.MergeFrom(before))).To(Succeed())
		Eventually(func() []trainyardv1.ReportedComponent {
			Expect(a.CheckIn(ctx)).To(Succeed())
			return hubReport("edge-7").Spec.Components
		}).Should(ConsistOf(HaveField("Version", "3.1.0")))
		Expect(a.CheckIn(ctx)).To(Succeed()) // a heartbeat, held
		b.Flush(ctx)
		Expect(hubReport("edge-7").Status.CheckIns).To(BeNumerically(">=", 3))

		// Another cluster's report: RBAC refuses the read and the patch, the
		// webhook the create (which RBAC cannot restrict by name).
		other := newAgent(agent.Options{Hub: b, ClusterID: "edge-8"}, []string{ns})
		Expect(other.CheckIn(ctx)).To(MatchError(ContainSubstring("forbidden")))
		Expect(hubReport("edge-8")).To(BeNil())
		hubAsAgent, err := client.New(asAgent, client.Options{Scheme: scheme})
		Expect(err).NotTo(HaveOccurred())
		err = hubAsAgent.Create(ctx, &trainyardv1.ClusterReport{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "edge-8"},
			Spec: trainyardv1.ClusterReportSpec{ClusterID: "edge-8"}})
		Expect(err).To(MatchError(ContainSubstring("the ServiceAccount default/trainyard-cluster-edge-7 writes only the ClusterReport default/edge-7")))
		Expect(hubReport("edge-8")).To(BeNil())
		Expect(hub.Create(ctx, &trainyardv1.ClusterReport{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "edge-9"},
			Spec: trainyardv1.ClusterReportSpec{ClusterID: "edge-9"}})).To(Succeed())
		ninth := newAgent(agent.Options{Hub: b, ClusterID: "edge-9"}, []string{ns})
		Expect(ninth.CheckIn(ctx)).To(MatchError(ContainSubstring("forbidden")))
		Expect(hubReport("edge-9").Spec.Components).To(BeEmpty())

		// Its own report, but not its bridge identity (issue 27 #5): a hash
		// of a secret of its choosing would be a bridge credential.
		own := hubReport("edge-7")
		minted := own.DeepCopy()
		if minted.Annotations == nil {
			minted.Annotations = map[string]string{}
		}
		sum := sha256.Sum256([]byte("tyc.chosen-by-the-cluster"))
		minted.Annotations[trainyardv1.AnnotationCredentialHash] = hex.EncodeToString(sum[:])
		err = hubAsAgent.Patch(ctx, minted, client.MergeFrom(own))
		Expect(err).To(MatchError(ContainSubstring("may not set or change the annotation " + trainyardv1.AnnotationCredentialHash)))
		Expect(hubReport("edge-7").Annotations).NotTo(HaveKey(trainyardv1.AnnotationCredentialHash))
		// Other annotations stay its own to write.
		labelled := own.DeepCopy()
		if labelled.Annotations == nil {
			labelled.Annotations = map[string]string{}
		}
		labelled.Annotations["example.com/rack"] = "r12"
		Expect(hubAsAgent.Patch(ctx, labelled, client.MergeFrom(own))).To(Succeed())
	})
})
