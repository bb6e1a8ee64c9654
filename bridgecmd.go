package main

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	"os"
	"time"

	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/trainyard-dev/trainyard/bridge"
	"github.com/trainyard-dev/trainyard/controllers"
	"github.com/trainyard-dev/trainyard/internal/index"
	"github.com/trainyard-dev/trainyard/internal/logging"
	"github.com/trainyard-dev/trainyard/internal/version"
)

// bridgeCommandOptions are `trainyard bridge`'s flags: the bridge's own,
// and those of the process around it. It runs no controller and no
// webhook, needs no leader (every replica serves), and reads and writes
// only what the bridge touches, in the bridge's and the tenants'
// namespaces: a flood of its clients cannot take memory from the
// admission webhook that every kubectl write depends on.
type bridgeCommandOptions struct {
	kubeconfig, namespace       string
	metricsAddr, metricsCertDir string
	metricsSecure               bool
	probeAddr, pprofAddr        string
	qps                         float64
	burst                       int
	staleThreshold              time.Duration
	bridge                      bridge.Flags
}

func runBridge(args []string) error {
	fs := flag.NewFlagSet("trainyard bridge", flag.ContinueOnError)
	var o bridgeCommandOptions
	fs.StringVar(&o.kubeconfig, "kubeconfig", "", "Path to a kubeconfig; defaults to $KUBECONFIG, then the in-cluster config.")
	fs.StringVar(&o.namespace, "namespace", os.Getenv("POD_NAMESPACE"), "The bridge's own namespace (default $POD_NAMESPACE): the default for --bridge-namespace.")
	fs.StringVar(&o.metricsAddr, "metrics-bind-address", ":8443", "Address of the Prometheus metrics endpoint; \"0\" disables it.")
	fs.BoolVar(&o.metricsSecure, "metrics-secure", true, "Serve metrics over HTTPS, allowing only clients that RBAC lets get /metrics.")
	fs.StringVar(&o.metricsCertDir, "metrics-cert-dir", "", "Directory of the metrics endpoint's tls.crt and tls.key; empty: a self-signed certificate.")
	fs.StringVar(&o.probeAddr, "health-probe-bind-address", ":8081", "Address of the /healthz and /readyz endpoints.")
	fs.StringVar(&o.pprofAddr, "pprof-bind-address", "", "Address of Go's /debug/pprof endpoints (empty: off).")
	fs.Float64Var(&o.qps, "kube-api-qps", 1000, "Client-side limit of requests per second to the Kubernetes API (-1: none).")
	fs.IntVar(&o.burst, "kube-api-burst", 2000, "Burst above --kube-api-qps.")
	fs.DurationVar(&o.staleThreshold, "stale-threshold", controllers.DefaultStaleThreshold, "The fleet's stale threshold (the manager's): the bridge persists unchanged check-ins often enough for it.")
	o.bridge.Bind(fs, ":8080")
	zapOpts := zap.Options{}
	zapOpts.BindFlags(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if o.staleThreshold <= 0 {
		return fmt.Errorf("--stale-threshold must be positive, not %s", o.staleThreshold)
	}
	bo, err := o.bridge.Complete(o.namespace, o.staleThreshold)
	if err != nil {
		return err
	}
	if bo.Addr == "0" {
		return fmt.Errorf("--bridge-bind-address=0: `trainyard bridge` has nothing else to serve")
	}
	logging.Setup(&zapOpts)
	log := ctrl.Log.WithName("setup")
	log.Info("trainyard bridge", "version", version.Get().Version, "commit", version.Get().Commit)
	registerBuildInfo(ctrlmetrics.Registry, version.Get())

	cfg, err := restConfig(o.kubeconfig)
	if err != nil {
		return err
	}
	cfg.QPS, cfg.Burst = float32(o.qps), o.burst
	// The cache holds only the served namespaces' objects: the bridge's
	// RBAC is namespaced (a Role per namespace), and its memory is its
	// tenants', not the cluster's.
	co := controllers.CacheOptions()
	co.DefaultNamespaces = map[string]cache.Config{bo.Namespace: {}}
	for _, t := range bo.Tenants {
		co.DefaultNamespaces[t] = cache.Config{}
	}
	metrics, err := metricsOptions(managerOptions{metricsAddr: o.metricsAddr, metricsSecure: o.metricsSecure, metricsCertDir: o.metricsCertDir})
	if err != nil {
		return err
	}
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                 newScheme(),
		Cache:                  co,
		Metrics:                metrics,
		HealthProbeBindAddress: o.probeAddr,
		PprofBindAddress:       o.pprofAddr,
	})
	if err != nil {
		return fmt.Errorf("creating the bridge's manager: %w", err)
	}
	ctx := ctrl.SetupSignalHandler()
	if err := index.Setup(ctx, mgr.GetFieldIndexer(), index.Bridge...); err != nil {
		return fmt.Errorf("the bridge's field indexes: %w", err)
	}
	if err := addBridge(ctx, mgr, bo); err != nil {
		return err
	}
	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		return err
	}
	// Ready once the cache has synced: a replica that answers from an
	// empty cache would say "no such cluster" to a registered one.
	if err := mgr.AddReadyzCheck("cache", func(req *http.Request) error {
		if !mgr.GetCache().WaitForCacheSync(req.Context()) {
			return fmt.Errorf("the cache has not synced")
		}
		return nil
	}); err != nil {
		return err
	}
	log.Info("starting the bridge")
	return mgr.Start(ctx)
}

// addBridge registers the bridge and its watches with mgr, whose cache
// has the bridge's field indexes (index.Bridge): the manager's process
// (single-binary installs) or the bridge's own.
func addBridge(ctx context.Context, mgr manager.Manager, o bridge.Options) error {
	b := bridge.New(mgr.GetClient(), mgr.GetClient(), mgr.GetAPIReader(), o)
	if err := b.Watch(ctx, mgr.GetCache()); err != nil {
		return err
	}
	return mgr.Add(b)
}
