package testenv

import (
	"context"
	"path/filepath"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	ctrlconfig "sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	ctrlwebhook "sigs.k8s.io/controller-runtime/pkg/webhook"
)

// WebhookOptions makes envtest install the generated webhook configurations
// (config/webhook) pointing at its local serving address.
func WebhookOptions() envtest.WebhookInstallOptions {
	return envtest.WebhookInstallOptions{
		Paths: []string{filepath.Join(RepoRoot(), "config", "webhook", "manifests.yaml")},
	}
}

// Manager says what a suite's manager runs. The parts come as setup
// functions (internal/manager's Setups, or a suite's own reconcilers), so
// this package depends on none of them, as Cluster API's envtest.Run
// takes its setup.
type Manager struct {
	Scheme *runtime.Scheme
	// Cache: the manager's cache options (internal/manager.CacheOptions).
	Cache cache.Options
	// Webhook: serve the admission webhook where these configurations
	// point (envtest's local serving address and certificate).
	Webhook *envtest.WebhookInstallOptions
	// Configure changes anything else of the manager's options (leader
	// election, for one).
	Configure func(*ctrl.Options)
	// Setups register the parts, in order.
	Setups []func(context.Context, ctrl.Manager) error
}

// StartManager builds the manager on cfg, runs its setups and starts it.
// stop cancels it and returns what Start returned. Metrics are off, and
// controller names may repeat (suites start several managers).
func StartManager(cfg *rest.Config, m Manager) (mgr ctrl.Manager, stop func() error, err error) {
	skip := true
	o := ctrl.Options{
		Scheme: m.Scheme, Cache: m.Cache,
		Metrics:    metricsserver.Options{BindAddress: "0"},
		Controller: ctrlconfig.Controller{SkipNameValidation: &skip},
	}
	if w := m.Webhook; w != nil {
		o.WebhookServer = ctrlwebhook.NewServer(ctrlwebhook.Options{
			Host: w.LocalServingHost, Port: w.LocalServingPort, CertDir: w.LocalServingCertDir})
	}
	if m.Configure != nil {
		m.Configure(&o)
	}
	mgr, err = ctrl.NewManager(cfg, o)
	if err != nil {
		return nil, nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	for _, setup := range m.Setups {
		if err := setup(ctx, mgr); err != nil {
			cancel()
			return nil, nil, err
		}
	}
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	return mgr, func() error { cancel(); return <-done }, nil
}
