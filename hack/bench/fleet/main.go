// Command fleet benchmarks the fleet's data path on a real control plane:
// N clusters of 10 components each onboard through the bridge with one
// registration token (the manager run as the chart runs it, webhook
// included); then it publishes a new latest for one component followed by
// half of the fleet, and prints how long the fleet takes to show
// UpdateAvailable, the API writes the manager issued, the latency of the
// bridge's paged fleet query (GET /v3/clusters/age?limit=500) and the
// manager's peak RSS (the bridge runs in it). In the same run it measures
// the limit: a bare loop of as many status patches, with the manager's
// worker count as concurrency, against the same control plane.
//
//	make bench-fleet                                   # 10,000 clusters, 3 rounds
//	make bench-fleet BENCH_ARGS='-reports 100000 -rounds 1'
//	go run ./hack/bench/fleet -reports 1000 -rounds 1
package main

import (
	"bytes"
	"cmp"
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
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	trainyardv1 "github.com/trainyard-dev/trainyard/api/v1alpha1"
	"github.com/trainyard-dev/trainyard/hack/bench/benchenv"
)

const (
	ns         = "bench"
	components = 10
	target     = "comp-0" // the component that gets new releases
)

type config struct {
	reports, rounds, workers, concurrency, pages int
	manager                                      string
	heapProfile, cpuProfile, memoryLimit         string
	bridgeHeapProfile, roundCPUProfile           string
	bridgeWalkCPUProfile                         string
	bridgeGOGC                                   string
	bridgeMemoryLimit, goMemLimit                string
	webhook, bridgeApart                         bool
}

