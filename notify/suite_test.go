package notify_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
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
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	trainyardv1 "github.com/trainyard-dev/trainyard/api/v1alpha1"
	"github.com/trainyard-dev/trainyard/controllers"
	"github.com/trainyard-dev/trainyard/internal/manager"
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
	// stopManager stops the running manager (see startManager).
	stopManager func()
)

var _ = BeforeSuite(func() {
	ctrl.SetLogger(zap.New(zap.WriteTo(GinkgoWriter), zap.UseDevMode(true)))
	Expect(clientgoscheme.AddToScheme(scheme)).To(Succeed())
	Expect(trainyardv1.AddToScheme(scheme)).To(Succeed())
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
	_, stop, err := testenv.StartManager(cfg, testenv.Manager{Scheme: scheme, Cache: manager.CacheOptions(),
		Webhook: &env.WebhookInstallOptions, Setups: manager.WebhookOnly()})
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(func() { Expect(stop()).To(Succeed()) })
	Eventually(testenv.WebhookServing(env.WebhookInstallOptions)).Should(Succeed())

	fakeClock = testingclock.NewFakeClock(time.Now().Truncate(time.Second))
	// Every delivery to a CloudEvents receiver is checked against it.
	_, err = ceSchema()
	Expect(err).NotTo(HaveOccurred())
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
	// The receivers here listen on 127.0.0.1, which the manager refuses
	// unless told otherwise (as --notification-allowed-cidrs does); the
	// rest of loopback stays refused.
	dest, err := notify.ParseDestinations([]string{"127.0.0.1/32"})
	Expect(err).NotTo(HaveOccurred())
	mgr, stopMgr, err := testenv.StartManager(cfg, testenv.Manager{Scheme: scheme, Cache: manager.CacheOptions(),
		Configure: func(o *ctrl.Options) {
			o.LeaderElection, o.LeaderElectionID, o.LeaderElectionNamespace = true, "notify-test.trainyard.dev", "default"
			o.LeaderElectionReleaseOnCancel = true
			o.LeaseDuration, o.RenewDeadline, o.RetryPeriod = ptr.To(4*time.Second), ptr.To(3*time.Second), ptr.To(200*time.Millisecond)
		},
		Setups: []manager.Setup{manager.SetupIndexes(),
			manager.SetupControllers(controllers.Options{Clock: fakeClock, StaleThreshold: staleThreshold, TrainWorkers: 2, ReportWorkers: 16}),
			manager.SetupNotifications(notify.Options{Destinations: dest})},
	})
	Expect(err).NotTo(HaveOccurred())
	return func() { Expect(stopMgr()).To(Succeed()) }, mgr.Elected()
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
//
// Every delivery it gets is checked as it arrives: as CloudEvents
// (checkCloudEvents: the CloudEvents project's schema, the rules it leaves
// out, trainyard's documented event) unless target has made it a chat
// target's receiver. What is wrong fails the spec that made the receiver,
// when the spec ends (or earlier, at requests).
type receiver struct {
	*httptest.Server
	mu       sync.Mutex
	got      []received
	chat     bool     // the receiver of a Slack or Teams target
	problems []string // what is wrong with the deliveries got
	answer   func(n int, w http.ResponseWriter)
}

// receivers are the live receivers, for target to find by URL.
var receivers sync.Map // URL → *receiver

func newReceiver(answer func(n int, w http.ResponseWriter)) *receiver {
	GinkgoHelper()
	rc := &receiver{answer: answer}
	rc.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		rc.mu.Lock()
		n := len(rc.got)
		rc.got = append(rc.got, received{at: time.Now(), header: r.Header.Clone(), body: body})
		if !rc.chat {
			for _, p := range checkCloudEvents(r.Header, body) {
				rc.problems = append(rc.problems, fmt.Sprintf("delivery %d: %s", n, p))
			}
		}
		rc.mu.Unlock()
		if rc.answer != nil {
			rc.answer(n, w)
			return
		}
		w.WriteHeader(http.StatusAccepted)
	}))
	receivers.Store(rc.URL, rc)
	// Cleanups run last first: the server is closed, which waits for the
	// requests under way, and then what they got is judged.
	DeferCleanup(func() {
		receivers.Delete(rc.URL)
		rc.mu.Lock()
		defer rc.mu.Unlock()
		rc.failOnProblemsLocked()
	})
	DeferCleanup(rc.Close)
	return rc
}

