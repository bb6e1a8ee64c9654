// Command agent measures the in-cluster agent's memory: it creates N
// labelled Deployments (and as many unlabelled ones, which the agent must
// not cache) in a real control plane, runs the agent against it with
// a hub that accepts check-ins, and prints the agent's peak RSS once it has
// reported every component.
//
//	make bench-agent
//	go run ./hack/bench/agent -deployments 500
//	go run ./hack/bench/agent -agent bin/trainyard   # the manager's binary
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/trainyard-dev/trainyard/hack/bench/benchenv"
	"github.com/trainyard-dev/trainyard/internal/wire"
)

func main() {
	n := flag.Int("deployments", 2000, "Labelled Deployments (as many unlabelled ones are created too).")
	binary := flag.String("agent", "bin/trainyard-agent", "The agent binary: bin/trainyard-agent (the chart's), or bin/trainyard (the manager's, whose `agent` command is the same).")
	runs := flag.Int("runs", 5, "Agent runs to take the median of.")
	flag.Parse()
	if err := run(*n, *runs, *binary); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run(n, runs int, binary string) error {
	ctx := context.Background()
	env, err := benchenv.Start(ctx, "apps")
	if err != nil {
		return err
	}
	defer env.Stop()

	fmt.Printf("creating %d labelled and %d unlabelled Deployments ...\n", n, n)
	var next atomic.Int64
	var wg sync.WaitGroup
	var firstErr error
	var once sync.Once
	for range 16 {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= 2*n {
					return
				}
				labels := map[string]string{"app": fmt.Sprintf("w-%05d", i)}
				if i < n {
					labels["app.kubernetes.io/name"] = fmt.Sprintf("component-%05d", i)
					labels["app.kubernetes.io/version"] = "1.0.0"
				}
				d := &appsv1.Deployment{
					ObjectMeta: metav1.ObjectMeta{Namespace: "apps", Name: fmt.Sprintf("w-%05d", i), Labels: labels,
						Annotations: map[string]string{"kubectl.kubernetes.io/last-applied-configuration": strings.Repeat("x", 2048)}},
					Spec: appsv1.DeploymentSpec{
						Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": labels["app"]}},
						Template: corev1.PodTemplateSpec{
							ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": labels["app"]}},
							Spec: corev1.PodSpec{Containers: []corev1.Container{
								{Name: "main", Image: "registry.example.com/app:1.0.0", Args: []string{"--serve", "--port=8080"},
									Env: []corev1.EnvVar{{Name: "A", Value: "1"}, {Name: "B", Value: "2"}}},
								{Name: "sidecar", Image: "registry.example.com/proxy:2.0.0"},
							}},
						},
					},
				}
				if err := env.Client.Create(ctx, d); err != nil {
					once.Do(func() { firstErr = err })
					return
				}
			}
		})
	}
	wg.Wait()
	if firstErr != nil {
		return firstErr
	}

	// A hub that accepts check-ins and remembers the component count.
	var reported atomic.Int64
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	go func() {
		_ = http.Serve(l, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path != "/v3/clusters" { // the multi-get after a check-in
				w.Header().Set("Content-Type", "application/json")
				_, _ = w.Write([]byte(`{"data":[]}`))
				return
			}
			var c wire.Cluster
			if err := json.NewDecoder(r.Body).Decode(&c); err == nil {
				reported.Store(int64(len(c.Components)))
			}
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(`{}`))
		}))
	}()
	// The agent runs several times against the same cluster; the figures
	// are the medians (memory varies from run to run with GC timing).
	var peak, anon, file []float64
	for r := 1; r <= runs; r++ {
		reported.Store(0)
		status, took, err := measure(env, binary, "http://"+l.Addr().String(), n, &reported)
		if err != nil {
			return err
		}
		peak, anon, file = append(peak, mib(status["VmHWM"])), append(anon, mib(status["RssAnon"])), append(file, mib(status["RssFile"]))
		fmt.Printf("run %d: reported %d components %s after start; peak RSS %.1f MiB, then %.1f MiB anonymous + %.1f MiB of the mapped binary\n",
			r, n, took.Round(time.Millisecond), peak[r-1], anon[r-1], file[r-1])
	}
	fmt.Printf("\nRESULT deployments=%d labelled + %d unlabelled, median of %d runs\n", n, n, runs)
	fmt.Printf("  agent peak RSS: %.1f MiB (target < 35 MiB); after the check-in: %.1f MiB anonymous (heap, stacks) + %.1f MiB of the mapped binary\n",
		benchenv.Median(peak), benchenv.Median(anon), benchenv.Median(file))
	return nil
}

// measure runs the agent until it has reported n components, and reads its
// memory then.
func measure(env *benchenv.Env, binary, hubURL string, n int, reported *atomic.Int64) (map[string]int64, time.Duration, error) {
	cmd, err := env.Run(binary, "agent", "--hub-url", hubURL, "--health-probe-bind-address", "0",
		"--interval", "1h", "--zap-log-level=error")
	if err != nil {
		return nil, 0, err
	}
	defer benchenv.StopManager(cmd)
	start := time.Now()
	for reported.Load() < int64(n) {
		if time.Since(start) > 2*time.Minute {
			return nil, 0, fmt.Errorf("the agent reported %d of %d components", reported.Load(), n)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return procStatus(cmd.Process.Pid), time.Since(start), nil
}

// procStatus reads the memory lines of /proc/<pid>/status, in bytes.
func procStatus(pid int) map[string]int64 {
	out := map[string]int64{}
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return out
	}
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) == 3 && f[2] == "kB" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			out[strings.TrimSuffix(f[0], ":")] = kb << 10
		}
	}
	return out
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }
