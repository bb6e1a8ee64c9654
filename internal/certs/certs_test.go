package certs_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	testingclock "k8s.io/utils/clock/testing"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/yaml"

	trainyardv1 "github.com/trainyard-dev/trainyard/api/v1alpha1"
	"github.com/trainyard-dev/trainyard/internal/certs"
	"github.com/trainyard-dev/trainyard/internal/manager"
	"github.com/trainyard-dev/trainyard/internal/testenv"
)

func TestCerts(t *testing.T) {
	RegisterFailHandler(Fail)
	SetDefaultEventuallyTimeout(30 * time.Second)
	RunSpecs(t, "certs suite")
}

var (
	env *envtest.Environment
	cl  client.Client
	ctx context.Context
)

var _ = BeforeSuite(func() {
	ctrl.SetLogger(zap.New(zap.WriteTo(GinkgoWriter), zap.UseDevMode(true)))
	env = testenv.New()
	cfg, err := testenv.Start(env)
	Expect(err).NotTo(HaveOccurred())
	scheme := runtime.NewScheme()
	Expect(clientgoscheme.AddToScheme(scheme)).To(Succeed())
	Expect(trainyardv1.AddToScheme(scheme)).To(Succeed())
	cl, err = client.New(cfg, client.Options{Scheme: scheme})
	Expect(err).NotTo(HaveOccurred())
	var cancel context.CancelFunc
	ctx, cancel = context.WithCancel(context.Background())
	DeferCleanup(func() {
		cancel()
		Expect(env.Stop()).To(Succeed())
	})

	// The generated webhook configurations, pointed at a port on loopback
	// without any CA: the rotator must make the API server trust the server.
	port := freePort()
	data, err := os.ReadFile(filepath.Join(testenv.RepoRoot(), "config", "webhook", "manifests.yaml"))
	Expect(err).NotTo(HaveOccurred())
	docs := splitYAML(data)
	mut := &admissionregistrationv1.MutatingWebhookConfiguration{}
	val := &admissionregistrationv1.ValidatingWebhookConfiguration{}
	Expect(yaml.Unmarshal(docs[0], mut)).To(Succeed())
	Expect(yaml.Unmarshal(docs[1], val)).To(Succeed())
	for i := range mut.Webhooks {
		mut.Webhooks[i].ClientConfig = toURL(mut.Webhooks[i].ClientConfig, port)
	}
	for i := range val.Webhooks {
		val.Webhooks[i].ClientConfig = toURL(val.Webhooks[i].ClientConfig, port)
	}
	Expect(cl.Create(ctx, mut)).To(Succeed())
	Expect(cl.Create(ctx, val)).To(Succeed())
	Expect(cl.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "trainyard-system"}})).To(Succeed())

	certDir := GinkgoT().TempDir()
	clock = testingclock.NewFakeClock(time.Now())
	rot = &certs.Rotator{
		Client: cl, Namespace: "trainyard-system", SecretName: "webhook-tls", CASecretName: "webhook-ca",
		DNSNames: []string{"localhost"}, IPs: []net.IP{net.ParseIP("127.0.0.1")}, CertDir: certDir,
		MutatingWebhooks: []string{mut.Name}, ValidatingWebhooks: []string{val.Name}, Clock: clock,
		Leaves: []certs.Leaf{{SecretName: "bridge-metrics-tls", DNSNames: []string{"bridge-metrics.trainyard-system.svc"}}},
	}
	Expect(rot.Ensure(ctx)).To(Succeed())

	// The webhook served with the Rotator's certificate (certDir).
	_, stop, err := testenv.StartManager(cfg, testenv.Manager{Scheme: scheme, Cache: manager.CacheOptions(),
		Webhook: &envtest.WebhookInstallOptions{LocalServingHost: "127.0.0.1", LocalServingPort: port, LocalServingCertDir: certDir},
		Setups:  manager.WebhookOnly()})
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(func() { Expect(stop()).To(Succeed()) })
})

var (
	rot   *certs.Rotator
	clock *testingclock.FakeClock
)

func freePort() int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	Expect(err).NotTo(HaveOccurred())
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func toURL(c admissionregistrationv1.WebhookClientConfig, port int) admissionregistrationv1.WebhookClientConfig {
	url := fmt.Sprintf("https://127.0.0.1:%d%s", port, *c.Service.Path)
	return admissionregistrationv1.WebhookClientConfig{URL: &url}
}

func splitYAML(data []byte) [][]byte {
	var docs [][]byte
	for _, d := range splitOn(string(data), "\n---\n") {
		if len(d) > 10 {
			docs = append(docs, []byte(d))
		}
	}
	return docs
}

func splitOn(s, sep string) []string {
	var out []string
	for {
		i := indexOf(s, sep)
		if i < 0 {
			return append(out, s)
		}
		out = append(out, s[:i])
		s = s[i+len(sep):]
	}
}

