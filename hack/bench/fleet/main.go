// Command fleet benchmarks the controllers on a real control plane: it
// creates N ClusterReports of 10 components each, then publishes a new latest
// for one component followed by half of the fleet, and prints how long the
// fleet takes to show UpdateAvailable, the manager's peak RSS and the API
// writes the manager issued. In the same run it measures the limit: a bare
// loop of as many status patches, with the manager's worker count as
// concurrency, against the same control plane.
//
//	make bench-fleet                     # 10,000 reports, 3 rounds
//	go run ./hack/bench/fleet -reports 1000 -rounds 1
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	v1 "github.com/trainyard-dev/trainyard/api/v1alpha1"
	"github.com/trainyard-dev/trainyard/hack/bench/benchenv"
)

const (
	ns         = "bench"
	components = 10
	target     = "comp-0" // the component that gets new releases
)

type config struct {
	reports, rounds, workers, concurrency int
	manager                               string
	heapProfile                           string
}

func main() {
	var c config
	flag.IntVar(&c.reports, "reports", 10000, "ClusterReports to create.")
	flag.IntVar(&c.rounds, "rounds", 3, "Publish rounds (and raw patch rounds); medians are printed.")
	flag.IntVar(&c.workers, "report-workers", 4, "The manager's --report-workers, and the raw loop's concurrency.")
	flag.IntVar(&c.concurrency, "create-concurrency", 16, "Concurrency of the initial creates.")
	flag.StringVar(&c.manager, "manager", "bin/trainyard", "The manager binary.")
	flag.StringVar(&c.heapProfile, "heap-profile", "", "Write the manager's heap profile here at the end.")
	flag.Parse()
	if err := run(c); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run(c config) error {
	log.SetLogger(logr.Discard())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	env, err := benchenv.Start(ctx, ns)
	if err != nil {
		return err
	}
	defer env.Stop()
	cfg, scheme, cl := env.Config, env.Scheme, env.Client

	// Releases: 1.0.0 of every component on stable and lts.
	for i := range components {
		for _, train := range []string{"stable", "lts"} {
			if err := publish(ctx, cl, fmt.Sprintf("comp-%d", i), train, "1.0.0"); err != nil {
				return err
			}
		}
	}

	w := newWatcher()
	informers, err := cache.New(cfg, cache.Options{Scheme: scheme, DefaultNamespaces: map[string]cache.Config{ns: {}}})
	if err != nil {
		return err
	}
	inf, err := informers.GetInformer(ctx, &v1.ClusterReport{})
	if err != nil {
		return err
	}
	if _, err := inf.AddEventHandler(w); err != nil {
		return err
	}
	go func() { _ = informers.Start(ctx) }()
	informers.WaitForCacheSync(ctx)

	mgr, metricsURL, err := startManager(env, c)
	if err != nil {
		return err
	}
	defer benchenv.StopManager(mgr)

	fmt.Printf("creating %d ClusterReports of %d components ...\n", c.reports, components)
	start := time.Now()
	if err := createReports(ctx, cl, c); err != nil {
		return err
	}
	created := time.Since(start)
	w.setTarget("1.0.0", c.reports)
	if err := w.wait(ctx, 10*time.Minute); err != nil {
		return fmt.Errorf("waiting for the initial status: %w", err)
	}
	fmt.Printf("created in %s; every report reconciled %s after the first create\n",
		created.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))

	affected := c.reports / 2 // even reports follow comp-0 on stable
	var fleetRates []float64
	var writes []int
	for round := 1; round <= c.rounds; round++ {
		version := fmt.Sprintf("1.%d.0", round)
		before, err := patchCount(metricsURL)
		if err != nil {
			return err
		}
		rvs := w.resourceVersions()
		w.setTarget(version, affected)
		t0 := time.Now()
		if err := publish(ctx, cl, target, "stable", version); err != nil {
			return err
		}
		if err := w.wait(ctx, 10*time.Minute); err != nil {
			return err
		}
		d := time.Since(t0)
		// Let stragglers (there should be none) land before counting.
		time.Sleep(2 * time.Second)
		after, err := patchCount(metricsURL)
		if err != nil {
			return err
		}
		changed, unaffectedChanged := w.changedSince(rvs)
		rate := float64(affected) / d.Seconds()
		fleetRates = append(fleetRates, rate)
		writes = append(writes, after-before)
		fmt.Printf("round %d: %d affected reports UpdateAvailable for %s in %s (%.0f reports/s); "+
			"manager PATCHes: %d; reports changed: %d affected, %d unaffected\n",
			round, affected, version, d.Round(time.Millisecond), rate, after-before, changed, unaffectedChanged)
	}
	rss := peakRSS(mgr.Process.Pid)
	if c.heapProfile != "" {
		if err := fetch(pprofURL, c.heapProfile); err != nil {
			return err
		}
	}
	heap, _ := scrape(metricsURL, "go_memstats_heap_inuse_bytes")
	benchenv.StopManager(mgr)

	// The limit: the same number of status patches, the same concurrency.
	var rawRates []float64
	for round := 1; round <= c.rounds; round++ {
		d, err := rawPatches(ctx, cl, affected, c.workers, round)
		if err != nil {
			return err
		}
		rate := float64(affected) / d.Seconds()
		rawRates = append(rawRates, rate)
		fmt.Printf("raw round %d: %d status patches at concurrency %d in %s (%.0f patches/s)\n",
			round, affected, c.workers, d.Round(time.Millisecond), rate)
	}

	fleet, raw := median(fleetRates), median(rawRates)
	fmt.Printf("\nRESULT reports=%d affected=%d workers=%d\n", c.reports, affected, c.workers)
	fmt.Printf("  fleet update: median %.0f reports/s; raw status patches: median %.0f patches/s; ratio %.0f%% (target >= 80%%)\n",
		fleet, raw, 100*fleet/raw)
	fmt.Printf("  manager peak RSS: %.1f MiB (target < 200 MiB); heap in use at the end: %.1f MiB\n",
		float64(rss)/(1<<20), heap/(1<<20))
	fmt.Printf("  manager PATCHes per round: %v for %d affected reports (one per report, plus the train and its releases)\n", writes, affected)
	return nil
}

