package bridge_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	authnv1 "k8s.io/api/authentication/v1"
	authzv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	trainyardv1 "github.com/trainyard-dev/trainyard/api/v1alpha1"
	"github.com/trainyard-dev/trainyard/bridge"
	"github.com/trainyard-dev/trainyard/controllers"
	tymanager "github.com/trainyard-dev/trainyard/internal/manager"
	"github.com/trainyard-dev/trainyard/internal/testenv"
	"github.com/trainyard-dev/trainyard/internal/wire"
)

func TestBridge(t *testing.T) {
	RegisterFailHandler(Fail)
	SetDefaultEventuallyTimeout(20 * time.Second)
	RunSpecs(t, "bridge suite")
}

var (
	env       *envtest.Environment
	cfg       *rest.Config
	k8sClient client.Client
	scheme    = runtime.NewScheme()
)

var _ = BeforeSuite(func() {
	ctrl.SetLogger(zap.New(zap.WriteTo(io.MultiWriter(GinkgoWriter, &suiteLogs)), zap.UseDevMode(true)))
	Expect(clientgoscheme.AddToScheme(scheme)).To(Succeed())
	Expect(trainyardv1.AddToScheme(scheme)).To(Succeed())
	env = testenv.New()
	// The API server calls trainyard's admission webhook for every write,
	// the bridge's included, as in `make dev` and the Helm chart: a bridge
	// feature is tested with the webhook in place.
	env.WebhookInstallOptions = testenv.WebhookOptions()
	var err error
	cfg, err = testenv.Start(env)
	Expect(err).NotTo(HaveOccurred())
	k8sClient, err = client.New(cfg, client.Options{Scheme: scheme})
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(func() { Expect(env.Stop()).To(Succeed()) })
	serveWebhook()
})

// serveWebhook runs, for the whole suite, a manager that serves only the
// admission webhook, as one replica of the manager does for every other.
func serveWebhook() {
	GinkgoHelper()
	_, stop, err := testenv.StartManager(cfg, testenv.Manager{Scheme: scheme, Cache: tymanager.CacheOptions(),
		Webhook: &env.WebhookInstallOptions, Setups: tymanager.WebhookOnly()})
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(func() { Expect(stop()).To(Succeed()) })
	Eventually(testenv.WebhookServing(env.WebhookInstallOptions)).Should(Succeed())
}

// manager is a running manager (controllers and bridge) serving the bridge
// over real HTTP at url.
type manager struct {
	ns     string
	url    string
	stop   func()
	bridge *bridge.Server
	// token is a ServiceAccount token that RBAC lets publish in the namespace.
	token string
	// cache is the manager's cached client, for a second bridge over it.
	cache client.Reader
}

// publish posts a release with the publisher token.
func (m *manager) publish(train, component, version, body string) response {
	return do(http.MethodPost, fmt.Sprintf("%s/v3/versions/%s/%s/%s", m.url, train, component, version),
		"application/json", body, bearerAuth(m.token))
}

func bearerAuth(token string) func(*http.Request) {
	return func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+token) }
}

// serviceAccountToken makes a ServiceAccount in ns, lets it do verbs on
// resources there when verbs is not empty, and returns a token for it.
func serviceAccountToken(ns, name string, verbs []string, resources ...string) string {
	GinkgoHelper()
	ctx := context.Background()
	Expect(k8sClient.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}})).To(Succeed())
	if len(verbs) > 0 {
		Expect(k8sClient.Create(ctx, &rbacv1.Role{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
			Rules:      []rbacv1.PolicyRule{{APIGroups: []string{"trainyard.dev", ""}, Resources: resources, Verbs: verbs}},
		})).To(Succeed())
		Expect(k8sClient.Create(ctx, &rbacv1.RoleBinding{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
			RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: name},
			Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: name, Namespace: ns}},
		})).To(Succeed())
	}
	cs, err := kubernetes.NewForConfig(cfg)
	Expect(err).NotTo(HaveOccurred())
	// The API server's authorizer sees a new binding a moment later.
	for _, verb := range verbs {
		for _, res := range resources {
			Eventually(func() bool {
				sar, err := cs.AuthorizationV1().SubjectAccessReviews().Create(ctx, &authzv1.SubjectAccessReview{Spec: authzv1.SubjectAccessReviewSpec{
					User: "system:serviceaccount:" + ns + ":" + name, Groups: []string{"system:serviceaccounts"},
					ResourceAttributes: &authzv1.ResourceAttributes{Namespace: ns, Verb: verb, Group: "trainyard.dev", Resource: res},
				}}, metav1.CreateOptions{})
				return err == nil && sar.Status.Allowed
			}).Should(BeTrue(), "RBAC lets %s %s %s", name, verb, res)
		}
	}
	tr, err := cs.CoreV1().ServiceAccounts(ns).CreateToken(ctx, name, &authnv1.TokenRequest{}, metav1.CreateOptions{})
	Expect(err).NotTo(HaveOccurred())
	usedTokens.add(tr.Status.Token)
	return tr.Status.Token
}

