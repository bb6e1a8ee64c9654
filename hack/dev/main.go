// Command dev runs the whole trainyard system on one machine for `make dev`:
// etcd and kube-apiserver on loopback (the binaries in KUBEBUILDER_ASSETS,
// built by hack/controlplane), the CRDs and webhook configurations, the
// manager (or -replicas of it) in the foreground, and an agent that reports
// this control plane to it. SIGINT or SIGTERM stops the agent and the
// manager, then the control plane, and leaves no process behind.
package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/trainyard-dev/trainyard/internal/testenv"
)

type options struct {
	dir          string // state: kubeconfig, etcd data, certificates
	manager      string // the trainyard binary
	agentBinary  string // the agent's binary ("": the manager's, `trainyard agent`)
	crds         string // CRD directory
	samples      string // directory of sample objects to apply, "" for none
	webhooks     string // the generated webhook configurations
	workloads    string // workloads for the dev agent to find, "" for none
	agent        bool
	replicas     int // manager processes, with leader election when > 1
	webhookPort  int
	bridgePort   int
	managerArgs  []string // extra manager flags (after --)
	stopTimeout  time.Duration
	startTimeout time.Duration
}

func main() {
	var o options
	flag.StringVar(&o.dir, "dir", ".dev", "Directory for the kubeconfig, etcd data and certificates.")
	flag.StringVar(&o.manager, "manager", "bin/trainyard", "The trainyard binary to run as the manager.")
	flag.StringVar(&o.agentBinary, "agent-binary", "", "The binary to run as the agent, as `<binary> agent` (default: -manager's; make dev: bin/trainyard-agent, as the chart runs it).")
	flag.StringVar(&o.crds, "crds", "config/crd/bases", "Directory of CRD manifests to install.")
	flag.StringVar(&o.samples, "samples", "", "Directory of sample objects to create before the manager starts (empty: none; the quickstart has the user apply config/samples).")
	flag.StringVar(&o.webhooks, "webhooks", "config/webhook/manifests.yaml", "The webhook configurations to install, pointed at the manager on loopback.")
	flag.IntVar(&o.webhookPort, "webhook-port", 9443, "Port of the manager's webhook server on 127.0.0.1 (0: any free port).")
	flag.IntVar(&o.bridgePort, "bridge-port", 8080, "Port of the check-in bridge on 127.0.0.1 (0: any free port).")
	flag.StringVar(&o.workloads, "workloads", "hack/dev/workloads.yaml", "Workloads for the dev agent to report (empty: none).")
	flag.IntVar(&o.replicas, "replicas", 1, "Manager processes, and as many bridge processes (`trainyard bridge`). With 2 or more the managers elect a leader, and the webhook and bridge ports reach whichever replicas are up, as a Service would.")
	flag.BoolVar(&o.agent, "agent", true, "Also run `trainyard agent` against the local control plane, so it reports itself.")
	flag.DurationVar(&o.stopTimeout, "stop-timeout", 20*time.Second, "How long each process may take to stop.")
	flag.DurationVar(&o.startTimeout, "start-timeout", 60*time.Second, "How long the control plane may take to start.")
	flag.Parse()
	o.managerArgs = flag.Args()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o); err != nil {
		fmt.Fprintln(os.Stderr, "dev:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, o options) error {
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		return errors.New("KUBEBUILDER_ASSETS is not set; run `make dev`")
	}
	dir, err := filepath.Abs(o.dir)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	// A previous run that was killed with SIGKILL could not stop its
	// children; they are found by the state directory in their arguments.
	killLeftovers(dir)

	etcdDir := filepath.Join(dir, "etcd")
	certDir := filepath.Join(dir, "apiserver")
	// The API server's certificates are made anew each run: envtest only
	// learns its CA when it makes them, and fails on a directory that
	// already has them. The objects live in etcd's directory, which stays.
	if err := os.RemoveAll(certDir); err != nil {
		return err
	}
	for _, d := range []string{etcdDir, certDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return err
		}
	}
	env := &envtest.Environment{
		CRDDirectoryPaths:        []string{o.crds},
		ErrorIfCRDPathMissing:    true,
		ControlPlaneStartTimeout: o.startTimeout,
		ControlPlaneStopTimeout:  o.stopTimeout,
	}
	// Persistent etcd data: objects survive a restart of `make dev`
	// (`make dev-clean` wipes them).
	env.ControlPlane.Etcd = &envtest.Etcd{DataDir: etcdDir}
	env.ControlPlane.APIServer = &envtest.APIServer{CertDir: certDir}

	fmt.Fprintln(os.Stderr, "dev: starting etcd and kube-apiserver ...")
	cfg, err := env.Start()
	if err != nil {
		return fmt.Errorf("starting the control plane: %w", err)
	}
	defer func() {
		fmt.Fprintln(os.Stderr, "dev: stopping kube-apiserver and etcd ...")
		if err := env.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "dev: stopping the control plane:", err)
		}
	}()

	kubeconfig := filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(kubeconfig, env.KubeConfig, 0o600); err != nil {
		return err
	}
	c, err := client.New(cfg, client.Options{})
	if err != nil {
		return err
	}
	// Webhook configurations left by an earlier run would send the samples
	// to a manager that is not running yet: remove them first.
	if err := testenv.RemoveWebhooks(ctx, c); err != nil {
		return err
	}
	if o.samples != "" {
		n, err := applyDir(ctx, c, o.samples)
		if err != nil {
			return fmt.Errorf("applying samples: %w", err)
		}
		fmt.Fprintf(os.Stderr, "dev: applied %d sample objects from %s\n", n, o.samples)
	}
	if o.workloads != "" {
		objs, err := testenv.ReadObjects(o.workloads)
		if err != nil {
			return err
		}
		for _, u := range objs {
			if err := c.Create(ctx, u); err != nil && !apierrors.IsAlreadyExists(err) {
				return fmt.Errorf("%s: %w", o.workloads, err)
			}
		}
	}
	port := o.webhookPort
	if port == 0 {
		if port, err = freePort(); err != nil {
			return err
		}
	}
	if err := testenv.InstallWebhooks(ctx, c, o.webhooks, port); err != nil {
		return fmt.Errorf("installing the webhook configurations: %w", err)
	}
	bridgePort := o.bridgePort
	if bridgePort == 0 {
		if bridgePort, err = freePort(); err != nil {
			return err
		}
	}
	bridgeURL := fmt.Sprintf("http://127.0.0.1:%d", bridgePort)
	token, err := registrationToken(ctx, c)
	if err != nil {
		return fmt.Errorf("preparing the registration token: %w", err)
	}
	// The manager serves the webhook on loopback with its built-in CA, which
	// it injects into the configurations just installed.
	common := []string{"--namespace=default",
		"--webhook-host=127.0.0.1", "--webhook-cert-dir=" + filepath.Join(dir, "webhook-certs"),
		"--webhook-ip-sans=127.0.0.1", "--webhook-dns-names=localhost"}
	var procs []process
	// Addresses that must accept connections before the system is ready:
	// one of each group.
	var listening [][]string
	// The bridge runs as the chart runs it: `trainyard bridge`, a process
	// of its own beside each manager (which serves no bridge), with the
	// bridge's share of the flags given after --.
	bridgeProc := func(name, addr string, group string) process {
		args := append([]string{"bridge", "--namespace=default", "--kubeconfig=" + kubeconfig,
			"--bridge-bind-address=" + addr, "--health-probe-bind-address=127.0.0.1:0", "--metrics-bind-address=0"},
			bridgeArgs(o.managerArgs)...)
		return process{name: name, args: args, group: group}
	}
	if o.replicas <= 1 {
		listening = [][]string{{fmt.Sprintf("127.0.0.1:%d", port)}, {fmt.Sprintf("127.0.0.1:%d", bridgePort)}}
		procs = append(procs, process{name: "manager", args: append(append(common,
			"--bridge-bind-address=0", fmt.Sprintf("--webhook-port=%d", port)), o.managerArgs...)},
			bridgeProc("bridge", fmt.Sprintf("127.0.0.1:%d", bridgePort), ""))
	} else {
		// Each replica listens on ports of its own; the webhook and bridge
		// ports forward to whichever replica answers, like a Service.
		var webhooks, bridges []string
		for i := 1; i <= o.replicas; i++ {
			wp, err := freePort()
			if err != nil {
				return err
			}
			bp, err := freePort()
			if err != nil {
				return err
			}
			webhooks = append(webhooks, fmt.Sprintf("127.0.0.1:%d", wp))
			bridges = append(bridges, fmt.Sprintf("127.0.0.1:%d", bp))
			args := append(append([]string{}, common...), "--leader-elect", "--webhook-cert-dir="+filepath.Join(dir, fmt.Sprintf("webhook-certs-%d", i)),
				"--bridge-bind-address=0", fmt.Sprintf("--webhook-port=%d", wp))
			args = append(args, o.managerArgs...)
			if i > 1 {
				// The user's fixed probe and metrics ports belong to the first.
				args = append(args, "--health-probe-bind-address=127.0.0.1:0", "--metrics-bind-address=0")
			}
			procs = append(procs, process{name: fmt.Sprintf("manager-%d", i), args: args, group: "manager"},
				bridgeProc(fmt.Sprintf("bridge-%d", i), bridges[i-1], "bridge"))
		}
		listening = [][]string{webhooks, bridges}
		for _, f := range []struct {
			port     int
			backends []string
		}{{port, webhooks}, {bridgePort, bridges}} {
			l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", f.port))
			if err != nil {
				return err
			}
			defer l.Close()
			go fanIn(l, f.backends)
		}
	}

	rel, _ := filepath.Rel(mustGetwd(), kubeconfig)
	kubectl := filepath.Join(os.Getenv("KUBEBUILDER_ASSETS"), "kubectl")
	if _, err := os.Stat("bin/kubectl"); err == nil {
		kubectl = "bin/kubectl"
	}
	banner := func() {
		fmt.Printf(`
trainyard is ready, against a local control plane (%s).
In another shell:

  %[2]s --kubeconfig %[3]s apply -f config/samples/
  %[2]s --kubeconfig %[3]s get componentreleases,releasetrains,clusterreports
  %[2]s --kubeconfig %[3]s explain clusterreport.spec

The check-in bridge (Deis workflow-manager API) listens on %[4]s:

  curl -s -XPOST %[4]s/v3/clusters -H 'Content-Type: application/json' \
    -H 'Authorization: Bearer %[5]s' \
    -d '{"id":"dev-cluster","components":[{"component":{"name":"router"},"version":{"train":"stable","version":"v2.3.0"}}]}'
  curl -s %[4]s/v3/versions/stable/router/latest

(%[5]s is a registration token from the Secret trainyard-registration.)

Ctrl-C stops everything.

`, cfg.Host, kubectl, rel, bridgeURL, token)
	}
	// The banner comes when the webhook and the bridge answer, so that the
	// commands it shows work at once.
	ready := func() bool {
		if err := waitAccepting(ctx, listening, o.startTimeout); err != nil {
			fmt.Fprintln(os.Stderr, "dev: the manager is not serving:", err)
			return false
		}
		banner()
		return true
	}

	if o.agent {
		// The agent reports this control plane as a cluster to its own bridge.
		procs = append(procs, process{name: "agent", binary: o.agentBinary, env: []string{"TRAINYARD_TOKEN=" + token}, afterReady: true,
			args: []string{"agent", "--hub-url=" + bridgeURL, "--interval=5m", "--debounce=2s", "--health-probe-bind-address=0"}})
	}
	return runProcesses(ctx, o, kubeconfig, procs, ready)
}

