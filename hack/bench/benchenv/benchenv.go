// Package benchenv is what the benchmarks under hack/bench share: the real
// control plane with a client, and the manager binary as a child process.
package benchenv

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/controller-runtime/pkg/log"

	trainyardv1 "github.com/trainyard-dev/trainyard/api/v1alpha1"
	"github.com/trainyard-dev/trainyard/internal/testenv"
)

// Env is a running control plane with the CRDs and a namespace.
type Env struct {
	env    *envtest.Environment
	Config *rest.Config
	Scheme *runtime.Scheme
	Client client.Client
	// ManagerEnv is added to the environment of the processes Run starts
	// (TRAINYARD_MEMORY_LIMIT, as the chart sets it from limits.memory).
	ManagerEnv []string
}

// Start starts the control plane and creates namespace. The client has no
// client-side rate limit: the API server is what the benchmarks measure.
func Start(ctx context.Context, namespace string) (*Env, error) {
	log.SetLogger(logr.Discard())
	e := &Env{env: testenv.New(), Scheme: runtime.NewScheme()}
	if gates := os.Getenv("TRAINYARD_BENCH_FEATURE_GATES"); gates != "" {
		// An alpha feature measured before it is adopted (CBOR).
		e.env.ControlPlane.GetAPIServer().Configure().Append("feature-gates", gates)
	}
	cfg, err := testenv.Start(e.env)
	if err != nil {
		return nil, err
	}
	cfg.QPS, cfg.Burst = -1, 0
	e.Config = cfg
	_ = clientgoscheme.AddToScheme(e.Scheme)
	_ = trainyardv1.AddToScheme(e.Scheme)
	if e.Client, err = client.New(cfg, client.Options{Scheme: e.Scheme}); err != nil {
		e.Stop()
		return nil, err
	}
	if err := e.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}}); err != nil {
		e.Stop()
		return nil, err
	}
	// Interrupted, a benchmark stops the control plane, which would go on
	// running (and loading the machine) without it.
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-sig
		e.Stop()
		os.Exit(130)
	}()
	return e, nil
}

// Stop stops the control plane.
func (e *Env) Stop() { _ = e.env.Stop() }

// StartManager runs the manager binary against the control plane with
// args; it dies with this process.
func (e *Env) StartManager(binary string, args ...string) (*exec.Cmd, error) {
	return e.Run(binary, append([]string{"--kube-api-qps=-1", "--zap-log-level=error",
		// The webhook is not what is measured and needs a reachable address.
		"--enable-webhook=false"}, args...)...)
}

// Run runs the trainyard binary with args (say, `agent ...`) and a
// --kubeconfig for the control plane; it dies with this process.
func (e *Env) Run(binary string, args ...string) (*exec.Cmd, error) {
	kc, err := e.Kubeconfig()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(binary, append(args, "--kubeconfig", kc)...)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	cmd.Env = append(os.Environ(), e.ManagerEnv...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s (run `make build` first): %w", binary, err)
	}
	return cmd, nil
}

// Kubeconfig writes a kubeconfig for the control plane (an administrator's)
// into a new temporary directory and returns its path.
func (e *Env) Kubeconfig() (string, error) {
	dir, err := os.MkdirTemp("", "trainyard-bench-")
	if err != nil {
		return "", err
	}
	kc := filepath.Join(dir, "kubeconfig")
	return kc, os.WriteFile(kc, e.env.KubeConfig, 0o600)
}

// Webhook installs the admission webhook configurations, calling a free port
// on loopback, and returns the manager flags that serve them there with the
// manager's self-signed CA in namespace: the webhook on, as the chart runs
// it. WaitWebhook tells when the API server reaches it.
func (e *Env) Webhook(ctx context.Context, namespace string) ([]string, error) {
	addr, err := FreeAddr()
	if err != nil {
		return nil, err
	}
	_, p, _ := net.SplitHostPort(addr)
	port, _ := strconv.Atoi(p)
	// A before-and-after comparison runs an older binary with the webhook
	// configuration of its own commit (git show <commit>:config/webhook/manifests.yaml).
	manifests := cmp.Or(os.Getenv("TRAINYARD_BENCH_WEBHOOKS"), filepath.Join(testenv.RepoRoot(), "config", "webhook", "manifests.yaml"))
	if err := testenv.InstallWebhooks(ctx, e.Client, manifests, port); err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "trainyard-bench-webhook-")
	if err != nil {
		return nil, err
	}
	return []string{"--enable-webhook=true", "--namespace=" + namespace, "--webhook-host=127.0.0.1",
		"--webhook-port=" + p, "--webhook-cert-dir=" + dir, "--webhook-ip-sans=127.0.0.1"}, nil
}