// suiteLogs is every log line of the suite (the managers', the bridges',
// their audit logs), and usedTokens every token and credential a spec sent
// or was issued: no log line may contain one (issue 14).
var (
	suiteLogs  syncBuffer
	usedTokens = &tokenSet{m: map[string]bool{}}
)

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

type tokenSet struct {
	mu sync.Mutex
	m  map[string]bool
}

func (t *tokenSet) add(tokens ...string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, tok := range tokens {
		t.m[tok] = true
	}
}

var _ = AfterSuite(func() {
	testenv.SkipIfShort() // no spec ran, nothing was logged
	logs := suiteLogs.String()
	Expect(logs).To(ContainSubstring("bridge write"), "the suite's logs were captured")
	usedTokens.mu.Lock()
	defer usedTokens.mu.Unlock()
	Expect(usedTokens.m).NotTo(BeEmpty())
	var leaks []string
	for _, line := range strings.Split(logs, "\n") {
		for tok := range usedTokens.m {
			if strings.Contains(line, tok) {
				leaks = append(leaks, line)
			}
		}
	}
	Expect(leaks).To(BeEmpty(), "log lines with a token or credential")
})

func jsonMarshal(v any) ([]byte, error) { return json.Marshal(v) }

func nsOf(m *manager) string { return m.ns }

// startManager starts a manager for namespace ns; stop() shuts it down the
// way SIGTERM does (draining and flushing).
func startManager(ns string, heartbeat time.Duration, mutate ...func(*bridge.Options)) *manager {
	GinkgoHelper()
	return startManagerWith(ns, heartbeat, controllers.Options{}, mutate...)
}

// startManagerWith is startManager with the controllers' options (a fake
// clock and a stale threshold).
func startManagerWith(ns string, heartbeat time.Duration, co controllers.Options, mutate ...func(*bridge.Options)) *manager {
	GinkgoHelper()
	// Anonymous check-ins and no rate limit unless a spec says otherwise:
	// tests poll hard, and authentication has its own specs.
	o := bridge.Options{Namespace: ns, Heartbeat: heartbeat, DoctorAuthSecret: "doctor-auth",
		RateLimit: 1e6, RateBurst: 1e6, CheckInAuth: bridge.CheckInOpen}
	for _, m := range mutate {
		m(&o)
	}
	// The bridge runs as in the manager binary: its own http.Server (header
	// and body limits, timeouts), started and drained by the manager.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	Expect(err).NotTo(HaveOccurred())
	o.Listener = l
	var b *bridge.Server
	setupBridge := func(ctx context.Context, mgr ctrl.Manager) error {
		var api client.Client = mgr.GetClient()
		if wrapAPI != nil {
			api = wrapAPI(api)
		}
		b = bridge.New(mgr.GetClient(), api, mgr.GetAPIReader(), o)
		if err := b.Watch(ctx, mgr.GetCache()); err != nil {
			return err
		}
		return mgr.Add(b)
	}
	mgr, stop, err := testenv.StartManager(cfg, testenv.Manager{Scheme: scheme, Cache: tymanager.CacheOptions(),
		Setups: []tymanager.Setup{tymanager.SetupIndexes(), tymanager.SetupControllers(co), setupBridge}})
	Expect(err).NotTo(HaveOccurred())
	Expect(mgr.GetCache().WaitForCacheSync(context.Background())).To(BeTrue())
	token := serviceAccountToken(ns, fmt.Sprintf("publisher-%d", publishers.Add(1)), []string{"create"}, "componentreleases")
	var once sync.Once
	return &manager{ns: ns, url: "http://" + l.Addr().String(), bridge: b, token: token, cache: mgr.GetClient(), stop: func() {
		// As SIGTERM: drain the requests, flush the heartbeats, stop.
		once.Do(func() { Expect(stop()).To(Succeed()) })
	}}
}

var publishers atomic.Int64