// process is one child of `make dev`: the trainyard binary with args.
type process struct {
	name string
	// binary is what runs ("": the manager's).
	binary string
	args   []string
	env    []string
	// group: one of several replicas ("manager", "bridge"), whose exit the
	// others of its group survive; "": a lone process.
	group string
	// afterReady: started once the manager serves (the agent).
	afterReady bool
}

// runProcesses runs the children until ctx ends or one exits, then stops
// them all (the last started first) with SIGTERM.
func runProcesses(ctx context.Context, o options, kubeconfig string, procs []process, ready func() bool) error {
	type running struct {
		name string
		cmd  *exec.Cmd
		done chan error
	}
	var started []running
	stop := func() {
		for i := len(started) - 1; i >= 0; i-- {
			p := started[i]
			fmt.Fprintf(os.Stderr, "dev: stopping the %s ...\n", p.name)
			_ = p.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-p.done:
			case <-time.After(o.stopTimeout):
				_ = p.cmd.Process.Kill()
				<-p.done
			}
		}
	}
	exited := make(chan process, len(procs))
	start := func(p process) error {
		bin := o.manager
		if p.binary != "" {
			bin = p.binary
		}
		cmd := exec.Command(bin, p.args...)
		cmd.Env = append(append(os.Environ(), "KUBECONFIG="+kubeconfig), p.env...)
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
		if len(procs) > 1 {
			// Several processes log at once: each line says whose it is.
			cmd.Stdout, cmd.Stderr = prefixed(os.Stdout, p.name), prefixed(os.Stderr, p.name)
		}
		// Its own process group, so Ctrl-C reaches only this program, which
		// stops things in order; and killed with this program if it dies first.
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
		if err := cmd.Start(); err != nil {
			return fmt.Errorf("starting the %s (%s): %w", p.name, o.manager, err)
		}
		fmt.Fprintf(os.Stderr, "dev: started the %s (pid %d)\n", p.name, cmd.Process.Pid)
		r := running{name: p.name, cmd: cmd, done: make(chan error, 1)}
		go func() { err := cmd.Wait(); r.done <- err; close(r.done); exited <- p }()
		started = append(started, r)
		return nil
	}
	var later []process
	for _, p := range procs {
		if p.afterReady {
			later = append(later, p)
			continue
		}
		if err := start(p); err != nil {
			stop()
			return err
		}
	}
	readyCh := make(chan bool, 1)
	go func() { readyCh <- ready() }()
	replicas := map[string]int{}
	for _, p := range procs {
		if p.group != "" {
			replicas[p.group]++
		}
	}
	for {
		select {
		case ok := <-readyCh:
			// The processes that need the manager up (the agent) start now.
			readyCh = nil
			for _, p := range later {
				if !ok {
					fmt.Fprintf(os.Stderr, "dev: not starting the %s\n", p.name)
					continue
				}
				if err := start(p); err != nil {
					stop()
					return err
				}
			}
			continue
		case p := <-exited:
			if p.group != "" && replicas[p.group] > 1 {
				// Another replica takes over: that is what replicas are for.
				replicas[p.group]--
				fmt.Fprintf(os.Stderr, "dev: the %s exited; %d %s replicas remain\n", p.name, replicas[p.group], p.group)
				continue
			}
			stop()
			return fmt.Errorf("the %s exited", p.name)
		case <-ctx.Done():
		}
		break
	}
	fmt.Fprintln(os.Stderr)
	stop()
	return nil
}

