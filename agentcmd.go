package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"time"

	"k8s.io/client-go/discovery"
	"k8s.io/client-go/tools/clientcmd"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/trainyard-dev/trainyard/agent"
	"github.com/trainyard-dev/trainyard/bridge"
)

// runAgent is `trainyard agent`: it runs in a workload cluster and reports
// its components to the hub's bridge.
func runAgent(args []string) error {
	fs := flag.NewFlagSet("trainyard agent", flag.ContinueOnError)
	var o agent.Options
	var kubeconfig, tokenFile, namespaces, probeAddr string
	fs.StringVar(&kubeconfig, "kubeconfig", "", "Path to the workload cluster's kubeconfig (default $KUBECONFIG, then in-cluster).")
	var mode, hubKubeconfig, hubNamespace string
	fs.StringVar(&mode, "mode", "bridge", "bridge: check in at --hub-url; direct: write the ClusterReport into the hub's API through --hub-kubeconfig.")
	fs.StringVar(&hubKubeconfig, "hub-kubeconfig", "", "direct mode: kubeconfig of the hub (a mounted Secret).")
	fs.StringVar(&hubNamespace, "hub-namespace", "trainyard-system", "direct mode: the hub namespace of the ClusterReports.")
	fs.StringVar(&o.HubURL, "hub-url", "", "bridge mode: base URL of the hub's bridge, for example https://trainyard.example.com.")
	fs.StringVar(&tokenFile, "token-file", "", "File holding the registration token (a mounted Secret); $TRAINYARD_TOKEN otherwise.")
	fs.StringVar(&o.ClusterID, "cluster-id", "", "Cluster ID to report (default: the ClusterProperty cluster.clusterset.k8s.io, else the kube-system namespace's UID).")
	fs.StringVar(&namespaces, "namespaces", "", "Comma-separated namespaces to look for workloads in (default all).")
	fs.StringVar(&o.DefaultTrain, "default-train", "stable", "Train of workloads without a trainyard.dev/train label.")
	fs.DurationVar(&o.Interval, "interval", 15*time.Minute, "Time between check-ins (moved by ±25% jitter).")
	fs.DurationVar(&o.Debounce, "debounce", 10*time.Second, "How long a change of the workloads waits for more before it triggers a check-in.")
	fs.BoolVar(&o.HelmReleases, "helm-releases", false, "Also report deployed Helm releases (chart name and version) as components; needs list and watch on Secrets.")
	fs.StringVar(&probeAddr, "health-probe-bind-address", ":8081", "Address of /healthz and /readyz.")
	zapOpts := zap.Options{}
	zapOpts.BindFlags(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	switch {
	case mode == "bridge" && o.HubURL == "":
		return fmt.Errorf("--hub-url is required in bridge mode")
	case mode == "direct" && hubKubeconfig == "":
		return fmt.Errorf("--hub-kubeconfig is required in direct mode")
	case mode != "bridge" && mode != "direct":
		return fmt.Errorf("--mode must be bridge or direct, not %q", mode)
	}
	o.Token = os.Getenv("TRAINYARD_TOKEN")
	if tokenFile != "" {
		// Read now, to fail at start on a wrong path, and again before every
		// check-in (a rotated Secret).
		if _, err := os.ReadFile(tokenFile); err != nil {
			return fmt.Errorf("reading --token-file: %w", err)
		}
		o.TokenFile = tokenFile
	}
	o.Namespaces = splitList(namespaces)
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&zapOpts)))
	if kubeconfig != "" {
		if err := os.Setenv("KUBECONFIG", kubeconfig); err != nil {
			return err
		}
	}
	cfg, err := ctrl.GetConfig()
	if err != nil {
		return fmt.Errorf("loading kubeconfig: %w", err)
	}
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme: agent.Scheme(), Cache: agent.CacheOptions(o.Namespaces, o.HelmReleases),
		Metrics: metricsserver.Options{BindAddress: "0"}, HealthProbeBindAddress: probeAddr,
	})
	if err != nil {
		return err
	}
	ctx := ctrl.SetupSignalHandler()
	if os.Getenv("GOMEMLIMIT") == "" {
		// A small soft memory limit that follows a large heap up; see
		// agent.DefaultMemoryFloor. GOMEMLIMIT overrides it.
		go agent.TuneMemoryLimit(ctx, agent.DefaultMemoryFloor, 30*time.Second)
	}
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return err
	}
	o.ServerVersion = func() (string, error) {
		v, err := dc.ServerVersion()
		if err != nil {
			return "", err
		}
		return v.GitVersion, nil
	}
	if mode == "direct" {
		hubCfg, err := clientcmd.BuildConfigFromFlags("", hubKubeconfig)
		if err != nil {
			return fmt.Errorf("loading --hub-kubeconfig: %w", err)
		}
		hub, err := client.New(hubCfg, client.Options{Scheme: newScheme()})
		if err != nil {
			return err
		}
		// The bridge's own check-in logic, writing into the hub's API: the
		// same validation, ID binding rules and heartbeat write budget.
		b := bridge.New(hub, hub, hub, bridge.Options{Namespace: hubNamespace, CheckInAuth: bridge.CheckInOpen})
		o.Direct = b.Handler()
		if err := mgr.Add(manager.RunnableFunc(func(ctx context.Context) error {
			<-ctx.Done()
			flush, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			b.FlushHeartbeats(flush)
			return nil
		})); err != nil {
			return err
		}
	}
	o.APIReader = mgr.GetAPIReader()
	a := agent.New(mgr.GetClient(), ctrl.Log.WithName("agent"), o)
	if err := a.Watch(ctx, mgr.GetCache()); err != nil {
		return err
	}
	if err := mgr.Add(a); err != nil {
		return err
	}
	return mgr.Start(ctx)
}