// wrapAPI, when a spec sets it, wraps the client the next managers' bridges
// write with (a real client: to hold a write at a barrier).
var wrapAPI func(client.Client) client.Client

// patchHook is a client whose Patch calls hook first.
type patchHook struct {
	client.Client
	hook func(client.Object, client.Patch)
}

func (p patchHook) Patch(ctx context.Context, obj client.Object, patch client.Patch, opts ...client.PatchOption) error {
	p.hook(obj, patch)
	return p.Client.Patch(ctx, obj, patch, opts...)
}

func namespace() string {
	GinkgoHelper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "b-"}}
	Expect(k8sClient.Create(context.Background(), ns)).To(Succeed())
	return ns.Name
}

type response struct {
	code   int
	header http.Header
	body   []byte
}

func (r response) json(v any) {
	GinkgoHelper()
	Expect(json.Unmarshal(r.body, v)).To(Succeed(), string(r.body))
}

// errorOf is the {"code","message"} body, checked to be well formed.
func (r response) errorOf() wire.Error {
	GinkgoHelper()
	var e wire.Error
	Expect(r.header.Get("Content-Type")).To(Equal("application/json"))
	r.json(&e)
	Expect(e.Code).To(Equal(r.code))
	return e
}

func do(method, url, contentType, body string, mutate ...func(*http.Request)) response {
	GinkgoHelper()
	req, err := http.NewRequest(method, url, bytes.NewBufferString(body))
	Expect(err).NotTo(HaveOccurred())
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for _, m := range mutate {
		m(req)
	}
	resp, err := http.DefaultClient.Do(req)
	Expect(err).NotTo(HaveOccurred())
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	Expect(err).NotTo(HaveOccurred())
	return response{code: resp.StatusCode, header: resp.Header, body: data}
}

func post(url, body string) response { return do(http.MethodPost, url, "application/json", body) }
func get(url string) response        { return do(http.MethodGet, url, "", "") }

// outage is a TCP proxy to the API server that can be cut: the bridge's
// writes go through it, while its cache keeps the manager's own connection,
// as a cache keeps serving what it has when the API server goes away.
type outage struct {
	l      net.Listener
	target string
	mu     sync.Mutex
	down   bool
	conns  []net.Conn
}

func newOutage(target string) *outage {
	GinkgoHelper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	Expect(err).NotTo(HaveOccurred())
	o := &outage{l: l, target: target}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			o.mu.Lock()
			if o.down {
				o.mu.Unlock()
				c.Close()
				continue
			}
			up, err := net.Dial("tcp", target)
			if err != nil {
				o.mu.Unlock()
				c.Close()
				continue
			}
			o.conns = append(o.conns, c, up)
			o.mu.Unlock()
			go func() { _, _ = io.Copy(up, c); up.Close() }()
			go func() { _, _ = io.Copy(c, up); c.Close() }()
		}
	}()
	DeferCleanup(func() { l.Close(); o.cut(true) })
	return o
}

// cut takes the API server away (true) or brings it back (false).
func (o *outage) cut(down bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.down = down
	if down {
		for _, c := range o.conns {
			c.Close()
		}
		o.conns = nil
	}
}

// behindOutage runs another bridge over m's cache, served as the manager
// serves it, whose API writes (writes) and uncached reads (reads) go
// through a proxy to the API server that the returned outage can cut.
func behindOutage(m *manager, o bridge.Options, writes, reads bool) (*bridge.Server, string, *outage) {
	GinkgoHelper()
	u, err := url.Parse(cfg.Host)
	Expect(err).NotTo(HaveOccurred())
	cut := newOutage(u.Host)
	proxied, err := client.New(cut.config(), client.Options{Scheme: scheme})
	Expect(err).NotTo(HaveOccurred())
	api, reader := k8sClient, client.Reader(k8sClient)
	if writes {
		api = proxied
	}
	if reads {
		reader = proxied
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	Expect(err).NotTo(HaveOccurred())
	o.Listener = l
	b := bridge.New(m.cache, api, reader, o)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = b.Start(ctx) }()
	DeferCleanup(func() { cancel(); <-done })
	return b, "http://" + l.Addr().String(), cut
}

// config is cfg reaching the API server through the proxy.
func (o *outage) config() *rest.Config {
	c := rest.CopyConfig(cfg)
	c.Host = "https://" + o.l.Addr().String()
	c.Timeout = 5 * time.Second
	return c
}

// CI shows only the tail of a run: the causes of its failures come last.
var _ = ReportAfterSuite("failure digest", testenv.FailureDigest(12))