// bridgeArgs are the flags among the manager's (after --) that the bridge
// takes too: its own, and those of the fleet and the process.
func bridgeArgs(managerArgs []string) []string {
	var out []string
	for _, a := range managerArgs {
		name := strings.TrimLeft(strings.SplitN(a, "=", 2)[0], "-")
		switch {
		case strings.HasPrefix(name, "bridge-"), strings.HasPrefix(name, "kube-api-"), strings.HasPrefix(name, "zap-"),
			name == "registration-token-max-lifetime", name == "stale-threshold":
			out = append(out, a)
		}
	}
	return out
}

// applyDir creates every object in the YAML files of dir that does not
// exist yet.
func applyDir(ctx context.Context, c client.Client, dir string) (int, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil {
		return 0, err
	}
	n := 0
	for _, f := range files {
		objs, err := testenv.ReadObjects(f)
		if err != nil {
			return n, err
		}
		for _, u := range objs {
			if u.GetNamespace() == "" {
				u.SetNamespace("default")
			}
			if err := c.Create(ctx, u); apierrors.IsAlreadyExists(err) {
				continue // kept as the user left it
			} else if err != nil {
				return n, fmt.Errorf("%s: %s: %w", f, u.GetName(), err)
			}
			n++
		}
	}
	return n, nil
}