func indexOf(s, sub string) int {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return i
		}
	}
	return -1
}

func secret() *corev1.Secret {
	s := &corev1.Secret{}
	Expect(cl.Get(ctx, types.NamespacedName{Namespace: "trainyard-system", Name: "webhook-tls"}, s)).To(Succeed())
	return s
}

// publishesOnlyTheCA checks that the CA Secret holds the bundle of s and
// nothing else: no private key.
func publishesOnlyTheCA(s *corev1.Secret) {
	GinkgoHelper()
	ca := &corev1.Secret{}
	Expect(cl.Get(ctx, types.NamespacedName{Namespace: "trainyard-system", Name: "webhook-ca"}, ca)).To(Succeed())
	Expect(ca.Data).To(Equal(map[string][]byte{"ca.crt": s.Data["ca.crt"]}))
}

// leaf is the bridge's certificate Secret, which must hold its own pair and
// the CA bundle of s (the main Secret), never the CA's key, and verify for
// its name against that bundle.
func leaf(s *corev1.Secret) *corev1.Secret {
	GinkgoHelper()
	l := &corev1.Secret{}
	Expect(cl.Get(ctx, types.NamespacedName{Namespace: "trainyard-system", Name: "bridge-metrics-tls"}, l)).To(Succeed())
	Expect(l.Type).To(Equal(corev1.SecretTypeTLS))
	Expect(l.Data).To(HaveLen(3))
	Expect(l.Data).NotTo(HaveKey("ca.key"))
	Expect(l.Data["ca.crt"]).To(Equal(s.Data["ca.crt"]))
	_, err := tls.X509KeyPair(l.Data["tls.crt"], l.Data["tls.key"])
	Expect(err).NotTo(HaveOccurred())
	Expect(l.Data["tls.key"]).NotTo(Equal(s.Data["tls.key"]), "a key of its own")
	pool := x509.NewCertPool()
	Expect(pool.AppendCertsFromPEM(s.Data["ca.crt"])).To(BeTrue())
	cert := certs_(l.Data["tls.crt"])[0]
	Expect(cert.DNSNames).To(Equal([]string{"bridge-metrics.trainyard-system.svc"}))
	_, err = cert.Verify(x509.VerifyOptions{Roots: pool, DNSName: "bridge-metrics.trainyard-system.svc", CurrentTime: clock.Now()})
	Expect(err).NotTo(HaveOccurred())
	return l
}

func certs_(pemData []byte) []*x509.Certificate {
	var out []*x509.Certificate
	for {
		var b *pem.Block
		b, pemData = pem.Decode(pemData)
		if b == nil {
			return out
		}
		c, err := x509.ParseCertificate(b.Bytes)
		Expect(err).NotTo(HaveOccurred())
		out = append(out, c)
	}
}

// webhookAnswers proves the API server reached the webhook over TLS with
// the injected CA: only the webhook rejects a non-canonical release name.
func webhookAnswers() error {
	r := &trainyardv1.ComponentRelease{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "not-canonical"},
		Spec:       trainyardv1.ComponentReleaseSpec{Component: "router", Train: "stable", Version: "1.0.0"},
	}
	err := cl.Create(ctx, r)
	if err == nil {
		return fmt.Errorf("created a release the webhook should have rejected")
	}
	if !contains(err.Error(), `must be "router.stable.v1.0.0"`) {
		return err
	}
	return nil
}

func contains(s, sub string) bool { return indexOf(s, sub) >= 0 }

// verifies checks, at the fake clock's time (the API server lives in real
// time, so only the first spec asks it), that the Secret's serving
// certificate chains to its CA bundle for both names, and that the webhook
// server's files are the Secret's.
func verifies(s *corev1.Secret) {
	GinkgoHelper()
	pool := x509.NewCertPool()
	Expect(pool.AppendCertsFromPEM(s.Data["ca.crt"])).To(BeTrue())
	cert := certs_(s.Data["tls.crt"])[0]
	for _, name := range []string{"localhost", "127.0.0.1"} {
		_, err := cert.Verify(x509.VerifyOptions{Roots: pool, DNSName: name, CurrentTime: clock.Now()})
		Expect(err).NotTo(HaveOccurred(), name)
	}
	for _, f := range []string{"tls.crt", "tls.key"} {
		onDisk, err := os.ReadFile(filepath.Join(rot.CertDir, f))
		Expect(err).NotTo(HaveOccurred())
		Expect(onDisk).To(Equal(s.Data[f]), f)
	}
}

