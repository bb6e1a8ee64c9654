// Package cli is the agent's command line, `trainyard agent` and
// `trainyard-agent`: its flags, their checks, and the wiring of the agent
// to the workload cluster and the hub.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"
	"unicode"

	"github.com/go-logr/logr"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/trainyard-dev/trainyard/agent"
	"github.com/trainyard-dev/trainyard/internal/checkin"
	"github.com/trainyard-dev/trainyard/internal/logging"

	// Every discovery source, each registering itself.
	_ "github.com/trainyard-dev/trainyard/agent/source/all"
)

// config is what the flags say.
type config struct {
	agent.Options
	mode, kubeconfig, hubKubeconfig, hubNamespace string
	tokenFile, probeAddr                          string
	credentialSecret, credentialNamespace         string
	namespaces, sources                           []string
	defaultTrain                                  string
	zap                                           zap.Options
}

// Run runs the agent with args (without the program name or `agent`) until
// SIGTERM or SIGINT.
func Run(args []string) error {
	c, err := parse(args)
	if err != nil {
		return err
	}
	if err := c.check(); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return c.run(ctx, logging.Setup(&c.zap))
}

func parse(args []string) (*config, error) {
	fs := flag.NewFlagSet("trainyard agent", flag.ContinueOnError)
	c := &config{}
	var namespaces, sources string
	var helmReleases bool
	fs.StringVar(&c.kubeconfig, "kubeconfig", "", "Path to the workload cluster's kubeconfig (default $KUBECONFIG, then in-cluster).")
	fs.StringVar(&c.mode, "mode", "bridge", "bridge: check in at --hub-url; direct: write the ClusterReport into the hub's API through --hub-kubeconfig.")
	fs.StringVar(&c.hubKubeconfig, "hub-kubeconfig", "", "direct mode: kubeconfig of the hub (a mounted Secret).")
	fs.StringVar(&c.hubNamespace, "hub-namespace", "trainyard-system", "direct mode: the hub namespace of the ClusterReports.")
	fs.StringVar(&c.HubURL, "hub-url", "", "bridge mode: base URL of the hub's bridge, for example https://trainyard.example.com.")
	fs.StringVar(&c.tokenFile, "token-file", "", "File holding the registration token (a mounted Secret); $TRAINYARD_TOKEN otherwise.")
	fs.StringVar(&c.credentialSecret, "credential-secret", "trainyard-agent-credential",
		"bridge mode: Secret of the workload cluster that keeps the credential the hub issues this cluster when it registers (empty: memory only, lost at a restart).")
	fs.StringVar(&c.credentialNamespace, "credential-namespace", "", "Namespace of --credential-secret (default $POD_NAMESPACE, else the agent's ServiceAccount's, else default).")
	fs.StringVar(&c.ClusterID, "cluster-id", "", "Cluster ID to report (default: the ClusterProperty cluster.clusterset.k8s.io, else the kube-system namespace's UID).")
	fs.StringVar(&namespaces, "namespaces", "", "Comma-separated namespaces to look for components in (default all).")
	fs.StringVar(&sources, "sources", "workloads", "Comma-separated discovery sources, in order of precedence (a component name found by an earlier one wins): "+sourceList()+".")
	fs.StringVar(&c.defaultTrain, "default-train", "stable", "Train of components without a trainyard.dev/train label.")
	fs.DurationVar(&c.Interval, "interval", 15*time.Minute, "Time between check-ins (moved by ±25% jitter).")
	fs.DurationVar(&c.Debounce, "debounce", 10*time.Second, "How long a change of the workloads waits for more before it triggers a check-in.")
	fs.BoolVar(&helmReleases, "helm-releases", false, "Also report deployed Helm releases (the helm source, after the others in --sources); needs list and watch on Secrets.")
	fs.StringVar(&c.probeAddr, "health-probe-bind-address", ":8081", "Address of /healthz and /readyz (0: none).")
	c.zap.BindFlags(fs)
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	c.namespaces, c.sources = list(namespaces), list(sources)
	if helmReleases && !slices.Contains(c.sources, "helm") {
		c.sources = append(c.sources, "helm")
	}
	return c, nil
}