func main() {
	var c config
	flag.IntVar(&c.reports, "reports", 10000, "ClusterReports to create.")
	flag.IntVar(&c.rounds, "rounds", 3, "Publish rounds (and raw patch rounds); medians are printed. 0: onboarding, the paged query and RSS only.")
	flag.IntVar(&c.workers, "report-workers", 16, "The manager's --report-workers (the chart's default), and the raw loop's concurrency.")
	flag.IntVar(&c.concurrency, "connections", 16, "Connections of the onboarding clusters (one address, as behind an Ingress).")
	flag.IntVar(&c.pages, "pages", 200, "Requests of the paged fleet query to time.")
	flag.BoolVar(&c.webhook, "webhook", true, "Run the admission webhook, as the chart does.")
	flag.StringVar(&c.manager, "manager", "bin/trainyard", "The manager binary.")
	flag.StringVar(&c.heapProfile, "heap-profile", "", "Write the manager's heap profile here at the end.")
	flag.StringVar(&c.roundCPUProfile, "round-cpu-profile", "", "Write the manager's CPU profile of 30 s of the first release round here.")
	flag.StringVar(&c.bridgeWalkCPUProfile, "bridge-walk-cpu-profile", "", "With -bridge-apart: write the bridge's CPU profile "+
		"of the 10 s from the start of the first walk of the pages here (what the page's tail shares the bridge with).")
	flag.StringVar(&c.bridgeHeapProfile, "bridge-heap-profile", "", "With -bridge-apart: write the bridge's heap profile here at the end.")
	flag.StringVar(&c.cpuProfile, "cpu-profile", "", "Write the manager's CPU profile of 30 s of the onboarding here.")
	flag.StringVar(&c.memoryLimit, "memory-limit", "512Mi", "The manager container's memory limit, as the chart passes it "+
		"(its default 512Mi; an operator of 100,000 clusters raises it). The manager keeps its heap under 90 % of it.")
	flag.BoolVar(&c.bridgeApart, "bridge-apart", false, "Run the bridge as the chart does, in a process of its own (`trainyard bridge`), "+
		"and print each process's peak RSS; default: the bridge inside the manager (as `make dev` runs it).")
	flag.StringVar(&c.bridgeMemoryLimit, "bridge-memory-limit", "1Gi", "With -bridge-apart: the bridge container's memory limit "+
		"(the chart's default is 256Mi, for a fleet far smaller than 100,000).")
	flag.StringVar(&c.bridgeGOGC, "bridge-gogc", "", "With -bridge-apart: the bridge's GOGC (the binary's default is 50).")
	flag.StringVar(&c.goMemLimit, "gomemlimit", "", "The manager's GOMEMLIMIT (say 720MiB), which wins over the 90 % of -memory-limit it sets itself.")
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
	cl := env.Client

	mgr, m, err := startManager(ctx, env, c)
	if err != nil {
		return err
	}
	defer benchenv.StopManager(mgr)
	if bridgeProc != nil {
		defer benchenv.StopManager(bridgeProc)
	}
	metricsURL := m.metrics

	// Releases: 1.0.0 of every component on stable and lts.
	for i := range components {
		for _, train := range []string{"stable", "lts"} {
			if err := publish(ctx, cl, fmt.Sprintf("comp-%d", i), train, "1.0.0"); err != nil {
				return err
			}
		}
	}

	// A report's value: its target component's latest, once the report
	// shows all its components.
	w := benchenv.NewWatcher(func(r *trainyardv1.ClusterReport) (string, bool) {
		if r.Status.Summary == nil || r.Status.Summary.Total != components {
			return "", false
		}
		for _, c := range r.Status.Components {
			if c.Name == target && c.State != "" {
				return c.GetLatest(), true
			}
		}
		return "", false
	})
	is := func(version string) func(string) bool { return func(v string) bool { return v == version } }
	if err := env.Watch(ctx, ns, w, slim); err != nil {
		return err
	}

	fmt.Printf("onboarding %d clusters of %d components through the bridge (one registration token, %d connections) ...\n",
		c.reports, components, c.concurrency)
	start := time.Now()
	if c.cpuProfile != "" {
		go func() {
			if err := benchenv.Fetch(pprofURL+"profile?seconds=30", c.cpuProfile); err != nil {
				fmt.Fprintln(os.Stderr, "bench: the CPU profile:", err)
			}
		}()
	}
	failed, err := onboard(m.bridge, c)
	if err != nil {
		return err
	}
	onboarded := time.Since(start)
	if err := w.Wait(ctx, is("1.0.0"), c.reports, 30*time.Minute); err != nil {
		return fmt.Errorf("waiting for the initial status: %w", err)
	}
	reconciled := time.Since(start)
	fmt.Printf("onboarded in %s (%.0f/s, %d refused); every report reconciled %s after the first check-in\n",
		onboarded.Round(time.Millisecond), float64(c.reports)/onboarded.Seconds(), failed, reconciled.Round(time.Millisecond))

	affected := c.reports / 2 // even reports follow comp-0 on stable
	var fleetRates []float64
	var writes []int
	for round := 1; round <= c.rounds; round++ {
		version := fmt.Sprintf("1.%d.0", round)
		before, err := benchenv.PatchCount(metricsURL)
		if err != nil {
			return err
		}
		rvs := w.ResourceVersions()
		t0 := time.Now()
		if err := publish(ctx, cl, target, "stable", version); err != nil {
			return err
		}
		if round == 1 && c.roundCPUProfile != "" {
			go func() {
				if err := benchenv.Fetch(pprofURL+"profile?seconds=30", c.roundCPUProfile); err != nil {
					fmt.Fprintln(os.Stderr, "bench: the round's CPU profile:", err)
				}
			}()
		}
		if err := w.Wait(ctx, is(version), affected, 10*time.Minute); err != nil {
			return err
		}
		d := time.Since(t0)
		// Let stragglers (there should be none) land before counting.
		time.Sleep(2 * time.Second)
		after, err := benchenv.PatchCount(metricsURL)
		if err != nil {
			return err
		}
		// The affected half are the even reports.
		changed, unaffectedChanged := w.ChangedSince(rvs, func(name string) bool {
			i, _ := strconv.Atoi(strings.TrimPrefix(name, "cluster-"))
			return i%2 == 0
		})
		rate := float64(affected) / d.Seconds()
		fleetRates = append(fleetRates, rate)
		writes = append(writes, after-before)
		fmt.Printf("round %d: %d affected reports UpdateAvailable for %s in %s (%.0f reports/s); "+
			"manager PATCHes: %d; reports changed: %d affected, %d unaffected\n",
			round, affected, version, d.Round(time.Millisecond), rate, after-before, changed, unaffectedChanged)
	}
	// The serving process's collections during the walk: what a page's tail
	// shares the machine with.
	serving := metricsURL
	if bridgeProc != nil {
		serving = bridgeURLs.metrics
	}
	gcs := func() float64 { n, _ := benchenv.Scrape(serving, "go_gc_duration_seconds_count"); return n }
	gc0 := gcs()
	profiled := make(chan struct{})
	if bridgeProc != nil && c.bridgeWalkCPUProfile != "" {
		go func() {
			defer close(profiled)
			if err := benchenv.Fetch(bridgeURLs.pprof+"profile?seconds=10", c.bridgeWalkCPUProfile); err != nil {
				fmt.Fprintln(os.Stderr, "bench: the bridge's CPU profile of the walk:", err)
			}
		}()
	} else {
		close(profiled)
	}
	pageLat, err := pages(m.bridge, c.pages)
	if err != nil {
		return err
	}
	gc1 := gcs()
	fmt.Printf("GET /v3/clusters/age?limit=500, %d requests walking the pages: p50 %v, p99 %v; %.0f collections of the serving process meanwhile\n",
		len(pageLat), pageLat[len(pageLat)/2].Round(100*time.Microsecond), pageLat[len(pageLat)*99/100].Round(100*time.Microsecond), gc1-gc0)
	// A second walk, for what the first one's tail is: the release round's
	// aftermath, or what every walk meets. The result reports the first.
	if again, err := pages(m.bridge, c.pages); err == nil {
		fmt.Printf("the same walk again: p50 %v, p99 %v; %.0f collections meanwhile\n",
			again[len(again)/2].Round(100*time.Microsecond), again[len(again)*99/100].Round(100*time.Microsecond), gcs()-gc1)
	}
	<-profiled
	rss := peakRSS(mgr.Process.Pid)
	var bridgeRSS int64
	var bridgeHeap float64
	if bridgeProc != nil {
		bridgeRSS = peakRSS(bridgeProc.Process.Pid)
		// The live heap: what a collection leaves (the profile forces one).
		to := c.bridgeHeapProfile
		if to == "" {
			to = os.DevNull
		}
		if err := benchenv.Fetch(bridgeURLs.pprof+"heap?gc=1", to); err != nil {
			return err
		}
		bridgeHeap, _ = benchenv.Scrape(bridgeURLs.metrics, "go_memstats_heap_inuse_bytes")
		benchenv.StopManager(bridgeProc)
	}
	if c.heapProfile != "" {
		if err := benchenv.Fetch(pprofURL+"heap?gc=1", c.heapProfile); err != nil {
			return err
		}
	}
	heap, _ := benchenv.Scrape(metricsURL, "go_memstats_heap_inuse_bytes")
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

	fleet, raw := benchenv.Median(fleetRates), benchenv.Median(rawRates)
	fmt.Printf("\nRESULT reports=%d affected=%d workers=%d webhook=%v memory-limit=%s gomemlimit=%q bridge-apart=%v bridge-gogc=%q\n", c.reports, affected, c.workers, c.webhook, c.memoryLimit, c.goMemLimit, c.bridgeApart, c.bridgeGOGC)
	fmt.Printf("  onboarding: %s (%.0f first check-ins/s, %d refused); all reconciled after %s\n", onboarded.Round(time.Second),
		float64(c.reports)/onboarded.Seconds(), failed, reconciled.Round(time.Second))
	if c.rounds > 0 {
		fmt.Printf("  fleet update: median %.0f reports/s; raw status patches: median %.0f patches/s; ratio %.0f%% (target >= 80%%)\n",
			fleet, raw, 100*fleet/raw)
	}
	if bridgeProc != nil {
		fmt.Printf("  manager peak RSS (the bridge apart, as the chart runs it): %.1f MiB; heap in use at the end: %.1f MiB\n",
			float64(rss)/(1<<20), heap/(1<<20))
		fmt.Printf("  bridge peak RSS (`trainyard bridge`, memory limit %s): %.1f MiB; heap in use after a collection at the end: %.1f MiB\n",
			c.bridgeMemoryLimit, float64(bridgeRSS)/(1<<20), bridgeHeap/(1<<20))
	} else {
		fmt.Printf("  manager peak RSS (the bridge runs in it): %.1f MiB; heap in use at the end: %.1f MiB\n",
			float64(rss)/(1<<20), heap/(1<<20))
	}
	fmt.Printf("  GET /v3/clusters/age?limit=500: p50 %v, p99 %v (target p99 < 100ms)\n",
		pageLat[len(pageLat)/2].Round(100*time.Microsecond), pageLat[len(pageLat)*99/100].Round(100*time.Microsecond))
	fmt.Printf("  manager PATCHes per round: %v for %d affected reports (one per report, plus the train and its releases)\n", writes, affected)
	return nil
}