// registrationToken returns the dev registration token, creating the Secret
// of registration tokens on the first run.
func registrationToken(ctx context.Context, c client.Client) (string, error) {
	sec := &corev1.Secret{}
	key := client.ObjectKey{Namespace: "default", Name: "trainyard-registration"}
	if err := c.Get(ctx, key, sec); err == nil {
		if t := sec.Data["token"]; len(t) > 0 {
			return string(t), nil
		}
		// .dev/ state from before the key was "token", which the README's
		// commands read: copy it there.
		old := sec.DeepCopy()
		if sec.Data == nil {
			sec.Data = map[string][]byte{}
		}
		sec.Data["token"] = sec.Data["dev"]
		if len(sec.Data["token"]) == 0 {
			sec.Data["token"] = []byte(newToken())
		}
		return string(sec.Data["token"]), c.Patch(ctx, sec, client.MergeFrom(old))
	} else if !apierrors.IsNotFound(err) {
		return "", err
	}
	token := newToken()
	sec = &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name},
		Data: map[string][]byte{"token": []byte(token)}}
	return token, c.Create(ctx, sec)
}

// newToken is a random registration token.
func newToken() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	return hex.EncodeToString(b)
}

// waitAccepting waits until, in each group, one address accepts a TCP
// connection.
func waitAccepting(ctx context.Context, groups [][]string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for _, g := range groups {
		for {
			up := false
			for _, addr := range g {
				if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
					_ = c.Close()
					up = true
					break
				}
			}
			if up {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("nothing listens on %s after %s", strings.Join(g, " or "), timeout)
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(200 * time.Millisecond):
			}
		}
	}
	return nil
}

