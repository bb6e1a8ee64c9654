package manager

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"path/filepath"

	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/trainyard-dev/trainyard/internal/certs"
	"github.com/trainyard-dev/trainyard/internal/cliflag"
	"github.com/trainyard-dev/trainyard/webhook"
)

// WebhookOptions are the admission webhook's flags: where it listens and
// where its serving certificate comes from.
type WebhookOptions struct {
	Enabled  bool
	Host     string
	Port     int
	CertDir  string
	CertMode string // self-signed or external
	// Secret holds the self-signed CA and certificate; CASecret only the CA
	// bundle, for clients that verify without reading the keys.
	Secret, CASecret string
	DNSNames, IPSANs string
	// The webhook configurations that receive the CA bundle.
	Mutating, Validating string
	// BridgeSecret and BridgeDNSNames: a further certificate, signed by
	// the same CA, for the bridge's metrics endpoint (certs.Leaf).
	BridgeSecret, BridgeDNSNames string
}

// BindFlags binds the webhook's flags to w, with their defaults.
func (w *WebhookOptions) BindFlags(fs *flag.FlagSet) {
	fs.BoolVar(&w.Enabled, "enable-webhook", true, "Serve the admission webhook.")
	fs.StringVar(&w.Host, "webhook-host", "", "Address the webhook server listens on (empty: all).")
	fs.IntVar(&w.Port, "webhook-port", 9443, "Port of the webhook server.")
	fs.StringVar(&w.CertDir, "webhook-cert-dir", filepath.Join(os.TempDir(), "k8s-webhook-server", "serving-certs"),
		"Directory of the webhook's tls.crt and tls.key.")
	fs.StringVar(&w.CertMode, "webhook-cert-mode", "self-signed",
		"self-signed: the manager keeps its own CA and certificate in --webhook-secret, renews them and injects the CA into the webhook configurations; "+
			"external: another party (cert-manager) provides the files in --webhook-cert-dir and the CA bundle.")
	fs.StringVar(&w.Secret, "webhook-secret", "trainyard-webhook-tls", "Secret of the self-signed CA and certificate, in --namespace.")
	fs.StringVar(&w.CASecret, "webhook-ca-secret", "",
		"Secret, in --namespace, that the manager keeps holding only the CA bundle (ca.crt) of --webhook-secret, for clients that verify "+
			"the certificate (the chart's ServiceMonitor) without reading the private keys; empty: none.")
	fs.StringVar(&w.DNSNames, "webhook-dns-names", "", "Comma-separated DNS names of the webhook certificate (the webhook Service's names).")
	fs.StringVar(&w.IPSANs, "webhook-ip-sans", "", "Comma-separated IP addresses of the webhook certificate.")
	fs.StringVar(&w.BridgeSecret, "bridge-metrics-cert-secret", "",
		"Self-signed mode: a kubernetes.io/tls Secret, in --namespace, that the manager keeps holding a certificate for --bridge-metrics-dns-names "+
			"signed by the webhook's CA (and the CA bundle, never its key), which `trainyard bridge` serves its metrics with; empty: none.")
	fs.StringVar(&w.BridgeDNSNames, "bridge-metrics-dns-names", "", "Comma-separated DNS names of the --bridge-metrics-cert-secret certificate (the bridge's metrics Service).")
	fs.StringVar(&w.Mutating, "mutating-webhook-configuration", "trainyard-mutating-webhook-configuration",
		"MutatingWebhookConfiguration that receives the CA bundle in self-signed mode (the manager's RBAC names it).")
	fs.StringVar(&w.Validating, "validating-webhook-configuration", "trainyard-validating-webhook-configuration",
		"ValidatingWebhookConfiguration that receives the CA bundle in self-signed mode (the manager's RBAC names it).")
}

// Validate checks the webhook's flags; namespace is the manager's.
func (w *WebhookOptions) Validate(namespace string) error {
	if w.CASecret != "" && w.CASecret == w.Secret {
		return fmt.Errorf("--webhook-ca-secret must name another Secret than --webhook-secret (%q), which holds the private keys", w.Secret)
	}
	switch b := w.BridgeSecret; {
	case b != "" && (b == w.Secret || b == w.CASecret):
		return fmt.Errorf("--bridge-metrics-cert-secret must name a Secret of its own, not %q", b)
	case b != "" && w.BridgeDNSNames == "":
		return fmt.Errorf("--bridge-metrics-cert-secret needs --bridge-metrics-dns-names")
	}
	for _, s := range cliflag.List(w.IPSANs) {
		if net.ParseIP(s) == nil {
			return fmt.Errorf("--webhook-ip-sans: %q is not an IP address", s)
		}
	}
	if !w.Enabled {
		return nil
	}
	switch w.CertMode {
	case "external":
	case "self-signed":
		if namespace == "" {
			return fmt.Errorf("--webhook-cert-mode=self-signed needs --namespace (or $POD_NAMESPACE) for its Secret")
		}
		if w.DNSNames == "" && w.IPSANs == "" {
			return fmt.Errorf("--webhook-cert-mode=self-signed needs --webhook-dns-names or --webhook-ip-sans")
		}
	default:
		return fmt.Errorf("--webhook-cert-mode must be self-signed or external, not %q", w.CertMode)
	}
	return nil
}

// SetupWebhooks registers the admission webhooks with mgr, whose cache
// must have the field indexes.
func SetupWebhooks(_ context.Context, mgr ctrl.Manager) error {
	if err := webhook.Setup(mgr, nil); err != nil {
		return fmt.Errorf("setting up webhooks: %w", err)
	}
	return nil
}

// setupWebhookCertificates, in self-signed mode, makes sure the serving
// certificate exists before the webhook server starts (the manager starts
// it before anything else), then keeps it renewed.
func setupWebhookCertificates(ctx context.Context, mgr ctrl.Manager, namespace string, w WebhookOptions) error {
	if w.CertMode != "self-signed" {
		return nil
	}
	// The cache has not started: the Secret is read and written directly.
	direct, err := client.New(mgr.GetConfig(), client.Options{Scheme: mgr.GetScheme()})
	if err != nil {
		return err
	}
	rot := &certs.Rotator{
		Client: direct, Namespace: namespace, SecretName: w.Secret, CASecretName: w.CASecret,
		DNSNames: cliflag.List(w.DNSNames), CertDir: w.CertDir,
		MutatingWebhooks: cliflag.List(w.Mutating), ValidatingWebhooks: cliflag.List(w.Validating),
	}
	if w.BridgeSecret != "" {
		rot.Leaves = []certs.Leaf{{SecretName: w.BridgeSecret, DNSNames: cliflag.List(w.BridgeDNSNames)}}
	}
	for _, s := range cliflag.List(w.IPSANs) {
		rot.IPs = append(rot.IPs, net.ParseIP(s))
	}
	if err := rot.Ensure(ctx); err != nil {
		return fmt.Errorf("preparing the webhook certificate: %w", err)
	}
	return mgr.Add(rot)
}
