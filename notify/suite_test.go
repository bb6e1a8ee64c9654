package notify_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/santhosh-tekuri/jsonschema/v6"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	testingclock "k8s.io/utils/clock/testing"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrlconfig "sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	v1 "github.com/trainyard-dev/trainyard/api/v1alpha1"
	"github.com/trainyard-dev/trainyard/controllers"
	"github.com/trainyard-dev/trainyard/internal/testenv"
	"github.com/trainyard-dev/trainyard/notify"
)

func TestNotify(t *testing.T) {
	RegisterFailHandler(Fail)
	// A loaded 2-core CI machine runs the API server, etcd and these tests.
	SetDefaultEventuallyTimeout(30 * time.Second)
	SetDefaultEventuallyPollingInterval(100 * time.Millisecond)
	RunSpecs(t, "notify suite")
}

const staleThreshold = time.Hour

var (
	env       *envtest.Environment
	cfg       *rest.Config
	k8sClient client.Client
	fakeClock *testingclock.FakeClock
	scheme    = runtime.NewScheme()
	ceSchema  *jsonschema.Schema
	// stopManager stops the running manager (see startManager).
	stopManager func()
)

var _ = BeforeSuite(func() {
	ctrl.SetLogger(zap.New(zap.WriteTo(GinkgoWriter), zap.UseDevMode(true)))
	Expect(clientgoscheme.AddToScheme(scheme)).To(Succeed())
	Expect(v1.AddToScheme(scheme)).To(Succeed())
	env = testenv.New()
	// Rules and targets are written through the admission webhook, as users'
	// are.
	env.WebhookInstallOptions = testenv.WebhookOptions()
	var err error
	cfg, err = testenv.Start(env)
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(func() { Expect(env.Stop()).To(Succeed()) })
	k8sClient, err = client.New(cfg, client.Options{Scheme: scheme})
	Expect(err).NotTo(HaveOccurred())
	stop, err := testenv.ServeWebhook(cfg, scheme, env.WebhookInstallOptions)
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(func() { Expect(stop()).To(Succeed()) })
	Eventually(testenv.WebhookServing(env.WebhookInstallOptions)).Should(Succeed())

	fakeClock = testingclock.NewFakeClock(time.Now().Truncate(time.Second))
	ceSchema = compileSchema(filepath.Join("testdata", "cloudevents-1.0.schema.json"))
	stopManager = startManager()
	DeferCleanup(func() { stopManager() })
})

// startManager runs the manager as the chart does: controllers and
// notifications, behind leader election. It returns once the manager leads;
// the returned function stops it and waits.
func startManager() func() {
	GinkgoHelper()
	stop, elected := startReplica()
	Eventually(elected).Should(BeClosed())
	return stop
}

// startReplica starts a manager replica, which leads once elected is closed.
func startReplica() (stop func(), elected <-chan struct{}) {
	GinkgoHelper()
	skip := true
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme: scheme, Cache: controllers.CacheOptions(),
		Metrics:                       metricsserver.Options{BindAddress: "0"},
		LeaderElection:                true,
		LeaderElectionID:              "notify-test.trainyard.dev",
		LeaderElectionNamespace:       "default",
		LeaderElectionReleaseOnCancel: true,
		LeaseDuration:                 ptr.To(4 * time.Second),
		RenewDeadline:                 ptr.To(3 * time.Second),
		RetryPeriod:                   ptr.To(200 * time.Millisecond),
		Controller:                    ctrlconfig.Controller{SkipNameValidation: &skip},
	})
	Expect(err).NotTo(HaveOccurred())
	ctx, cancel := context.WithCancel(context.Background())
	Expect(controllers.Setup(ctx, mgr, controllers.Options{
		Clock: fakeClock, StaleThreshold: staleThreshold, TrainWorkers: 2, ReportWorkers: 16,
	})).To(Succeed())
	// The receivers here listen on 127.0.0.1, which the manager refuses
	// unless told otherwise (as --notification-allowed-cidrs does); the
	// rest of loopback stays refused.
	dest, err := notify.ParseDestinations([]string{"127.0.0.1/32"})
	Expect(err).NotTo(HaveOccurred())
	Expect(notify.Setup(mgr, notify.Options{Destinations: dest})).To(Succeed())
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	return func() {
		cancel()
		Expect(<-done).To(Succeed())
	}, mgr.Elected()
}

// clockPastNow moves the controllers' clock (never back) to the second
// after the real one, so that the next transition it stamps comes after
// everything created so far, as it would with a real clock: a rule sends
// the transitions after its creation only.
func clockPastNow() {
	if next := time.Now().Truncate(time.Second).Add(time.Second); fakeClock.Now().Before(next) {
		fakeClock.SetTime(next)
	}
}