// fanIn forwards each connection of l to the first of backends that
// accepts it, starting from the next one each time: a Service's view of the
// manager replicas, on loopback.
func fanIn(l net.Listener, backends []string) {
	next := 0
	for {
		conn, err := l.Accept()
		if err != nil {
			return
		}
		start := next
		next = (next + 1) % len(backends)
		go func() {
			defer conn.Close()
			for i := range backends {
				up, err := net.DialTimeout("tcp", backends[(start+i)%len(backends)], time.Second)
				if err != nil {
					continue
				}
				defer up.Close()
				go func() { _, _ = io.Copy(up, conn); _ = up.(*net.TCPConn).CloseWrite() }()
				_, _ = io.Copy(conn, up)
				return
			}
		}()
	}
}

// prefixed writes each line to w after "[name] ".
func prefixed(w io.Writer, name string) io.Writer {
	r, pw := io.Pipe()
	go func() {
		sc := bufio.NewScanner(r)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			fmt.Fprintf(w, "[%s] %s\n", name, sc.Text())
		}
		_, _ = io.Copy(io.Discard, r)
	}()
	return pw
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// killLeftovers kills processes whose command line mentions dir.
func killLeftovers(dir string) {
	entries, _ := os.ReadDir("/proc")
	self := os.Getpid()
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || !strings.Contains(string(cmdline), dir+"/") {
			continue
		}
		fmt.Fprintf(os.Stderr, "dev: killing leftover process %d from an earlier run\n", pid)
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
}

func mustGetwd() string {
	wd, err := os.Getwd()
	if err != nil {
		return "."
	}
	return wd
}
