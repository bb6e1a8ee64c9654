package testenv

import (
	"context"
	"path/filepath"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	ctrlconfig "sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	ctrlwebhook "sigs.k8s.io/controller-runtime/pkg/webhook"

	"github.com/trainyard-dev/trainyard/controllers"
	"github.com/trainyard-dev/trainyard/webhook"
)

// WebhookOptions makes envtest install the generated webhook configurations
// (config/webhook) pointing at its local serving address.
func WebhookOptions() envtest.WebhookInstallOptions {
	return envtest.WebhookInstallOptions{
		Paths: []string{filepath.Join(RepoRoot(), "config", "webhook", "manifests.yaml")},
	}
}

// ServeWebhook runs a manager that serves only the admission webhook (with
// the controllers' indexes its checks read) where w's configurations point,
// as one replica of the manager does for every other. It returns once the
// manager has started; stop stops it and waits.
func ServeWebhook(cfg *rest.Config, scheme *runtime.Scheme, w envtest.WebhookInstallOptions) (stop func() error, err error) {
	skip := true
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme: scheme, Cache: controllers.CacheOptions(),
		Metrics: metricsserver.Options{BindAddress: "0"},
		WebhookServer: ctrlwebhook.NewServer(ctrlwebhook.Options{
			Host: w.LocalServingHost, Port: w.LocalServingPort, CertDir: w.LocalServingCertDir}),
		// Suites start several managers with the same controller names.
		Controller: ctrlconfig.Controller{SkipNameValidation: &skip},
	})
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := controllers.SetupIndexes(ctx, mgr.GetFieldIndexer()); err != nil {
		cancel()
		return nil, err
	}
	if err := webhook.Setup(mgr, nil); err != nil {
		cancel()
		return nil, err
	}
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	return func() error { cancel(); return <-done }, nil
}
