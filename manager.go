package main

import (
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"net"
	"os"
	"path/filepath"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	ctrlwebhook "sigs.k8s.io/controller-runtime/pkg/webhook"

	trainyardv1alpha1 "github.com/trainyard-dev/trainyard/api/v1alpha1"
	"github.com/trainyard-dev/trainyard/bridge"
	"github.com/trainyard-dev/trainyard/controllers"
	"github.com/trainyard-dev/trainyard/internal/certs"
	"github.com/trainyard-dev/trainyard/internal/cliflag"
	"github.com/trainyard-dev/trainyard/internal/logging"
	"github.com/trainyard-dev/trainyard/internal/review"
	"github.com/trainyard-dev/trainyard/internal/version"
	"github.com/trainyard-dev/trainyard/notify"
	"github.com/trainyard-dev/trainyard/webhook"
)

// managerOptions are the manager's command-line flags.
type managerOptions struct {
	kubeconfig     string
	namespace      string
	metricsAddr    string
	metricsSecure  bool
	metricsCertDir string
	probeAddr      string
	pprofAddr      string
	leaderElection bool
	notifications  bool
	notifyAllowed  string
	qps            float64
	burst          int
	controllers    controllers.Options
	ordering       string
	webhook        webhookOptions
	// bridge is served in the manager's process unless
	// --bridge-bind-address=0 (the chart runs it as `trainyard bridge`).
	bridge bridge.Flags
	// bridgeOptions are bridge's, completed by validate.
	bridgeOptions bridge.Options
}

type webhookOptions struct {
	enabled           bool
	host              string
	port              int
	certDir           string
	certMode          string // self-signed or external
	secret, caSecret  string
	dnsNames, ipSANs  string
	mutating, validat string
	// bridgeSecret and bridgeDNSNames: a further certificate, signed by the
	// same CA, for the bridge's metrics endpoint (certs.Leaf).
	bridgeSecret, bridgeDNSNames string
}