var _ = Describe("Rotator", Ordered, func() {
	It("creates the CA and serving certificate and makes the API server trust the webhook", func() {
		s := secret()
		Expect(s.Type).To(Equal(corev1.SecretTypeTLS))
		ca, cert := certs_(s.Data["ca.crt"]), certs_(s.Data["tls.crt"])
		Expect(ca).To(HaveLen(1))
		Expect(cert[0].CheckSignatureFrom(ca[0])).To(Succeed())
		Expect(cert[0].DNSNames).To(Equal([]string{"localhost"}))
		Expect(cert[0].IPAddresses[0].String()).To(Equal("127.0.0.1"))
		onDisk, err := os.ReadFile(filepath.Join(rot.CertDir, "tls.crt"))
		Expect(err).NotTo(HaveOccurred())
		Expect(onDisk).To(Equal(s.Data["tls.crt"]))

		mut := &admissionregistrationv1.MutatingWebhookConfiguration{}
		Expect(cl.Get(ctx, types.NamespacedName{Name: rot.MutatingWebhooks[0]}, mut)).To(Succeed())
		for _, w := range mut.Webhooks {
			Expect(w.ClientConfig.CABundle).To(Equal(s.Data["ca.crt"]))
		}
		Eventually(webhookAnswers).Should(Succeed())
		publishesOnlyTheCA(s)
		leaf(s)
	})

	It("changes nothing while the certificates are good", func() {
		caSecret := func() string {
			ca := &corev1.Secret{}
			Expect(cl.Get(ctx, types.NamespacedName{Namespace: "trainyard-system", Name: "webhook-ca"}, ca)).To(Succeed())
			return ca.ResourceVersion
		}
		before, caBefore, leafBefore := secret().ResourceVersion, caSecret(), leaf(secret()).ResourceVersion
		clock.Step(30 * 24 * time.Hour)
		Expect(rot.Ensure(ctx)).To(Succeed())
		Expect(secret().ResourceVersion).To(Equal(before))
		Expect(caSecret()).To(Equal(caBefore))
		Expect(leaf(secret()).ResourceVersion).To(Equal(leafBefore))
	})

	It("renews the serving certificate with a third of its life left, keeping the CA", func() {
		old := secret()
		clock.Step(250 * 24 * time.Hour) // 280 days of 365
		Expect(rot.Ensure(ctx)).To(Succeed())
		s := secret()
		Expect(s.Data["ca.crt"]).To(Equal(old.Data["ca.crt"]))
		Expect(certs_(s.Data["tls.crt"])[0].SerialNumber).NotTo(Equal(certs_(old.Data["tls.crt"])[0].SerialNumber))
		verifies(s)
		leaf(s) // renewed too: it verifies at the new time
	})

	It("renews the CA before it would outlive a new certificate, keeping the old CA in the bundle", func() {
		old := secret()
		clock.Step(9 * 365 * 24 * time.Hour)
		Expect(rot.Ensure(ctx)).To(Succeed())
		s := secret()
		bundle := certs_(s.Data["ca.crt"])
		Expect(bundle).To(HaveLen(2))
		Expect(bundle[1].SerialNumber).To(Equal(certs_(old.Data["ca.crt"])[0].SerialNumber))
		Expect(certs_(s.Data["tls.crt"])[0].CheckSignatureFrom(bundle[0])).To(Succeed())
		verifies(s)
		mut := &admissionregistrationv1.MutatingWebhookConfiguration{}
		Expect(cl.Get(ctx, types.NamespacedName{Name: rot.MutatingWebhooks[0]}, mut)).To(Succeed())
		Expect(mut.Webhooks[0].ClientConfig.CABundle).To(Equal(s.Data["ca.crt"]))
		publishesOnlyTheCA(s)
		Expect(certs_(leaf(s).Data["tls.crt"])[0].CheckSignatureFrom(bundle[0])).To(Succeed(), "signed by the new CA")
	})

	It("puts the CA Secret back to the bundle alone when someone adds to it or changes it", func() {
		ca := &corev1.Secret{}
		Expect(cl.Get(ctx, types.NamespacedName{Namespace: "trainyard-system", Name: "webhook-ca"}, ca)).To(Succeed())
		ca.Data["ca.crt"] = []byte("not a CA")
		ca.Data["ca.key"] = []byte("misplaced")
		Expect(cl.Update(ctx, ca)).To(Succeed())
		Expect(rot.Ensure(ctx)).To(Succeed())
		publishesOnlyTheCA(secret())
	})

	It("heals the bridge's certificate Secret when someone changes it, and takes out a CA key put there", func() {
		l := leaf(secret())
		l.Data["tls.key"] = []byte("garbage")
		l.Data["ca.key"] = []byte("misplaced")
		Expect(cl.Update(ctx, l)).To(Succeed())
		Expect(rot.Ensure(ctx)).To(Succeed())
		leaf(secret())
	})

	It("heals a Secret whose data was damaged", func() {
		s := secret()
		s.Data["tls.key"] = []byte("garbage")
		Expect(cl.Update(ctx, s)).To(Succeed())
		Expect(rot.Ensure(ctx)).To(Succeed())
		Expect(string(secret().Data["tls.key"])).To(HavePrefix("-----BEGIN EC PRIVATE KEY-----"))
		verifies(secret())
	})
})