func publish(ctx context.Context, cl client.Client, component, train, version string) error {
	return cl.Create(ctx, &trainyardv1.ComponentRelease{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: trainyardv1.ReleaseName(component, train, version)},
		Spec: trainyardv1.ComponentReleaseSpec{Component: component, Train: train, Version: version,
			Released: &metav1.Time{Time: time.Now()}},
	})
}

func reportName(i int) string { return fmt.Sprintf("cluster-%05d", i) }

const token = "fleet-registration-token"

// checkIn is cluster i's check-in: its 10 components, odd clusters
// following comp-0 on lts, the others on stable.
func checkIn(i int) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, `{"id":%q,"components":[`, reportName(i))
	for j := range components {
		train := "stable"
		if j == 0 && i%2 == 1 {
			train = "lts"
		}
		if j > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"component":{"name":"comp-%d","type":"Deployment"},"version":{"train":%q,"version":"1.0.0"}}`, j, train)
	}
	b.WriteString("]}")
	return []byte(b.String())
}

// onboard registers every cluster with the registration token, as its
// agent's first check-in does; it returns how many were refused.
func onboard(bridge string, c config) (int64, error) {
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: c.concurrency}, Timeout: time.Minute}
	var failed atomic.Int64
	var firstErr atomic.Value
	benchenv.Parallel(c.reports, c.concurrency, func(i int) {
		req, _ := http.NewRequest(http.MethodPost, bridge+"/v3/clusters", bytes.NewReader(checkIn(i)))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := hc.Do(req)
		if err != nil {
			firstErr.CompareAndSwap(nil, err)
			failed.Add(1)
			return
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			firstErr.CompareAndSwap(nil, fmt.Errorf("%s: %s", resp.Status, body))
			failed.Add(1)
		}
	})
	if n := failed.Load(); n > 0 {
		return n, fmt.Errorf("%d of %d registrations failed (the first: %v)", n, c.reports, firstErr.Load())
	}
	return 0, nil
}

// pages times n requests of GET /v3/clusters/age?limit=500 one after the
// other, following each answer's Link to the next page and starting over
// after the last; it returns the latencies, sorted.
func pages(bridge string, n int) ([]time.Duration, error) {
	first := "/v3/clusters/age?limit=500"
	next := first
	lat := make([]time.Duration, 0, n)
	for range n {
		t0 := time.Now()
		resp, err := http.Get(bridge + next)
		if err != nil {
			return nil, err
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		d := time.Since(t0)
		if err != nil {
			return nil, err
		}
		if resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("GET %s: %d %s", next, resp.StatusCode, body)
		}
		var page struct {
			Data []json.RawMessage `json:"data"`
		}
		if err := json.Unmarshal(body, &page); err != nil || len(page.Data) == 0 {
			return nil, fmt.Errorf("GET %s: an empty or unreadable page (%v)", next, err)
		}
		lat = append(lat, d)
		next = first
		if l := resp.Header.Get("Link"); l != "" {
			if a, b := strings.Index(l, "<"), strings.Index(l, ">"); a >= 0 && b > a {
				next = l[a+1 : b]
			}
		}
	}
	// Which requests were the slowest tells a first request's one-off work
	// (sorting the names) from what recurs (a collection, a busy machine).
	idx := make([]int, len(lat))
	for i := range idx {
		idx[i] = i
	}
	slices.SortFunc(idx, func(a, b int) int { return cmp.Compare(lat[b], lat[a]) })
	var slowest []string
	for _, i := range idx[:min(3, len(idx))] {
		slowest = append(slowest, fmt.Sprintf("#%d %v", i+1, lat[i].Round(100*time.Microsecond)))
	}
	fmt.Printf("the slowest pages: %s\n", strings.Join(slowest, ", "))
	slices.Sort(lat)
	return lat, nil
}

// slim keeps of a report what the watcher reads: the bench's own cache of
// 100,000 reports should not be what the machine is busy with.
func slim(obj any) (any, error) {
	r, ok := obj.(*trainyardv1.ClusterReport)
	if !ok {
		return obj, nil
	}
	out := &trainyardv1.ClusterReport{}
	out.Name, out.Namespace, out.ResourceVersion = r.Name, r.Namespace, r.ResourceVersion
	out.Status.Summary = r.Status.Summary
	for _, c := range r.Status.Components {
		if c.Name == target {
			// What GetLatest derives latest from, when it is not stored.
			out.Status.Components = []trainyardv1.ComponentStatus{{Name: c.Name, Installed: c.Installed, State: c.State,
				Latest: c.Latest, Recommended: c.Recommended}}
		}
	}
	return out, nil
}

// rawPatches patches n reports' status with a payload shaped like the
// controller's (the components list and the summary).
func rawPatches(ctx context.Context, cl client.Client, n, concurrency, round int) (time.Duration, error) {
	var firstErr atomic.Value
	start := time.Now()
	benchenv.Parallel(n, concurrency, func(i int) {
		st := map[string]any{"summary": map[string]any{"total": components, "upToDate": components - 1,
			"updateAvailable": 1, "retracted": 0, "unknown": round}}
		comps := []map[string]any{}
		for j := range components {
			comps = append(comps, map[string]any{"name": fmt.Sprintf("comp-%d", j), "train": "stable",
				"installed": "1.0.0", "latest": fmt.Sprintf("1.%d.0", round), "state": "UpdateAvailable"})
		}
		st["components"] = comps
		body, _ := json.Marshal(map[string]any{"status": st})
		obj := &trainyardv1.ClusterReport{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: reportName(2 * i)}}
		if err := cl.Status().Patch(ctx, obj, client.RawPatch(types.MergePatchType, body)); err != nil {
			firstErr.CompareAndSwap(nil, err)
		}
	})
	if err, _ := firstErr.Load().(error); err != nil {
		return 0, err
	}
	return time.Since(start), nil
}

// bridgeProc is `trainyard bridge` with -bridge-apart (else nil).
var bridgeProc *exec.Cmd

// managerURLs are where the started manager answers.
type managerURLs struct{ metrics, bridge string }

func startManager(ctx context.Context, env *benchenv.Env, c config) (*exec.Cmd, managerURLs, error) {
	var m managerURLs
	if err := env.Client.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "trainyard-registration"},
		Data: map[string][]byte{"fleet": []byte(token)}}); err != nil {
		return nil, m, err
	}
	metricsAddr, err := benchenv.FreeAddr()
	if err != nil {
		return nil, m, err
	}
	bridgeAddr, err := benchenv.FreeAddr()
	if err != nil {
		return nil, m, err
	}
	pprofAddr := "0"
	if c.heapProfile != "" || c.cpuProfile != "" || c.roundCPUProfile != "" {
		if pprofAddr, err = benchenv.FreeAddr(); err != nil {
			return nil, m, err
		}
	}
	bridgeArgs := []string{"--bridge-bind-address", bridgeAddr, "--bridge-namespace", ns,
		// One generator plays the fleet from one address: the per-client and
		// per-tenant budgets are not what is measured.
		"--bridge-rate-limit=1e9", "--bridge-rate-burst=1000000000",
		"--bridge-tenant-rate-limit=1e9", "--bridge-tenant-rate-burst=1000000000",
		// The quota of clusters per tenant (50,000 by default) raised to the
		// fleet, as the operator of such a fleet does.
		"--bridge-max-clusters-per-tenant=" + strconv.Itoa(max(c.reports, 50000))}
	args := []string{"--metrics-bind-address", metricsAddr, "--metrics-secure=false",
		"--health-probe-bind-address", "0", "--pprof-bind-address", pprofAddr,
		"--report-workers", strconv.Itoa(c.workers),
		// The chart's client limits (benchenv's unlimited client is overridden).
		"--kube-api-qps=1000", "--kube-api-burst=2000"}
	if c.bridgeApart {
		// The chart's bridge: `trainyard bridge`, the same client limits.
		bridgeMetrics, err := benchenv.FreeAddr()
		if err != nil {
			return nil, m, err
		}
		bridgePprof, err := benchenv.FreeAddr()
		if err != nil {
			return nil, m, err
		}
		bridgeURLs.metrics, bridgeURLs.pprof = "http://"+bridgeMetrics+"/metrics", "http://"+bridgePprof+"/debug/pprof/"
		env.ManagerEnv = nil
		if c.bridgeMemoryLimit != "" {
			q, err := resource.ParseQuantity(c.bridgeMemoryLimit)
			if err != nil {
				return nil, m, fmt.Errorf("-bridge-memory-limit: %w", err)
			}
			env.ManagerEnv = []string{fmt.Sprintf("TRAINYARD_MEMORY_LIMIT=%d", q.Value())}
		}
		if c.bridgeGOGC != "" {
			env.ManagerEnv = append(env.ManagerEnv, "GOGC="+c.bridgeGOGC)
		}
		if bridgeProc, err = env.Run(c.manager, append([]string{"bridge", "--metrics-bind-address", bridgeMetrics,
			"--metrics-secure=false", "--health-probe-bind-address", "0", "--zap-log-level=error", "--pprof-bind-address", bridgePprof,
			"--kube-api-qps=1000", "--kube-api-burst=2000"}, bridgeArgs...)...); err != nil {
			return nil, m, err
		}
		env.ManagerEnv = nil
		args = append(args, "--bridge-bind-address", "0")
	} else {
		args = append(args, bridgeArgs...)
	}
	if c.webhook {
		wargs, err := env.Webhook(ctx, ns)
		if err != nil {
			return nil, m, err
		}
		args = append(args, wargs...)
	}
	if c.memoryLimit != "" {
		q, err := resource.ParseQuantity(c.memoryLimit)
		if err != nil {
			return nil, m, fmt.Errorf("-memory-limit: %w", err)
		}
		env.ManagerEnv = append(env.ManagerEnv, fmt.Sprintf("TRAINYARD_MEMORY_LIMIT=%d", q.Value()))
	}
	if c.goMemLimit != "" {
		env.ManagerEnv = append(env.ManagerEnv, "GOMEMLIMIT="+c.goMemLimit)
	}
	cmd, err := env.StartManager(c.manager, args...)
	if err != nil {
		return nil, m, err
	}
	m = managerURLs{metrics: "http://" + metricsAddr + "/metrics", bridge: "http://" + bridgeAddr}
	pprofURL = "http://" + pprofAddr + "/debug/pprof/"
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		resp, err := http.Get(m.bridge + "/readyz")
		if err == nil {
			resp.Body.Close()
		}
		if _, merr := benchenv.PatchCount(m.metrics); merr == nil && err == nil && resp.StatusCode == http.StatusOK {
			break
		} else if time.Now().After(deadline) {
			benchenv.StopManager(cmd)
			return nil, m, fmt.Errorf("the manager did not come up: %v %v", merr, err)
		}
	}
	if c.webhook {
		if err := env.WaitWebhook(ctx, ns); err != nil {
			benchenv.StopManager(cmd)
			return nil, m, err
		}
	}
	return cmd, m, nil
}

// bridgeURLs are the bridge's metrics and pprof endpoints with -bridge-apart.
var bridgeURLs struct{ metrics, pprof string }

// pprofURL is the manager's pprof endpoint when a profile is asked for.
var pprofURL string

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
