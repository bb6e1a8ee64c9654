package manager

import (
	"crypto/tls"
	"fmt"
	"os"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/trainyard-dev/trainyard/internal/certs"
	"github.com/trainyard-dev/trainyard/internal/review"
	"github.com/trainyard-dev/trainyard/internal/version"
)

// restConfig is the API server's config: --kubeconfig, else $KUBECONFIG,
// else in-cluster; with the client-side rate limits of the flags.
func restConfig(o ProcessOptions) (*rest.Config, error) {
	if o.Kubeconfig != "" {
		// ctrl.GetConfig reads the --kubeconfig of the global flag set, which
		// these commands do not use; the variable says the same thing.
		if err := os.Setenv("KUBECONFIG", o.Kubeconfig); err != nil {
			return nil, err
		}
	}
	cfg, err := ctrl.GetConfig()
	if err != nil {
		return nil, fmt.Errorf("loading kubeconfig: %w", err)
	}
	cfg.QPS, cfg.Burst = float32(o.QPS), o.Burst
	return cfg, nil
}

// metricsOptions serves metrics like kubebuilder's scaffold: HTTPS with
// authentication and authorization through the API server (TokenReview and
// SubjectAccessReview, internal/review), unless disabled.
func metricsOptions(o ProcessOptions) (metricsserver.Options, error) {
	m := metricsserver.Options{BindAddress: o.MetricsAddr, SecureServing: o.MetricsSecure}
	if o.MetricsSecure {
		m.FilterProvider = review.MetricsFilter
		if o.MetricsCertDir != "" {
			// tls.crt and tls.key, reloaded when they change; self-signed
			// until they exist (the bridge's arrive from the manager).
			fc, err := certs.NewFileCertificate(o.MetricsCertDir)
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
