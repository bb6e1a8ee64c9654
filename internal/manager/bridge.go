package manager

import (
	"flag"
	"fmt"
	"time"

	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/trainyard-dev/trainyard/bridge"
	"github.com/trainyard-dev/trainyard/controllers"
	"github.com/trainyard-dev/trainyard/internal/index"
	"github.com/trainyard-dev/trainyard/internal/logging"
	"github.com/trainyard-dev/trainyard/internal/version"
)

// BridgeOptions are `trainyard bridge`'s flags: the bridge's own, and
// those of the process around it.
type BridgeOptions struct {
	Process        ProcessOptions
	StaleThreshold time.Duration
	Bridge         bridge.Flags
}

// BindFlags binds `trainyard bridge`'s flags to o, with their defaults.
func (o *BridgeOptions) BindFlags(fs *flag.FlagSet) {
	o.Process.BindFlags(fs,
		"The bridge's own namespace (default $POD_NAMESPACE): the default for --bridge-namespace.",
		"Directory of the metrics endpoint's tls.crt and tls.key; empty: a self-signed certificate.",
		"Client-side limit of requests per second to the Kubernetes API (-1: none).")
	fs.DurationVar(&o.StaleThreshold, "stale-threshold", controllers.DefaultStaleThreshold,
		"The fleet's stale threshold (the manager's): the bridge persists unchanged check-ins often enough for it.")
	o.Bridge.Bind(fs, ":8080")
}

// RunBridge is `trainyard bridge`: the check-in bridge alone. It runs no
// controller and no webhook, needs no leader (every replica serves), and
// reads and writes only what the bridge touches, in the bridge's and the
// tenants' namespaces: a flood of its clients cannot take memory from the
// admission webhook that every kubectl write depends on.
func RunBridge(args []string) error {
	fs := flag.NewFlagSet("trainyard bridge", flag.ContinueOnError)
	var o BridgeOptions
	o.BindFlags(fs)
	zapOpts := zap.Options{}
	zapOpts.BindFlags(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if o.StaleThreshold <= 0 {
		return fmt.Errorf("--stale-threshold must be positive, not %s", o.StaleThreshold)
	}
	bo, err := o.Bridge.Complete(o.Process.Namespace, o.StaleThreshold)
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

	cfg, err := restConfig(o.Process)
	if err != nil {
		return err
	}
	// The cache holds only the served namespaces' objects: the bridge's
	// RBAC is namespaced (a Role per namespace), and its memory is its
	// tenants', not the cluster's.
	co := BridgeCacheOptions()
	co.DefaultNamespaces = map[string]cache.Config{bo.Namespace: {}}
	for _, t := range bo.Tenants {
		co.DefaultNamespaces[t] = cache.Config{}
	}
	metrics, err := metricsOptions(o.Process)
	if err != nil {
		return err
	}
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                 Scheme(),
		Cache:                  co,
		Metrics:                metrics,
		HealthProbeBindAddress: o.Process.ProbeAddr,
		PprofBindAddress:       o.Process.PprofAddr,
	})
	if err != nil {
		return fmt.Errorf("creating the bridge's manager: %w", err)
	}
	ctx := ctrl.SetupSignalHandler()
	if err := run(ctx, mgr, SetupIndexes(index.Bridge...), SetupBridge(bo), SetupProbes(false)); err != nil {
		return err
	}
	log.Info("starting the bridge")
	return mgr.Start(ctx)
}
