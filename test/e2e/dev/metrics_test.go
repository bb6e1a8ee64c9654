package dev

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/gbytes"
	"github.com/trainyard-dev/trainyard/test/util"
	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

// What the chart's ServiceMonitor does, against a real manager: verify the
// metrics endpoint's certificate with the CA in the serving-certificate
// Secret, for the metrics Service's name, and authenticate with the token of
// a ServiceAccount that may only get /metrics.
var _ = Describe("the metrics endpoint as the chart's ServiceMonitor scrapes it", func() {
	It("serves a certificate Prometheus can verify, and the metrics to a token RBAC allows", func() {
		state := GinkgoT().TempDir()
		port, err := util.FreePort()
		Expect(err).NotTo(HaveOccurred())
		const serverName = "trainyard-metrics.default.svc"
		session, _, _ := startDevIn(state, "-agent=false", "-workloads", "", "--",
			fmt.Sprintf("--metrics-bind-address=127.0.0.1:%d", port), "--metrics-secure=true",
			"--metrics-cert-dir="+filepath.Join(state, "webhook-certs"),
			"--webhook-dns-names=localhost,"+serverName)
		Eventually(session.Out, time.Minute).Should(gbytes.Say("trainyard is ready"))

		ctx := context.Background()
		rc, err := clientcmd.BuildConfigFromFlags("", filepath.Join(state, "kubeconfig"))
		Expect(err).NotTo(HaveOccurred())
		cs, err := kubernetes.NewForConfig(rc)
		Expect(err).NotTo(HaveOccurred())
		secret, err := cs.CoreV1().Secrets("default").Get(ctx, "trainyard-webhook-tls", metav1.GetOptions{})
		Expect(err).NotTo(HaveOccurred())
		pool := x509.NewCertPool()
		Expect(pool.AppendCertsFromPEM(secret.Data["ca.crt"])).To(BeTrue())

		// The scraper: a ServiceAccount bound to what the chart's
		// <fullname>-metrics-reader grants.
		_, err = cs.CoreV1().ServiceAccounts("default").Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "scraper"}}, metav1.CreateOptions{})
		Expect(err).NotTo(HaveOccurred())
		_, err = cs.RbacV1().ClusterRoles().Create(ctx, &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "metrics-reader"},
			Rules: []rbacv1.PolicyRule{{NonResourceURLs: []string{"/metrics"}, Verbs: []string{"get"}}}}, metav1.CreateOptions{})
		Expect(err).NotTo(HaveOccurred())
		_, err = cs.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "scraper"},
			RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "metrics-reader"},
			Subjects: []rbacv1.Subject{{Kind: "ServiceAccount", Name: "scraper", Namespace: "default"}}}, metav1.CreateOptions{})
		Expect(err).NotTo(HaveOccurred())
		tr, err := cs.CoreV1().ServiceAccounts("default").CreateToken(ctx, "scraper", &authnv1.TokenRequest{}, metav1.CreateOptions{})
		Expect(err).NotTo(HaveOccurred())

		scrape := func(name, token string) (int, string, error) {
			c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
				TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: name}}}
			req, _ := http.NewRequest(http.MethodGet, fmt.Sprintf("https://127.0.0.1:%d/metrics", port), nil)
			if token != "" {
				req.Header.Set("Authorization", "Bearer "+token)
			}
			resp, err := c.Do(req)
			if err != nil {
				return 0, "", err
			}
			defer resp.Body.Close()
			body, err := io.ReadAll(resp.Body)
			return resp.StatusCode, string(body), err
		}
		Eventually(func(g Gomega) {
			code, body, err := scrape(serverName, tr.Status.Token)
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(code).To(Equal(http.StatusOK), body)
			g.Expect(body).To(MatchRegexp(`(?m)^trainyard_build_info\{commit="[^"]+",goversion="go[^"]+",version="[^"]+"\} 1$`))
		}, time.Minute).Should(Succeed())

		// Verified: another name fails the handshake; and no token, no metrics.
		_, _, err = scrape("example.com", tr.Status.Token)
		Expect(err).To(MatchError(ContainSubstring("certificate is valid for")))
		code, _, err := scrape(serverName, "")
		Expect(err).NotTo(HaveOccurred())
		Expect(code).To(BeElementOf(http.StatusUnauthorized, http.StatusForbidden))
	})
})