func (o *managerOptions) bind(fs *flag.FlagSet) {
	fs.StringVar(&o.kubeconfig, "kubeconfig", "", "Path to a kubeconfig; defaults to $KUBECONFIG, then the in-cluster config.")
	fs.StringVar(&o.namespace, "namespace", os.Getenv("POD_NAMESPACE"),
		"The manager's own namespace: its leader-election Lease and webhook Secret live there (default $POD_NAMESPACE).")
	fs.StringVar(&o.metricsAddr, "metrics-bind-address", ":8443", "Address of the Prometheus metrics endpoint; \"0\" disables it.")
	fs.BoolVar(&o.metricsSecure, "metrics-secure", true, "Serve metrics over HTTPS, allowing only clients that RBAC lets get /metrics.")
	fs.StringVar(&o.metricsCertDir, "metrics-cert-dir", "",
		"Directory of the metrics endpoint's tls.crt and tls.key, reloaded when they change (the chart passes the webhook's, which also covers the metrics Service); empty: a self-signed certificate made at start, which no client can verify.")
	fs.StringVar(&o.probeAddr, "health-probe-bind-address", ":8081", "Address of the /healthz and /readyz endpoints.")
	fs.StringVar(&o.pprofAddr, "pprof-bind-address", "", "Address of Go's /debug/pprof endpoints (empty: off).")
	fs.BoolVar(&o.leaderElection, "leader-elect", false, "Elect a leader so that only one replica runs the controllers.")
	fs.BoolVar(&o.notifications, "notifications", true,
		"Send the NotificationRules' events to their NotificationTargets (on the leader only).")
	fs.StringVar(&o.notifyAllowed, "notification-allowed-cidrs", "",
		"Address ranges notifications may go to although refused by default (loopback, link-local, the cloud metadata addresses, unspecified, multicast), e.g. 127.0.0.0/8. Private ranges are always allowed.")
	fs.Float64Var(&o.qps, "kube-api-qps", 1000, "Client-side limit of requests per second to the Kubernetes API (-1: none); "+
		"sized for a 10,000-cluster fleet onboarding at once (two writes per new cluster); the API server's priority and fairness is the backstop.")
	fs.IntVar(&o.burst, "kube-api-burst", 2000, "Burst above --kube-api-qps.")
	fs.StringVar(&o.ordering, "default-ordering", string(trainyardv1alpha1.OrderingSemver),
		"Ordering of the ReleaseTrains the controller creates: Semver, or ReleaseTime as the Deis service did.")
	fs.DurationVar(&o.controllers.StaleThreshold, "stale-threshold", controllers.DefaultStaleThreshold,
		"A cluster that has not checked in for this long is Stale.")
	fs.IntVar(&o.controllers.TrainWorkers, "train-workers", 2, "Concurrent ReleaseTrain reconciles.")
	fs.IntVar(&o.controllers.ReportWorkers, "report-workers", 16, "Concurrent ClusterReport reconciles "+
		"(each waits on its status write: 4 kept up with one new cluster in two when 16 onboard at once).")

	o.bridge.Bind(fs, ":8080")

	w := &o.webhook
	fs.BoolVar(&w.enabled, "enable-webhook", true, "Serve the admission webhook.")
	fs.StringVar(&w.host, "webhook-host", "", "Address the webhook server listens on (empty: all).")
	fs.IntVar(&w.port, "webhook-port", 9443, "Port of the webhook server.")
	fs.StringVar(&w.certDir, "webhook-cert-dir", filepath.Join(os.TempDir(), "k8s-webhook-server", "serving-certs"),
		"Directory of the webhook's tls.crt and tls.key.")
	fs.StringVar(&w.certMode, "webhook-cert-mode", "self-signed",
		"self-signed: the manager keeps its own CA and certificate in --webhook-secret, renews them and injects the CA into the webhook configurations; "+
			"external: another party (cert-manager) provides the files in --webhook-cert-dir and the CA bundle.")
	fs.StringVar(&w.secret, "webhook-secret", "trainyard-webhook-tls", "Secret of the self-signed CA and certificate, in --namespace.")
	fs.StringVar(&w.caSecret, "webhook-ca-secret", "",
		"Secret, in --namespace, that the manager keeps holding only the CA bundle (ca.crt) of --webhook-secret, for clients that verify "+
			"the certificate (the chart's ServiceMonitor) without reading the private keys; empty: none.")
	fs.StringVar(&w.dnsNames, "webhook-dns-names", "", "Comma-separated DNS names of the webhook certificate (the webhook Service's names).")
	fs.StringVar(&w.ipSANs, "webhook-ip-sans", "", "Comma-separated IP addresses of the webhook certificate.")
	fs.StringVar(&w.bridgeSecret, "bridge-metrics-cert-secret", "",
		"Self-signed mode: a kubernetes.io/tls Secret, in --namespace, that the manager keeps holding a certificate for --bridge-metrics-dns-names "+
			"signed by the webhook's CA (and the CA bundle, never its key), which `trainyard bridge` serves its metrics with; empty: none.")
	fs.StringVar(&w.bridgeDNSNames, "bridge-metrics-dns-names", "", "Comma-separated DNS names of the --bridge-metrics-cert-secret certificate (the bridge's metrics Service).")
	fs.StringVar(&w.mutating, "mutating-webhook-configuration", "trainyard-mutating-webhook-configuration",
		"MutatingWebhookConfiguration that receives the CA bundle in self-signed mode (the manager's RBAC names it).")
	fs.StringVar(&w.validat, "validating-webhook-configuration", "trainyard-validating-webhook-configuration",
		"ValidatingWebhookConfiguration that receives the CA bundle in self-signed mode (the manager's RBAC names it).")
}