// check refuses flags that cannot work, before anything starts.
func (c *config) check() error {
	switch {
	case c.mode == "bridge" && c.HubURL == "":
		return errors.New("--hub-url is required in bridge mode")
	case c.mode == "direct" && c.hubKubeconfig == "":
		return errors.New("--hub-kubeconfig is required in direct mode")
	case c.mode != "bridge" && c.mode != "direct":
		return fmt.Errorf("--mode must be bridge or direct, not %q", c.mode)
	case len(c.sources) == 0:
		return errors.New("--sources names no discovery source")
	}
	for _, s := range c.sources {
		if !known(s) {
			return fmt.Errorf("--sources: no discovery source %q (known: %s)", s, sourceList())
		}
	}
	c.Token = os.Getenv("TRAINYARD_TOKEN")
	if c.tokenFile != "" {
		// Read now, to fail at start on a wrong path, and again before every
		// check-in (a rotated Secret).
		if _, err := os.ReadFile(c.tokenFile); err != nil {
			return fmt.Errorf("reading --token-file: %w", err)
		}
		c.TokenFile = c.tokenFile
	}
	return nil
}

// run wires the agent to the workload cluster and the hub, and runs it.
func (c *config) run(ctx context.Context, log logr.Logger) error {
	if os.Getenv("GOMEMLIMIT") == "" {
		// A small soft memory limit that follows a large heap up; see
		// agent.DefaultMemoryFloor. GOMEMLIMIT overrides it.
		go agent.TuneMemoryLimit(ctx, agent.DefaultMemoryFloor, 30*time.Second)
	}
	cfg, err := loadConfig(c.kubeconfig)
	if err != nil {
		return fmt.Errorf("loading kubeconfig: %w", err)
	}
	kube, err := agent.NewKube(cfg, c.namespaces)
	if err != nil {
		return err
	}
	// Fail at start, with the address, when the API server cannot be
	// reached: the kubelet restarts the pod with a backoff.
	if _, err := kube.ServerVersion(ctx); err != nil {
		return fmt.Errorf("reaching the workload cluster's API server at %s: %w", cfg.Host, err)
	}
	c.ServerVersion = func() (string, error) { return kube.ServerVersion(ctx) }
	if c.Sources, err = agent.NewSources(c.sources, agent.Config{Kube: kube, DefaultTrain: c.defaultTrain}); err != nil {
		return err
	}
	done := make(chan struct{})
	if c.mode == "direct" {
		hubCfg, err := clientcmd.BuildConfigFromFlags("", c.hubKubeconfig)
		if err != nil {
			return fmt.Errorf("loading --hub-kubeconfig: %w", err)
		}
		// The bridge's own check-in logic (internal/checkin), writing into
		// the hub's API: the same validation and heartbeat write budget.
		hub, err := agent.NewDirectHub(hubCfg, c.hubNamespace, checkin.Options{Log: log.WithName("heartbeats")})
		if err != nil {
			return err
		}
		c.Hub = hub
		go func() { _ = hub.Start(ctx); close(done) }()
	} else {
		close(done)
	}
	if c.mode == "bridge" && c.credentialSecret != "" {
		ns := c.credentialNamespace
		if ns == "" {
			ns = agent.PodNamespace()
		}
		c.Credentials = agent.SecretCredentials{Kube: kube, Namespace: ns, Name: c.credentialSecret}
	}
	a := agent.New(kube, log.WithName("agent"), c.Options)
	if c.probeAddr != "" && c.probeAddr != "0" {
		if err := serveProbes(ctx, c.probeAddr, a.Ready, log); err != nil {
			return err
		}
	}
	err = a.Start(ctx)
	<-done // the last heartbeats are written
	return err
}

// loadConfig is the workload cluster's config: the explicit kubeconfig,
// else $KUBECONFIG or ~/.kube/config, else in-cluster, with
// controller-runtime's client rate limits.
func loadConfig(path string) (*rest.Config, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = path
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{}).ClientConfig()
	if err != nil {
		return nil, err
	}
	if cfg.QPS == 0 {
		cfg.QPS, cfg.Burst = 20, 30
	}
	return cfg, nil
}

// serveProbes serves /healthz (the process answers) and /readyz (the caches
// have synced) until ctx ends.
func serveProbes(ctx context.Context, addr string, ready func() bool, log logr.Logger) error {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("health probes: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !ready() {
			http.Error(w, "the caches have not synced", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok"))
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error(err, "health probes stopped")
		}
	}()
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	return nil
}

// list splits a comma-separated flag value; spaces around items go.
func list(s string) []string {
	return strings.FieldsFunc(s, func(r rune) bool { return r == ',' || unicode.IsSpace(r) })
}

func known(name string) bool {
	for _, r := range agent.Sources() {
		if r.Name == name {
			return true
		}
	}
	return false
}

func sourceList() string {
	var names []string
	for _, r := range agent.Sources() {
		names = append(names, r.Name+" ("+r.Usage+")")
	}
	return strings.Join(names, ", ")
}