func publish(ctx context.Context, cl client.Client, component, train, version string) error {
	return cl.Create(ctx, &v1.ComponentRelease{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: component + "." + train + "." + version},
		Spec: v1.ComponentReleaseSpec{Component: component, Train: train, Version: version,
			Released: &metav1.Time{Time: time.Now()}},
	})
}

func reportName(i int) string { return fmt.Sprintf("cluster-%05d", i) }

func createReports(ctx context.Context, cl client.Client, c config) error {
	var next atomic.Int64
	var firstErr error
	var once sync.Once
	var wg sync.WaitGroup
	for range c.concurrency {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= c.reports {
					return
				}
				r := &v1.ClusterReport{
					ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: reportName(i)},
					Spec:       v1.ClusterReportSpec{ClusterID: reportName(i)},
				}
				for j := range components {
					train := "stable"
					if j == 0 && i%2 == 1 {
						train = "lts" // odd reports follow comp-0 on another train
					}
					r.Spec.Components = append(r.Spec.Components, v1.ReportedComponent{
						Name: fmt.Sprintf("comp-%d", j), Train: train, Version: "1.0.0", Type: "Deployment",
						Image: fmt.Sprintf("registry.example.com/comp-%d:1.0.0", j)})
				}
				if err := cl.Create(ctx, r); err != nil {
					once.Do(func() { firstErr = err })
					return
				}
			}
		})
	}
	wg.Wait()
	return firstErr
}

// rawPatches patches n reports' status with a payload shaped like the
// controller's (the components list and the summary).
func rawPatches(ctx context.Context, cl client.Client, n, concurrency, round int) (time.Duration, error) {
	var next atomic.Int64
	var firstErr error
	var once sync.Once
	var wg sync.WaitGroup
	start := time.Now()
	for range concurrency {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				st := map[string]any{"summary": map[string]any{"total": components, "upToDate": components - 1,
					"updateAvailable": 1, "retracted": 0, "unknown": round}}
				comps := []map[string]any{}
				for j := range components {
					comps = append(comps, map[string]any{"name": fmt.Sprintf("comp-%d", j), "train": "stable",
						"installed": "1.0.0", "latest": fmt.Sprintf("1.%d.0", round), "state": "UpdateAvailable"})
				}
				st["components"] = comps
				body, _ := json.Marshal(map[string]any{"status": st})
				obj := &v1.ClusterReport{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: reportName(2 * i)}}
				if err := cl.Status().Patch(ctx, obj, client.RawPatch(types.MergePatchType, body)); err != nil {
					once.Do(func() { firstErr = err })
					return
				}
			}
		})
	}
	wg.Wait()
	return time.Since(start), firstErr
}

// watcher follows the reports through an informer and counts those whose
// target component shows the target latest version.
type watcher struct {
	mu      sync.Mutex
	version string
	want    int
	latest  map[string]string // report -> the target component's latest in its status
	rv      map[string]string
	notify  chan struct{}
}

