package manager

import (
	"flag"
	"os"

	"github.com/trainyard-dev/trainyard/bridge"
	"github.com/trainyard-dev/trainyard/controllers"
	"github.com/trainyard-dev/trainyard/notify"
)

// Options are the manager's command-line flags. Each group binds its own
// flags next to the code it configures: the controllers', the
// notifications' and the bridge's in their packages, the webhook's in
// webhook.go; the process's own are here.
type Options struct {
	Process     ProcessOptions
	LeaderElect bool
	Controllers controllers.Options
	Notify      notify.Flags
	Webhook     WebhookOptions
	// Bridge is served in the manager's process unless
	// --bridge-bind-address=0 (the chart runs it as `trainyard bridge`).
	Bridge bridge.Flags
	// bridge is Bridge completed by Validate.
	bridge bridge.Options
}

// ProcessOptions are the flags of any trainyard process that talks to the
// API server: the manager's and `trainyard bridge`'s.
type ProcessOptions struct {
	Kubeconfig     string
	Namespace      string
	MetricsAddr    string
	MetricsSecure  bool
	MetricsCertDir string
	ProbeAddr      string
	PprofAddr      string
	QPS            float64
	Burst          int
}

// BindFlags binds the process's flags; metricsCertHelp says where the
// metrics certificate comes from in this process.
func (o *ProcessOptions) BindFlags(fs *flag.FlagSet, namespaceHelp, metricsCertHelp, qpsHelp string) {
	fs.StringVar(&o.Kubeconfig, "kubeconfig", "", "Path to a kubeconfig; defaults to $KUBECONFIG, then the in-cluster config.")
	fs.StringVar(&o.Namespace, "namespace", os.Getenv("POD_NAMESPACE"), namespaceHelp)
	fs.StringVar(&o.MetricsAddr, "metrics-bind-address", ":8443", "Address of the Prometheus metrics endpoint; \"0\" disables it.")
	fs.BoolVar(&o.MetricsSecure, "metrics-secure", true, "Serve metrics over HTTPS, allowing only clients that RBAC lets get /metrics.")
	fs.StringVar(&o.MetricsCertDir, "metrics-cert-dir", "", metricsCertHelp)
	fs.StringVar(&o.ProbeAddr, "health-probe-bind-address", ":8081", "Address of the /healthz and /readyz endpoints.")
	fs.StringVar(&o.PprofAddr, "pprof-bind-address", "", "Address of Go's /debug/pprof endpoints (empty: off).")
	fs.Float64Var(&o.QPS, "kube-api-qps", 1000, qpsHelp)
	fs.IntVar(&o.Burst, "kube-api-burst", 2000, "Burst above --kube-api-qps.")
}

// BindFlags binds every flag of the manager to o, with their defaults.
func (o *Options) BindFlags(fs *flag.FlagSet) {
	o.Process.BindFlags(fs,
		"The manager's own namespace: its leader-election Lease and webhook Secret live there (default $POD_NAMESPACE).",
		"Directory of the metrics endpoint's tls.crt and tls.key, reloaded when they change (the chart passes the webhook's, which also covers the metrics Service); empty: a self-signed certificate made at start, which no client can verify.",
		"Client-side limit of requests per second to the Kubernetes API (-1: none); "+
			"sized for a 10,000-cluster fleet onboarding at once (two writes per new cluster); the API server's priority and fairness is the backstop.")
	fs.BoolVar(&o.LeaderElect, "leader-elect", false, "Elect a leader so that only one replica runs the controllers.")
	o.Controllers.BindFlags(fs)
	o.Notify.BindFlags(fs)
	o.Bridge.Bind(fs, ":8080")
	o.Webhook.BindFlags(fs)
}

// Validate checks the flags together and completes the bridge's options.
func (o *Options) Validate() error {
	if err := o.Controllers.Validate(); err != nil {
		return err
	}
	bo, err := o.Bridge.Complete(o.Process.Namespace, o.Controllers.StaleThreshold)
	if err != nil {
		return err
	}
	o.bridge = bo
	if err := o.Webhook.Validate(o.Process.Namespace); err != nil {
		return err
	}
	if _, err := o.Notify.Options(); err != nil {
		return err
	}
	return nil
}