func (o *managerOptions) validate() error {
	switch ord := trainyardv1alpha1.Ordering(o.ordering); ord {
	case trainyardv1alpha1.OrderingSemver, trainyardv1alpha1.OrderingReleaseTime:
		o.controllers.DefaultOrdering = ord
	default:
		return fmt.Errorf("--default-ordering must be Semver or ReleaseTime, not %q", o.ordering)
	}
	if o.webhook.caSecret != "" && o.webhook.caSecret == o.webhook.secret {
		return fmt.Errorf("--webhook-ca-secret must name another Secret than --webhook-secret (%q), which holds the private keys", o.webhook.secret)
	}
	switch b := o.webhook.bridgeSecret; {
	case b != "" && (b == o.webhook.secret || b == o.webhook.caSecret):
		return fmt.Errorf("--bridge-metrics-cert-secret must name a Secret of its own, not %q", b)
	case b != "" && o.webhook.bridgeDNSNames == "":
		return fmt.Errorf("--bridge-metrics-cert-secret needs --bridge-metrics-dns-names")
	}
	if o.controllers.StaleThreshold <= 0 {
		return fmt.Errorf("--stale-threshold must be positive, not %s", o.controllers.StaleThreshold)
	}
	bo, err := o.bridge.Complete(o.namespace, o.controllers.StaleThreshold)
	if err != nil {
		return err
	}
	o.bridgeOptions = bo
	w := o.webhook
	if w.enabled {
		switch w.certMode {
		case "external":
		case "self-signed":
			if o.namespace == "" {
				return fmt.Errorf("--webhook-cert-mode=self-signed needs --namespace (or $POD_NAMESPACE) for its Secret")
			}
			if w.dnsNames == "" && w.ipSANs == "" {
				return fmt.Errorf("--webhook-cert-mode=self-signed needs --webhook-dns-names or --webhook-ip-sans")
			}
		default:
			return fmt.Errorf("--webhook-cert-mode must be self-signed or external, not %q", w.certMode)
		}
	}
	return nil
}

func newScheme() *runtime.Scheme {
	s := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(s))
	utilruntime.Must(trainyardv1alpha1.AddToScheme(s))
	return s
}

func runManager(args []string) error {
	fs := flag.NewFlagSet("trainyard", flag.ContinueOnError)
	var o managerOptions
	o.bind(fs)
	zapOpts := zap.Options{}
	zapOpts.BindFlags(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := o.validate(); err != nil {
		return err
	}
	logging.Setup(&zapOpts)
	log := ctrl.Log.WithName("setup")
	log.Info("trainyard", "version", version.Get().Version, "commit", version.Get().Commit)
	registerBuildInfo(ctrlmetrics.Registry, version.Get())

	cfg, err := restConfig(o.kubeconfig)
	if err != nil {
		return err
	}
	cfg.QPS, cfg.Burst = float32(o.qps), o.burst
	scheme := newScheme()
	metrics, err := metricsOptions(o)
	if err != nil {
		return err
	}
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                  scheme,
		Cache:                   controllers.CacheOptions(),
		Metrics:                 metrics,
		HealthProbeBindAddress:  o.probeAddr,
		PprofBindAddress:        o.pprofAddr,
		LeaderElection:          o.leaderElection,
		LeaderElectionID:        "trainyard-manager.trainyard.dev",
		LeaderElectionNamespace: o.namespace,
		// The controllers stop touching the API before a new leader starts.
		LeaderElectionReleaseOnCancel: true,
		WebhookServer: ctrlwebhook.NewServer(ctrlwebhook.Options{
			Host: o.webhook.host, Port: o.webhook.port, CertDir: o.webhook.certDir}),
	})
	if err != nil {
		return fmt.Errorf("creating manager: %w", err)
	}
	ctx := ctrl.SetupSignalHandler()
	if err := controllers.Setup(ctx, mgr, o.controllers); err != nil {
		return fmt.Errorf("setting up controllers: %w", err)
	}
	if o.notifications {
		dest, err := notify.ParseDestinations(cliflag.List(o.notifyAllowed))
		if err != nil {
			return err
		}
		if err := notify.Setup(mgr, notify.Options{Destinations: dest}); err != nil {
			return fmt.Errorf("setting up notifications: %w", err)
		}
	}
	if o.webhook.enabled {
		if err := setupWebhook(ctx, mgr, cfg, scheme, o); err != nil {
			return err
		}
		if err := mgr.AddReadyzCheck("webhook", mgr.GetWebhookServer().StartedChecker()); err != nil {
			return err
		}
	}
	if o.bridgeOptions.Addr != "0" {
		// The bridge in the manager's process: one binary for a small
		// install (the chart runs it apart, as `trainyard bridge`).
		if err := addBridge(ctx, mgr, o.bridgeOptions); err != nil {
			return err
		}
	}
	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		return err
	}
	if err := mgr.AddReadyzCheck("readyz", healthz.Ping); err != nil {
		return err
	}

	log.Info("starting manager")
	return mgr.Start(ctx)
}

