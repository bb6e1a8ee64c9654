package controllers_test

import (
	"context"
	"errors"
	"net/netip"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	testingclock "k8s.io/utils/clock/testing"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	trainyardv1 "github.com/trainyard-dev/trainyard/api/v1alpha1"
	"github.com/trainyard-dev/trainyard/controllers"
	"github.com/trainyard-dev/trainyard/internal/manager"
	"github.com/trainyard-dev/trainyard/internal/testenv"
)

func TestControllers(t *testing.T) {
	RegisterFailHandler(Fail)
	// A loaded 2-core CI machine runs the API server, etcd and these tests.
	SetDefaultEventuallyTimeout(20 * time.Second)
	SetDefaultEventuallyPollingInterval(50 * time.Millisecond)
	RunSpecs(t, "controllers suite")
}

const staleThreshold = time.Hour

var (
	cfg        *rest.Config
	env        *envtest.Environment
	k8sClient  client.Client
	fakeClock  *testingclock.FakeClock
	trainRec   *controllers.ReleaseTrainReconciler
	reportRec  *controllers.ClusterReportReconciler
	suiteCtx   context.Context
	stopSuite  context.CancelFunc
	testScheme = runtime.NewScheme()
)

var _ = BeforeSuite(func() {
	ctrl.SetLogger(zap.New(zap.WriteTo(GinkgoWriter), zap.UseDevMode(true)))
	Expect(clientgoscheme.AddToScheme(testScheme)).To(Succeed())
	Expect(trainyardv1.AddToScheme(testScheme)).To(Succeed())

	env = testenv.New()
	var err error
	cfg, err = testenv.Start(env)
	Expect(err).NotTo(HaveOccurred())
	k8sClient, err = client.New(cfg, client.Options{Scheme: testScheme})
	Expect(err).NotTo(HaveOccurred())

	suiteCtx = context.Background()
	// The real clock's date, so that creation timestamps and the fake clock
	// agree; the tests move it on. Whole seconds, as the API stores times.
	fakeClock = testingclock.NewFakeClock(time.Now().Truncate(time.Second))
	// The reconcilers themselves, not controllers.Setup: the specs reach
	// into them (the adoption delay, the report reconciler's clock).
	reconcilers := func(_ context.Context, mgr ctrl.Manager) error {
		recorder := mgr.GetEventRecorder("trainyard-controller")
		trainRec = &controllers.ReleaseTrainReconciler{Client: mgr.GetClient(), Recorder: recorder,
			DefaultOrdering: trainyardv1.OrderingSemver, Workers: 2, AdoptionDelay: 100 * time.Millisecond, Clock: fakeClock, TrustResync: time.Second,
			RegistryTransport: controllers.RegistryTransport(netip.MustParsePrefix("127.0.0.1/32"))}
		reportRec = &controllers.ClusterReportReconciler{Client: mgr.GetClient(), Recorder: recorder,
			Clock: fakeClock, StaleThreshold: staleThreshold, Workers: 4}
		return errors.Join(trainRec.SetupWithManager(mgr),
			(&controllers.PromotionReconciler{Client: racingClient{mgr.GetClient(), "first"}, Recorder: recorder,
				Clock: fakeClock}).SetupWithManager(mgr),
			(&controllers.RolloutReconciler{Client: rolloutClient{mgr.GetClient(), "first"}, Recorder: recorder,
				Clock: fakeClock}).SetupWithManager(mgr),
			reportRec.SetupWithManager(mgr),
			(&controllers.AdvisoryReconciler{Client: mgr.GetClient(), Recorder: recorder, Clock: fakeClock}).SetupWithManager(mgr),
			(&controllers.TrustPolicyReconciler{Client: mgr.GetClient(), Clock: fakeClock, Resync: time.Second}).SetupWithManager(mgr))
	}
	_, stop, err := testenv.StartManager(cfg, testenv.Manager{Scheme: testScheme, Cache: manager.CacheOptions(),
		Setups: []manager.Setup{manager.SetupIndexes(), reconcilers}})
	Expect(err).NotTo(HaveOccurred())
	stopSuite = func() { Expect(stop()).To(Succeed()) }
})

var _ = AfterSuite(func() {
	if stopSuite != nil {
		stopSuite()
	}
	if env != nil {
		Expect(env.Stop()).To(Succeed())
	}
})

// newNamespace gives each spec its own namespace, so specs cannot see each
// other's trains or reports.
func newNamespace() string {
	GinkgoHelper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "t-"}}
	Expect(k8sClient.Create(suiteCtx, ns)).To(Succeed())
	return ns.Name
}

// CI shows only the tail of a run: the causes of its failures come last.
var _ = ReportAfterSuite("failure digest", testenv.FailureDigest(12))