// receiverAt is the live receiver a target's URL points at, if any.
func receiverAt(url string) *receiver {
	var found *receiver
	receivers.Range(func(k, v any) bool {
		if u := k.(string); url == u || strings.HasPrefix(url, u+"/") {
			found = v.(*receiver)
			return false
		}
		return true
	})
	return found
}

// requests are the deliveries got so far, every one valid.
func (rc *receiver) requests() []received {
	GinkgoHelper()
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.failOnProblemsLocked()
	return append([]received(nil), rc.got...)
}

// failOnProblemsLocked fails the spec if a delivery was not valid, saying
// in full (not truncated as a matcher would) what was wrong.
func (rc *receiver) failOnProblemsLocked() {
	GinkgoHelper()
	if len(rc.problems) > 0 {
		Fail(fmt.Sprintf("deliveries to %s that are not valid CloudEvents (%d problems):\n%s",
			rc.URL, len(rc.problems), strings.Join(rc.problems, "\n")))
	}
}

func (rc *receiver) count() int {
	GinkgoHelper()
	return len(rc.requests())
}

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
func target(ns, name string, t trainyardv1.NotificationTargetType, url string, mutate ...func(*trainyardv1.NotificationTarget)) *trainyardv1.NotificationTarget {
	GinkgoHelper()
	ctx := context.Background()
	Expect(k8sClient.Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name + "-secret"},
		StringData: map[string]string{trainyardv1.SecretKeyURL: url, trainyardv1.SecretKeySigningKey: signingKey},
	})).To(Succeed())
	tg := &trainyardv1.NotificationTarget{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       trainyardv1.NotificationTargetSpec{Type: t, SecretRef: trainyardv1.LocalObjectReference{Name: name + "-secret"}},
	}
	for _, m := range mutate {
		m(tg)
	}
	if rc := receiverAt(url); rc != nil && t != trainyardv1.TargetCloudEvents {
		rc.mu.Lock()
		rc.chat = true
		rc.mu.Unlock()
	}
	Expect(k8sClient.Create(ctx, tg)).To(Succeed())
	return tg
}

// rule creates a NotificationRule to target.
func rule(ns, name, targetName string, spec trainyardv1.NotificationRuleSpec) *trainyardv1.NotificationRule {
	GinkgoHelper()
	spec.TargetRef = trainyardv1.LocalObjectReference{Name: targetName}
	r := &trainyardv1.NotificationRule{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: spec}
	Expect(k8sClient.Create(context.Background(), r)).To(Succeed())
	// The rule is Ready once the notifier has seen it: from then on its
	// transitions are sent.
	Eventually(func(g Gomega) {
		g.Expect(k8sClient.Get(context.Background(), client.ObjectKeyFromObject(r), r)).To(Succeed())
		g.Expect(r.Status.Conditions).To(ContainElement(And(
			HaveField("Type", trainyardv1.ConditionReady), HaveField("Status", metav1.ConditionTrue))))
	}).Should(Succeed())
	return r
}

func publish(ns, component, train, version string) *trainyardv1.ComponentRelease {
	GinkgoHelper()
	rel := &trainyardv1.ComponentRelease{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: trainyardv1.ReleaseName(component, train, version)},
		Spec:       trainyardv1.ComponentReleaseSpec{Component: component, Train: train, Version: version},
	}
	Expect(k8sClient.Create(context.Background(), rel)).To(Succeed())
	return rel
}

func getRule(r *trainyardv1.NotificationRule) *trainyardv1.NotificationRule {
	GinkgoHelper()
	out := &trainyardv1.NotificationRule{}
	Expect(k8sClient.Get(context.Background(), client.ObjectKeyFromObject(r), out)).To(Succeed())
	return out
}

func getTarget(t *trainyardv1.NotificationTarget) *trainyardv1.NotificationTarget {
	GinkgoHelper()
	out := &trainyardv1.NotificationTarget{}
	Expect(k8sClient.Get(context.Background(), client.ObjectKeyFromObject(t), out)).To(Succeed())
	return out
}

// CI shows only the tail of a run: the causes of its failures come last.
var _ = ReportAfterSuite("failure digest", testenv.FailureDigest(12))
