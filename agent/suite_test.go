package agent_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/trainyard-dev/trainyard/agent"
	_ "github.com/trainyard-dev/trainyard/agent/source/all"
	trainyardv1 "github.com/trainyard-dev/trainyard/api/v1alpha1"
	"github.com/trainyard-dev/trainyard/bridge"
	"github.com/trainyard-dev/trainyard/controllers"
	"github.com/trainyard-dev/trainyard/internal/checkin"
	"github.com/trainyard-dev/trainyard/internal/manager"
	"github.com/trainyard-dev/trainyard/internal/testenv"
)

func TestAgent(t *testing.T) {
	RegisterFailHandler(Fail)
	SetDefaultEventuallyTimeout(30 * time.Second)
	RunSpecs(t, "agent suite")
}

// Two real control planes: a "hub" running the controllers and the bridge,
// and a "workload" cluster where the Deployments live.
var (
	scheme   = runtime.NewScheme()
	hub      client.Client
	hubURL   string
	workload client.Client
	wlCfg    *rest.Config
	hubCfg   *rest.Config
	ctx      = context.Background()
)

const registrationToken = "agent-test-token"

var _ = BeforeSuite(func() {
	ctrl.SetLogger(zap.New(zap.WriteTo(GinkgoWriter), zap.UseDevMode(true)))
	Expect(clientgoscheme.AddToScheme(scheme)).To(Succeed())
	Expect(trainyardv1.AddToScheme(scheme)).To(Succeed())

	hubEnv := testenv.New()
	// The hub's API server calls trainyard's admission webhook, as in a real
	// hub: direct mode writes through it.
	hubEnv.WebhookInstallOptions = envtest.WebhookInstallOptions{
		Paths: []string{filepath.Join(testenv.RepoRoot(), "config", "webhook", "manifests.yaml")},
	}
	var err error
	hubCfg, err = testenv.Start(hubEnv)
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(hubEnv.Stop)
	hub, err = client.New(hubCfg, client.Options{Scheme: scheme})
	Expect(err).NotTo(HaveOccurred())
	Expect(hub.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "trainyard-registration"},
		Data: map[string][]byte{"fleet": []byte(registrationToken)}})).To(Succeed())
	w := hubEnv.WebhookInstallOptions
	hubMgr, stopHub, err := testenv.StartManager(hubCfg, testenv.Manager{Scheme: scheme, Cache: manager.CacheOptions(), Webhook: &w,
		Setups: []manager.Setup{manager.SetupIndexes(), manager.SetupControllers(controllers.Options{}), manager.SetupWebhooks}})
	Expect(err).NotTo(HaveOccurred())
	mctx, cancel := context.WithCancel(ctx)
	b := bridge.New(hubMgr.GetClient(), hubMgr.GetClient(), hubMgr.GetAPIReader(), bridge.Options{Namespace: "default"})
	hubCache, hubAPIReader = hubMgr.GetClient(), hubMgr.GetAPIReader()
	Expect(hubMgr.GetCache().WaitForCacheSync(ctx)).To(BeTrue())
	Eventually(testenv.WebhookServing(w)).Should(Succeed())
	srv := httptest.NewServer(b.Handler())
	DeferCleanup(srv.Close)
	hubURL = srv.URL

	wlEnv := &envtest.Environment{}
	wlCfg, err = testenv.Start(wlEnv)
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(wlEnv.Stop)
	workload, err = client.New(wlCfg, client.Options{Scheme: scheme})
	Expect(err).NotTo(HaveOccurred())
	// Runs first: the manager and the agents' informers stop before the
	// API servers do.
	DeferCleanup(func() {
		cancel()
		Expect(stopHub()).To(Succeed())
	})
	kube, err := agent.NewKube(wlCfg, nil)
	Expect(err).NotTo(HaveOccurred())
	serverVersion = func() (string, error) { return kube.ServerVersion(ctx) }
	agentCtx = mctx
})

var (
	serverVersion func() (string, error)
	agentCtx      context.Context
	// The hub manager's cached client and API reader, for more bridges.
	hubCache, hubAPIReader client.Reader
)

// newAgent builds an agent as agent/cli wires it: reading the workload
// cluster in namespaces (all when none) with the named discovery sources
// (workloads when none), its caches synced.
func newAgent(o agent.Options, namespaces []string, sources ...string) *agent.Agent {
	GinkgoHelper()
	kube, err := agent.NewKube(wlCfg, namespaces)
	Expect(err).NotTo(HaveOccurred())
	if len(sources) == 0 {
		sources = []string{"workloads"}
	}
	o.Sources, err = agent.NewSources(sources, agent.Config{Kube: kube})
	Expect(err).NotTo(HaveOccurred())
	a := agent.New(kube, GinkgoLogr, o)
	Expect(a.Sync(agentCtx)).To(Succeed())
	return a
}

// directHub writes into the hub's "default" namespace as cfg's identity,
// as the agent's direct mode does.
func directHub(cfg *rest.Config) *agent.DirectHub {
	GinkgoHelper()
	d, err := agent.NewDirectHub(cfg, "default", checkin.Options{Log: GinkgoLogr})
	Expect(err).NotTo(HaveOccurred())
	return d
}

func deployment(ns, name, component, version string, labels map[string]string) *appsv1.Deployment {
	l := map[string]string{"app": name, agent.LabelName: component, agent.LabelVersion: version}
	for k, v := range labels {
		l[k] = v
	}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: l},
		Spec: appsv1.DeploymentSpec{
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": name}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": name}},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "example/" + component + ":" + version}}},
			},
		},
	}
}

// fakeHub answers check-ins with the given codes in turn (the last repeats)
// and records when each came; the multi-get after a check-in gets an empty
// answer and is not counted.
type fakeHub struct {
	mu    sync.Mutex
	codes []int
	retry string
	times []time.Time
	n     atomic.Int64
}

func (f *fakeHub) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/v3/versions/latest" {
		_, _ = fmt.Fprint(w, `{"data":[]}`)
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.times = append(f.times, time.Now())
	i := min(len(f.times)-1, len(f.codes)-1)
	f.n.Add(1)
	if f.codes[i] != http.StatusOK && f.retry != "" {
		w.Header().Set("Retry-After", f.retry)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(f.codes[i])
	_, _ = fmt.Fprintf(w, `{"code":%d,"message":"test answer"}`, f.codes[i])
}

func (f *fakeHub) arrivals() []time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]time.Time(nil), f.times...)
}

// CI shows only the tail of a run: the causes of its failures come last.
var _ = ReportAfterSuite("failure digest", testenv.FailureDigest(12))
