package review_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
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
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/trainyard-dev/trainyard/internal/review"
	"github.com/trainyard-dev/trainyard/internal/testenv"
)

func TestReview(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "Token review suite")
}

var (
	cfg *rest.Config
	cs  *kubernetes.Clientset
	ctx = context.Background()
)

var _ = BeforeSuite(func() {
	env := &envtest.Environment{}
	var err error
	cfg, err = testenv.Start(env)
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(env.Stop)
	cs, err = kubernetes.NewForConfig(cfg)
	Expect(err).NotTo(HaveOccurred())
})

// token makes a ServiceAccount, lets it get the non-resource paths, and
// returns a token for it.
func token(name string, paths ...string) string {
	GinkgoHelper()
	_, err := cs.CoreV1().ServiceAccounts("default").Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	Expect(err).NotTo(HaveOccurred())
	if len(paths) > 0 {
		grant(name, paths...)
	}
	tr, err := cs.CoreV1().ServiceAccounts("default").CreateToken(ctx, name, &authnv1.TokenRequest{}, metav1.CreateOptions{})
	Expect(err).NotTo(HaveOccurred())
	return tr.Status.Token
}

// grant lets the ServiceAccount name get the non-resource paths.
func grant(name string, paths ...string) {
	GinkgoHelper()
	_, err := cs.RbacV1().ClusterRoles().Create(ctx, &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: name},
		Rules: []rbacv1.PolicyRule{{NonResourceURLs: paths, Verbs: []string{"get"}}}}, metav1.CreateOptions{})
	Expect(err).NotTo(HaveOccurred())
	_, err = cs.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: name},
		RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: name},
		Subjects: []rbacv1.Subject{{Kind: "ServiceAccount", Name: name, Namespace: "default"}}}, metav1.CreateOptions{})
	Expect(err).NotTo(HaveOccurred())
}

var _ = Describe("the metrics filter", func() {
	It("lets through only tokens RBAC lets get the path, with 401 and 403 otherwise", func() {
		filter, err := review.MetricsFilter(cfg, nil)
		Expect(err).NotTo(HaveOccurred())
		h, err := filter(GinkgoLogr, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "metrics") }))
		Expect(err).NotTo(HaveOccurred())
		srv := httptest.NewServer(h)
		DeferCleanup(srv.Close)

		get := func(path, tok string) (int, string) {
			req, _ := http.NewRequest(http.MethodGet, srv.URL+path, nil)
			if tok != "" {
				req.Header.Set("Authorization", "Bearer "+tok)
			}
			resp, err := http.DefaultClient.Do(req)
			Expect(err).NotTo(HaveOccurred())
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			return resp.StatusCode, string(body)
		}
		scraper, nobody := token("scraper", "/metrics"), token("nobody")

		code, body := get("/metrics", scraper)
		Expect(code).To(Equal(http.StatusOK))
		Expect(body).To(Equal("metrics"))
		code, body = get("/metrics", "")
		Expect(code).To(Equal(http.StatusUnauthorized))
		Expect(body).To(ContainSubstring("a bearer token is required"))
		code, _ = get("/metrics", "not-a-token")
		Expect(code).To(Equal(http.StatusUnauthorized))
		code, body = get("/metrics", nobody)
		Expect(code).To(Equal(http.StatusForbidden))
		Expect(body).To(ContainSubstring("may not get /metrics"))
		code, _ = get("/debug/pprof/", scraper)
		Expect(code).To(Equal(http.StatusForbidden))
	})
})

var _ = Describe("the metrics filter's failure budget (issue 27 #14)", func() {
	It("refuses an address that keeps presenting bad tokens with 429, without another TokenReview", func() {
		var reviews atomic.Int64
		c, err := client.NewWithWatch(cfg, client.Options{})
		Expect(err).NotTo(HaveOccurred())
		counted := interceptor.NewClient(c, interceptor.Funcs{
			Create: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.CreateOption) error {
				if _, ok := obj.(*authnv1.TokenReview); ok {
					reviews.Add(1)
				}
				return c.Create(ctx, obj, opts...)
			}})
		h, err := review.Filter(&review.Reviewer{Client: counted})(GinkgoLogr,
			http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "metrics") }))
		Expect(err).NotTo(HaveOccurred())
		srv := httptest.NewServer(h)
		DeferCleanup(srv.Close)
		scraper := token("budget-scraper", "/metrics")
		get := func(from, tok string) int {
			d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
			hc := &http.Client{Transport: &http.Transport{DialContext: d.DialContext}}
			req, _ := http.NewRequest(http.MethodGet, srv.URL+"/metrics", nil)
			req.Header.Set("Authorization", "Bearer "+tok)
			resp, err := hc.Do(req)
			Expect(err).NotTo(HaveOccurred())
			defer resp.Body.Close()
			return resp.StatusCode
		}
		codes := map[int]int{}
		for i := range 60 {
			codes[get("127.0.0.1", fmt.Sprintf("made-up-%d", i))]++
		}
		Expect(codes[http.StatusUnauthorized]).To(BeNumerically(">=", review.FailureBurst))
		Expect(codes[http.StatusUnauthorized]).To(BeNumerically("<=", review.FailureBurst+5), "%v", codes)
		Expect(codes[http.StatusTooManyRequests]).To(BeNumerically(">=", 60-review.FailureBurst-5), "%v", codes)
		Expect(reviews.Load()).To(BeEquivalentTo(codes[http.StatusUnauthorized]), "a 429 costs the API server nothing")
		// Another address, with a good token, is served.
		Expect(get("127.0.0.2", scraper)).To(Equal(http.StatusOK))
	})
})

var _ = Describe("the review cache", func() {
	It("keeps a refusal briefly, so that a binding just granted takes effect within seconds", func() {
		c, err := client.New(cfg, client.Options{})
		Expect(err).NotTo(HaveOccurred())
		now := time.Now()
		v := &review.Reviewer{Client: c, Now: func() time.Time { return now }}
		tok := token("late")
		attrs := review.Attributes{NonResource: &authzv1.NonResourceAttributes{Path: "/metrics", Verb: "get"}}
		ans, err := v.Review(ctx, tok, attrs)
		Expect(err).NotTo(HaveOccurred())
		Expect(ans).To(Equal(review.Answer{Authenticated: true, Allowed: false}))

		grant("late", "/metrics")
		// Until the API server's authorizer sees the binding.
		Eventually(func() bool {
			now = now.Add(review.DenyTTL + time.Millisecond)
			ans, err := v.Review(ctx, tok, attrs)
			return err == nil && ans.Allowed
		}).Should(BeTrue())
		// An allowing answer is kept for TTL: no review within it.
		v.Client = nil // a review would panic
		now = now.Add(review.TTL - time.Second)
		ans, err = v.Review(ctx, tok, attrs)
		Expect(err).NotTo(HaveOccurred())
		Expect(ans.Allowed).To(BeTrue())
	})
})