func compileSchema(path string) *jsonschema.Schema {
	GinkgoHelper()
	f, err := os.Open(path)
	Expect(err).NotTo(HaveOccurred())
	defer f.Close()
	doc, err := jsonschema.UnmarshalJSON(f)
	Expect(err).NotTo(HaveOccurred())
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	Expect(c.AddResource("cloudevents.json", doc)).To(Succeed())
	s, err := c.Compile("cloudevents.json")
	Expect(err).NotTo(HaveOccurred())
	return s
}

func newNamespace() string {
	GinkgoHelper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "n-"}}
	Expect(k8sClient.Create(context.Background(), ns)).To(Succeed())
	return ns.Name
}

// received is one request a receiver got.
type received struct {
	at     time.Time
	header http.Header
	body   []byte
}

// receiver is a local HTTP server standing for a webhook receiver; answer
// decides each response from the number of earlier requests.
type receiver struct {
	*httptest.Server
	mu     sync.Mutex
	got    []received
	answer func(n int, w http.ResponseWriter)
}

func newReceiver(answer func(n int, w http.ResponseWriter)) *receiver {
	GinkgoHelper()
	rc := &receiver{answer: answer}
	rc.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		rc.mu.Lock()
		n := len(rc.got)
		rc.got = append(rc.got, received{at: time.Now(), header: r.Header.Clone(), body: body})
		rc.mu.Unlock()
		if rc.answer != nil {
			rc.answer(n, w)
			return
		}
		w.WriteHeader(http.StatusAccepted)
	}))
	DeferCleanup(rc.Close)
	return rc
}

func (rc *receiver) requests() []received {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]received(nil), rc.got...)
}

func (rc *receiver) count() int { return len(rc.requests()) }

// events decodes what the receiver got as CloudEvents.
func (rc *receiver) events() []notify.CloudEvent {
	GinkgoHelper()
	var out []notify.CloudEvent
	for _, r := range rc.requests() {
		var ce notify.CloudEvent
		Expect(json.Unmarshal(r.body, &ce)).To(Succeed(), string(r.body))
		out = append(out, ce)
	}
	return out
}

const signingKey = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

// target creates a Secret and a NotificationTarget of type t for url.
func target(ns, name string, t v1.NotificationTargetType, url string, mutate ...func(*v1.NotificationTarget)) *v1.NotificationTarget {
	GinkgoHelper()
	ctx := context.Background()
	Expect(k8sClient.Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name + "-secret"},
		StringData: map[string]string{v1.SecretKeyURL: url, v1.SecretKeySigningKey: signingKey},
	})).To(Succeed())
	tg := &v1.NotificationTarget{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       v1.NotificationTargetSpec{Type: t, SecretRef: v1.LocalObjectReference{Name: name + "-secret"}},
	}
	for _, m := range mutate {
		m(tg)
	}
	Expect(k8sClient.Create(ctx, tg)).To(Succeed())
	return tg
}

// rule creates a NotificationRule to target.
func rule(ns, name, targetName string, spec v1.NotificationRuleSpec) *v1.NotificationRule {
	GinkgoHelper()
	spec.TargetRef = v1.LocalObjectReference{Name: targetName}
	r := &v1.NotificationRule{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: spec}
	Expect(k8sClient.Create(context.Background(), r)).To(Succeed())
	// The rule is Ready once the notifier has seen it: from then on its
	// transitions are sent.
	Eventually(func(g Gomega) {
		g.Expect(k8sClient.Get(context.Background(), client.ObjectKeyFromObject(r), r)).To(Succeed())
		g.Expect(r.Status.Conditions).To(ContainElement(And(
			HaveField("Type", v1.ConditionReady), HaveField("Status", metav1.ConditionTrue))))
	}).Should(Succeed())
	return r
}

func publish(ns, component, train, version string) *v1.ComponentRelease {
	GinkgoHelper()
	rel := &v1.ComponentRelease{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: v1.ReleaseName(component, train, version)},
		Spec:       v1.ComponentReleaseSpec{Component: component, Train: train, Version: version},
	}
	Expect(k8sClient.Create(context.Background(), rel)).To(Succeed())
	return rel
}

func getRule(r *v1.NotificationRule) *v1.NotificationRule {
	GinkgoHelper()
	out := &v1.NotificationRule{}
	Expect(k8sClient.Get(context.Background(), client.ObjectKeyFromObject(r), out)).To(Succeed())
	return out
}

func getTarget(t *v1.NotificationTarget) *v1.NotificationTarget {
	GinkgoHelper()
	out := &v1.NotificationTarget{}
	Expect(k8sClient.Get(context.Background(), client.ObjectKeyFromObject(t), out)).To(Succeed())
	return out
}