func newWatcher() *watcher {
	return &watcher{latest: map[string]string{}, rv: map[string]string{}, notify: make(chan struct{}, 1)}
}

func (w *watcher) setTarget(version string, want int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.version, w.want = version, want
}

// reached counts the reports showing the target; the caller holds mu.
func (w *watcher) reached() int {
	n := 0
	for _, l := range w.latest {
		if l == w.version {
			n++
		}
	}
	return n
}

func (w *watcher) observe(obj any) {
	r, ok := obj.(*v1.ClusterReport)
	if !ok {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.rv[r.Name] = r.ResourceVersion
	if r.Status.Summary == nil || r.Status.Summary.Total != components {
		return
	}
	for _, c := range r.Status.Components {
		if c.Name == target && c.State != "" {
			w.latest[r.Name] = c.Latest
		}
	}
	select {
	case w.notify <- struct{}{}:
	default:
	}
}

func (w *watcher) OnAdd(obj any, _ bool) { w.observe(obj) }
func (w *watcher) OnUpdate(_, obj any)   { w.observe(obj) }
func (w *watcher) OnDelete(any)          {}
func (w *watcher) wait(ctx context.Context, limit time.Duration) error {
	timeout := time.After(limit)
	for {
		w.mu.Lock()
		n, want := w.reached(), w.want
		w.mu.Unlock()
		if n >= want {
			return nil
		}
		select {
		case <-w.notify:
		case <-timeout:
			return fmt.Errorf("only %d of %d reports reached the target after %s", n, want, limit)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (w *watcher) resourceVersions() map[string]string {
	w.mu.Lock()
	defer w.mu.Unlock()
	m := make(map[string]string, len(w.rv))
	for k, v := range w.rv {
		m[k] = v
	}
	return m
}

// changedSince counts reports whose resourceVersion moved, split into the
// affected (even) and unaffected (odd) halves.
func (w *watcher) changedSince(before map[string]string) (affected, unaffected int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for name, rv := range w.rv {
		if before[name] == rv {
			continue
		}
		i, _ := strconv.Atoi(strings.TrimPrefix(name, "cluster-"))
		if i%2 == 0 {
			affected++
		} else {
			unaffected++
		}
	}
	return affected, unaffected
}

var _ toolscache.ResourceEventHandler = &watcher{}

func startManager(env *benchenv.Env, c config) (*exec.Cmd, string, error) {
	metricsAddr, err := benchenv.FreeAddr()
	if err != nil {
		return nil, "", err
	}
	pprofAddr := "0"
	if c.heapProfile != "" {
		if pprofAddr, err = benchenv.FreeAddr(); err != nil {
			return nil, "", err
		}
	}
	cmd, err := env.StartManager(c.manager, "--metrics-bind-address", metricsAddr, "--metrics-secure=false",
		"--health-probe-bind-address", "0", "--pprof-bind-address", pprofAddr, "--bridge-bind-address", "0",
		"--report-workers", strconv.Itoa(c.workers))
	if err != nil {
		return nil, "", err
	}
	url := "http://" + metricsAddr + "/metrics"
	pprofURL = "http://" + pprofAddr + "/debug/pprof/heap"
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if _, err := patchCount(url); err == nil {
			return cmd, url, nil
		} else if time.Now().After(deadline) {
			benchenv.StopManager(cmd)
			return nil, "", fmt.Errorf("the manager's metrics did not come up: %w", err)
		}
	}
}

// pprofURL is the manager's heap profile endpoint when -heap-profile is set.
var pprofURL string

// fetch saves what url answers to path.
func fetch(url, path string) error {
	resp, err := http.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.Copy(f, resp.Body)
	return err
}

// patchCount is the manager's count of PATCH requests, from client-go's
// rest_client_requests_total on its metrics endpoint.
func patchCount(url string) (int, error) {
	v, err := scrape(url, "rest_client_requests_total{", `method="PATCH"`)
	return int(v), err
}

// scrape sums the samples of the metrics endpoint whose line starts with
// prefix and contains every one of with.
func scrape(url, prefix string, with ...string) (float64, error) {
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

// peakRSS is a process's peak resident set (VmHWM) in bytes.
func peakRSS(pid int) int64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(line, "VmHWM:") {
			kb, _ := strconv.ParseInt(strings.Fields(line)[1], 10, 64)
			return kb << 10
		}
	}
	return 0
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	return s[len(s)/2]
}