// setupWebhook registers the webhooks and, in self-signed mode, makes sure
// the serving certificate exists before the webhook server starts (the
// manager starts it before anything else), then keeps it renewed.
func setupWebhook(ctx context.Context, mgr manager.Manager, cfg *rest.Config, scheme *runtime.Scheme, o managerOptions) error {
	if err := webhook.Setup(mgr, nil); err != nil {
		return fmt.Errorf("setting up webhooks: %w", err)
	}
	w := o.webhook
	if w.certMode != "self-signed" {
		return nil
	}
	direct, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return err
	}
	rot := &certs.Rotator{
		Client: direct, Namespace: o.namespace, SecretName: w.secret, CASecretName: w.caSecret,
		DNSNames: cliflag.List(w.dnsNames), CertDir: w.certDir,
		MutatingWebhooks: cliflag.List(w.mutating), ValidatingWebhooks: cliflag.List(w.validat),
	}
	if w.bridgeSecret != "" {
		rot.Leaves = []certs.Leaf{{SecretName: w.bridgeSecret, DNSNames: cliflag.List(w.bridgeDNSNames)}}
	}
	for _, s := range cliflag.List(w.ipSANs) {
		ip := net.ParseIP(s)
		if ip == nil {
			return fmt.Errorf("--webhook-ip-sans: %q is not an IP address", s)
		}
		rot.IPs = append(rot.IPs, ip)
	}
	if err := rot.Ensure(ctx); err != nil {
		return fmt.Errorf("preparing the webhook certificate: %w", err)
	}
	return mgr.Add(rot)
}

// restConfig is the API server's config: --kubeconfig, else $KUBECONFIG,
// else in-cluster.
func restConfig(kubeconfig string) (*rest.Config, error) {
	if kubeconfig != "" {
		// ctrl.GetConfig reads the --kubeconfig of the global flag set, which
		// these commands do not use; the variable says the same thing.
		if err := os.Setenv("KUBECONFIG", kubeconfig); err != nil {
			return nil, err
		}
	}
	cfg, err := ctrl.GetConfig()
	if err != nil {
		return nil, fmt.Errorf("loading kubeconfig: %w", err)
	}
	return cfg, nil
}

// metricsOptions serves metrics like kubebuilder's scaffold: HTTPS with
// authentication and authorization through the API server (TokenReview and
// SubjectAccessReview, internal/review), unless disabled.
func metricsOptions(o managerOptions) (metricsserver.Options, error) {
	m := metricsserver.Options{BindAddress: o.metricsAddr, SecureServing: o.metricsSecure}
	if o.metricsSecure {
		m.FilterProvider = review.MetricsFilter
		if o.metricsCertDir != "" {
			// tls.crt and tls.key, reloaded when they change; self-signed
			// until they exist (the bridge's arrive from the manager).
			fc, err := certs.NewFileCertificate(o.metricsCertDir)
			if err != nil {
				return m, fmt.Errorf("the metrics certificate: %w", err)
			}
			m.TLSOpts = append(m.TLSOpts, func(c *tls.Config) { c.GetCertificate = fc.GetCertificate })
		}
	}
	return m, nil
}

// registerBuildInfo exports trainyard_build_info, always 1, whose labels say
// which build runs (the convention of Prometheus' own *_build_info): a
// rollout shows on a dashboard as the label changing.
func registerBuildInfo(reg prometheus.Registerer, v version.Info) {
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "trainyard_build_info",
		Help:        "The running trainyard build: always 1, with its version, commit and Go version as labels.",
		ConstLabels: prometheus.Labels{"version": v.Version, "commit": v.Commit, "goversion": v.GoVersion},
	})
	g.Set(1)
	reg.MustRegister(g)
}