// WaitWebhook waits until the API server admits a ClusterReport through the
// webhook (a dry-run create), at most a minute.
func (e *Env) WaitWebhook(ctx context.Context, namespace string) error {
	var err error
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		r := &trainyardv1.ClusterReport{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: "webhook-probe"},
			Spec: trainyardv1.ClusterReportSpec{ClusterID: "webhook-probe"}}
		if err = e.Client.Create(ctx, r, client.DryRunAll); err == nil {
			return nil
		}
	}
	return fmt.Errorf("the webhook did not admit a dry-run create within a minute: %w", err)
}

// StopManager stops it as Kubernetes would, with SIGTERM, and waits.
func StopManager(cmd *exec.Cmd) {
	if cmd.ProcessState == nil {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
	}
}

// FreeAddr is a free address on loopback.
func FreeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// Fetch saves what url answers to path (a profile from the manager's
// --pprof-bind-address).
func Fetch(url, path string) error {
	resp, err := http.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.Copy(f, resp.Body)
	return err
}

// Parallel calls f(i) for every i in [0, n) on workers goroutines, and
// returns when all are done.
func Parallel(n, workers int, f func(i int)) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				f(i)
			}
		})
	}
	wg.Wait()
}

// PatchCount is the manager's count of PATCH requests, from client-go's
// rest_client_requests_total on its metrics endpoint.
func PatchCount(url string) (int, error) {
	v, err := Scrape(url, "rest_client_requests_total{", `method="PATCH"`)
	return int(v), err
}

// Scrape sums the samples of the metrics endpoint whose line starts with
// prefix and contains every one of with.
func Scrape(url, prefix string, with ...string) (float64, error) {
	resp, err := http.Get(url)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	total := 0.0
	sc := bufio.NewScanner(resp.Body)
lines:
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, prefix) {
			continue
		}
		for _, w := range with {
			if !strings.Contains(line, w) {
				continue lines
			}
		}
		f := strings.Fields(line)
		v, _ := strconv.ParseFloat(f[len(f)-1], 64)
		total += v
	}
	return total, sc.Err()
}

// Median is the middle of xs (the upper one of an even count).
func Median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	return s[len(s)/2]
}

// PostCheckIn posts a check-in body to the bridge at url with bearer, and
// returns the status and the credential the answer issued, if any.
func PostCheckIn(hc *http.Client, url, bearer string, body []byte) (int, string, error) {
	req, err := http.NewRequest(http.MethodPost, url+"/v3/clusters", bytes.NewReader(body))
	if err != nil {
		return 0, "", err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+bearer)
	resp, err := hc.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, resp.Header.Get("X-Trainyard-Credential"), nil
}

// StartReportManager runs the manager with only what the report benchmarks
// measure (the controllers: no webhook, bridge or notifications), workers
// report workers and a plain metrics endpoint, and waits until it serves
// metrics. It returns the metrics URL.
func (e *Env) StartReportManager(binary string, workers int) (*exec.Cmd, string, error) {
	addr, err := FreeAddr()
	if err != nil {
		return nil, "", err
	}
	mgr, err := e.StartManager(binary, "--metrics-bind-address", addr, "--metrics-secure=false",
		"--health-probe-bind-address", "0", "--bridge-bind-address", "0", "--enable-webhook=false",
		"--notifications=false", "--report-workers", strconv.Itoa(workers),
		"--kube-api-qps=1000", "--kube-api-burst=2000")
	if err != nil {
		return nil, "", err
	}
	metrics := "http://" + addr + "/metrics"
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if _, err := PatchCount(metrics); err == nil {
			return mgr, metrics, nil
		} else if time.Now().After(deadline) {
			StopManager(mgr)
			return nil, "", fmt.Errorf("the manager did not come up: %v", err)
		}
	}
}

// RawStatusPatches merge-patches the status of count ClusterReports
// (name(i)) with status(i), at concurrency, as fast as the API server takes
// them: the limit a benchmark's controller figure is compared with.
func RawStatusPatches(ctx context.Context, cl client.Client, ns string, count, concurrency int,
	name func(int) string, status func(int) map[string]any) (time.Duration, error) {
	var firstErr atomic.Value
	start := time.Now()
	Parallel(count, concurrency, func(i int) {
		body, _ := json.Marshal(map[string]any{"status": status(i)})
		obj := &trainyardv1.ClusterReport{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name(i)}}
		if err := cl.Status().Patch(ctx, obj, client.RawPatch(types.MergePatchType, body)); err != nil {
			firstErr.CompareAndSwap(nil, err)
		}
	})
	if err, _ := firstErr.Load().(error); err != nil {
		return 0, err
	}
	return time.Since(start), nil
}
