// Command realistic measures the bridge under a realistic fleet: N clusters
// (10,000) register once, then each checks in at its agent's nominal
// interval (15 minutes) with ±25 % jitter, with time compressed: the
// interval, the stale threshold and so the persist interval derived from it
// are all divided by -compress, so that a few minutes stand for hours. It
// prints the check-ins per second, their latency, errors, and what they cost:
// API writes per check-in (the manager's client-go request counter) and
// ClusterReport writes per cluster per hour, scaled back (every write to a
// report, spec or status, seen by a watch).
//
//	make bench-realistic
//	go run ./hack/bench/realistic -manager bin/trainyard -clusters 10000 -compress 60 -duration 4m
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"

	trainyardv1 "github.com/trainyard-dev/trainyard/api/v1alpha1"
	"github.com/trainyard-dev/trainyard/hack/bench/benchenv"
)

type config struct {
	clusters, conns    int
	interval, duration time.Duration
	compress           float64
	manager, heartbeat string
	webhook            bool
}

func main() {
	var c config
	flag.IntVar(&c.clusters, "clusters", 10000, "Simulated clusters.")
	flag.IntVar(&c.conns, "connections", 16, "Concurrent connections of the load generator (one source address, as behind an Ingress).")
	flag.DurationVar(&c.interval, "interval", 15*time.Minute, "The agents' nominal check-in interval (real time).")
	flag.Float64Var(&c.compress, "compress", 60, "Time compression: intervals, the stale threshold and the persist interval are divided by it.")
	flag.DurationVar(&c.duration, "duration", 4*time.Minute, "How long the measured phase runs (compressed time); 0: onboarding only.")
	flag.StringVar(&c.manager, "manager", "bin/trainyard", "The manager binary.")
	flag.StringVar(&c.heartbeat, "heartbeat", "", "--bridge-heartbeat for the manager, compressed (empty: its default, derived from the compressed stale threshold).")
	flag.BoolVar(&c.webhook, "webhook", true, "Run the admission webhook, as the chart does (every create of a report passes it).")
	flag.Parse()
	if err := run(c); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

const token = "realistic-registration-token"

func run(c config) error {
	ctx := context.Background()
	env, err := benchenv.Start(ctx, "fleet")
	if err != nil {
		return err
	}
	defer env.Stop()
	if err := env.Client.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "fleet", Name: "trainyard-registration"},
		Data: map[string][]byte{"fleet": []byte(token)}}); err != nil {
		return err
	}
	addr, err := benchenv.FreeAddr()
	if err != nil {
		return err
	}
	metricsAddr, err := benchenv.FreeAddr()
	if err != nil {
		return err
	}
	stale := time.Duration(float64(25*time.Hour) / c.compress)
	args := []string{
		// The chart's defaults for the client (benchenv's -1 is overridden):
		// onboarding is measured as a user runs it.
		"--kube-api-qps=1000", "--kube-api-burst=2000",
		"--bridge-bind-address", addr, "--bridge-namespace", "fleet", "--metrics-bind-address", metricsAddr,
		"--metrics-secure=false", "--health-probe-bind-address", "0", "--stale-threshold", stale.String(),
		// One generator plays the fleet from one address; the per-client and
		// per-tenant budgets are not what is measured.
		"--bridge-rate-limit=1e9", "--bridge-rate-burst=1000000000",
		"--bridge-tenant-rate-limit=1e9", "--bridge-tenant-rate-burst=1000000000"}
	if c.heartbeat != "" {
		args = append(args, "--bridge-heartbeat", c.heartbeat)
	}
	if c.webhook {
		wargs, err := env.Webhook(ctx, "fleet")
		if err != nil {
			return err
		}
		args = append(args, wargs...)
	}
	mgr, err := env.StartManager(c.manager, args...)
	if err != nil {
		return err
	}
	defer benchenv.StopManager(mgr)
	url := "http://" + addr
	if err := waitReady(url); err != nil {
		return err
	}
	if c.webhook {
		if err := env.WaitWebhook(ctx, "fleet"); err != nil {
			return err
		}
	}
	metricsURL := "http://" + metricsAddr + "/metrics"
	writesStart, err := apiWrites(metricsURL)
	if err != nil {
		return err
	}

	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: c.conns}, Timeout: 30 * time.Second}
	body := func(i int) []byte {
		return []byte(fmt.Sprintf(`{"id":"cluster-%05d","components":[{"component":{"name":"router","type":"Deployment"},`+
			`"version":{"train":"stable","version":"v1.0.0"}}]}`, i))
	}
	// Registration: each cluster once, with the token.
	fmt.Printf("registering %d clusters ...\n", c.clusters)
	creds := make([]string, c.clusters)
	start := time.Now()
	var regErrors atomic.Int64
	benchenv.Parallel(c.clusters, c.conns, func(i int) {
		code, cred, _ := benchenv.PostCheckIn(hc, url, token, body(i))
		if code != http.StatusOK {
			regErrors.Add(1)
		}
		creds[i] = cred
	})
	registered := time.Since(start)
	fmt.Printf("registered in %s (%.0f/s), errors %d\n", registered.Round(time.Millisecond),
		float64(c.clusters)/registered.Seconds(), regErrors.Load())
	// The registrations' own writes: the creates and the controller's first
	// status, counted once the manager's writes have settled.
	regWrites, err := settledWrites(metricsURL)
	if err != nil {
		return err
	}
	regWrites -= writesStart
	fmt.Printf("API writes by the manager per new cluster: %.2f (%d writes)\n", float64(regWrites)/float64(c.clusters), regWrites)
	if c.duration <= 0 { // make bench-onboarding
		fmt.Printf("\nRESULT onboarding clusters=%d connections=%d webhook=%v: %.0f first check-ins/s (target >= 232/s, the old service's rate), "+
			"errors %d, API writes per new cluster %.2f (target <= 2)\n", c.clusters, c.conns, c.webhook,
			float64(c.clusters)/registered.Seconds(), regErrors.Load(), float64(regWrites)/float64(c.clusters))
		return nil
	}

	// Every write to a report from now on (spec or status) is an update
	// event of an informer (which re-establishes its watch as needed).
	informers, err := cache.New(env.Config, cache.Options{Scheme: env.Scheme})
	if err != nil {
		return err
	}
	inf, err := informers.GetInformer(ctx, &trainyardv1.ClusterReport{})
	if err != nil {
		return err
	}
	var reportWrites atomic.Int64
	if _, err := inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		UpdateFunc: func(old, cur any) {
			if o, c := old.(*trainyardv1.ClusterReport), cur.(*trainyardv1.ClusterReport); o.ResourceVersion != c.ResourceVersion {
				reportWrites.Add(1)
			}
		},
	}); err != nil {
		return err
	}
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() { _ = informers.Start(cctx) }()
	if !informers.WaitForCacheSync(cctx) {
		return fmt.Errorf("the report informer did not sync")
	}
	reportWrites.Store(0)
	writesBefore, err := apiWrites(metricsURL)
	if err != nil {
		return err
	}

	// The fleet: each cluster's next check-in at a random point of its first
	// interval, then every interval ±25 %, compressed.
	interval := time.Duration(float64(c.interval) / c.compress)
	type due struct {
		at time.Time
		i  int
	}
	measureStart := time.Now()
	end := measureStart.Add(c.duration)
	queue := make(chan int, c.clusters)
	var mu sync.Mutex
	var lat []time.Duration
	var errs, checkIns atomic.Int64
	var wg sync.WaitGroup
	for range c.conns {
		wg.Go(func() {
			for i := range queue {
				t0 := time.Now()
				code, _, err := benchenv.PostCheckIn(hc, url, creds[i], body(i))
				d := time.Since(t0)
				mu.Lock()
				lat = append(lat, d)
				mu.Unlock()
				checkIns.Add(1)
				if err != nil || code != http.StatusOK {
					errs.Add(1)
				}
			}
		})
	}
	schedule := make([]due, c.clusters)
	for i := range schedule {
		schedule[i] = due{at: measureStart.Add(time.Duration(rand.Float64() * float64(interval))), i: i}
	}
	for time.Now().Before(end) {
		slices.SortFunc(schedule, func(a, b due) int { return a.at.Compare(b.at) })
		now := time.Now()
		n := 0
		for n < len(schedule) && !schedule[n].at.After(now) {
			queue <- schedule[n].i
			jitter := 0.75 + rand.Float64()*0.5
			schedule[n].at = schedule[n].at.Add(time.Duration(float64(interval) * jitter))
			n++
		}
		time.Sleep(20 * time.Millisecond)
	}
	close(queue)
	wg.Wait()
	elapsed := time.Since(measureStart)
	writesAfter, err := apiWrites(metricsURL)
	if err != nil {
		return err
	}
	slices.Sort(lat)
	n := checkIns.Load()
	hours := elapsed.Hours() * c.compress // the fleet's time
	fmt.Printf("\nRESULT clusters=%d interval=%s compress=%.0fx (stale threshold %s, persist interval: %s) webhook=%v measured %s = %.1f fleet hours\n",
		c.clusters, c.interval, c.compress, stale, orDefault(c.heartbeat, "the manager's default"), c.webhook, elapsed.Round(time.Second), hours)
	fmt.Printf("  registration: %.0f/s, errors %d, API writes per new cluster %.2f\n",
		float64(c.clusters)/registered.Seconds(), regErrors.Load(), float64(regWrites)/float64(c.clusters))
	fmt.Printf("  check-ins: %d, %.0f/s (nominal %.0f/s), p50 %v, p99 %v, errors %d\n", n, float64(n)/elapsed.Seconds(),
		float64(c.clusters)/interval.Seconds(), lat[len(lat)/2], lat[len(lat)*99/100], errs.Load())
	fmt.Printf("  API writes by the manager per check-in: %.3f (%d writes)\n", float64(writesAfter-writesBefore)/float64(n), writesAfter-writesBefore)
	fmt.Printf("  ClusterReport writes per cluster-hour (scaled back): %.2f (%d writes)\n",
		float64(reportWrites.Load())/float64(c.clusters)/hours, reportWrites.Load())
	return nil
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

// apiWrites is the manager's count of non-GET requests to the API server
// (client-go's rest_client_requests_total).
func apiWrites(url string) (int64, error) {
	resp, err := http.Get(url)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var n int64
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "rest_client_requests_total{") {
			continue
		}
		if strings.Contains(line, `method="GET"`) {
			continue
		}
		f := strings.Fields(line)
		v, _ := strconv.ParseFloat(f[len(f)-1], 64)
		n += int64(v)
	}
	return n, sc.Err()
}

// settledWrites waits until the manager's API writes stay the same for 3 s
// (at most 2 minutes) and returns their count.
func settledWrites(url string) (int64, error) {
	last, err := apiWrites(url)
	if err != nil {
		return 0, err
	}
	for deadline := time.Now().Add(2 * time.Minute); time.Now().Before(deadline); {
		time.Sleep(3 * time.Second)
		n, err := apiWrites(url)
		if err != nil {
			return 0, err
		}
		if n == last {
			return n, nil
		}
		last = n
	}
	return last, fmt.Errorf("the manager's writes did not settle within 2 minutes")
}

func waitReady(url string) error {
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if resp, err := http.Get(url + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
	}
	return fmt.Errorf("the bridge did not become ready")
}
