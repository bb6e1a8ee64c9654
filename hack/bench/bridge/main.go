// Command bridge benchmarks the check-in bridge over HTTP on one machine:
// check-ins from N simulated clusters (same components each time) and the
// 3-item multi-get, each compared with a trivial Go JSON handler measured
// in the same run. It prints requests/s, p50 and p99 and the error count.
//
//	make bench-bridge
//	go run ./hack/bench/bridge -clusters 1000 -duration 5s
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	trainyardv1 "github.com/trainyard-dev/trainyard/api/v1alpha1"
	"github.com/trainyard-dev/trainyard/hack/bench/benchenv"
)

type config struct {
	clusters, conns int
	duration        time.Duration
	manager         string
	cpuProfile      string
}

func main() {
	var c config
	flag.IntVar(&c.clusters, "clusters", 10000, "Simulated clusters.")
	flag.IntVar(&c.conns, "connections", 16, "Concurrent connections of the load generator.")
	flag.DurationVar(&c.duration, "duration", 15*time.Second, "How long each measured phase runs.")
	flag.StringVar(&c.manager, "manager", "bin/trainyard", "The manager binary.")
	flag.StringVar(&c.cpuProfile, "cpu-profile", "", "Write the manager's CPU profile of the first multi-get round here.")
	flag.Parse()
	if err := run(c); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run(c config) error {
	ctx := context.Background()

	// The trivial handler first, alone on the machine, as the reference.
	trivial, err := trivialServer()
	if err != nil {
		return err
	}
	ref := load(c, func(i int) request { return request{url: trivial + "/v3/versions/latest", body: []byte(`{"data":[]}`)} })
	fmt.Printf("trivial JSON handler:      %s\n", ref)

	env, err := benchenv.Start(ctx, "bench")
	if err != nil {
		return err
	}
	defer env.Stop()
	// Check-ins carry a registration token, as in the default mode.
	if err := env.Client.Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: "bench", Name: "trainyard-registration"},
		Data:       map[string][]byte{"bench": []byte(benchToken)},
	}); err != nil {
		return err
	}
	addr, err := benchenv.FreeAddr()
	if err != nil {
		return err
	}
	pprofAddr := "0"
	if c.cpuProfile != "" {
		if pprofAddr, err = benchenv.FreeAddr(); err != nil {
			return err
		}
	}
	mgr, err := env.StartManager(c.manager, "--bridge-bind-address", addr, "--bridge-namespace", "bench",
		"--metrics-bind-address", "0", "--health-probe-bind-address", "0", "--pprof-bind-address", pprofAddr,
		// One load generator plays 10,000 clusters from one address: the
		// per-client limit is not what is measured.
		"--bridge-rate-limit=1e9", "--bridge-rate-burst=1000000000",
		"--bridge-tenant-rate-limit=1e9", "--bridge-tenant-rate-burst=1000000000")
	if err != nil {
		return err
	}
	defer benchenv.StopManager(mgr)
	url := "http://" + addr
	if err := waitReady(url); err != nil {
		return err
	}

	for _, comp := range []string{"router", "controller", "registry"} {
		for _, v := range []string{"v1.0.0", "v1.1.0"} {
			if err := env.Client.Create(ctx, &trainyardv1.ComponentRelease{
				ObjectMeta: metav1.ObjectMeta{Namespace: "bench", Name: trainyardv1.ReleaseName(comp, "stable", v)},
				Spec: trainyardv1.ComponentReleaseSpec{Component: comp, Train: "stable", Version: v,
					Released: &metav1.Time{Time: time.Now()}},
			}); err != nil {
				return fmt.Errorf("publishing %s %s: %w", comp, v, err)
			}
		}
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if resp, err := http.Get(url + "/v3/versions/stable/registry/latest"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the trains did not get a latest release")
		}
	}

	// A cluster registers with the registration token at its first
	// check-in, and checks in with the credential it got from then on.
	credentials := make([]string, c.clusters)
	checkin := func(i int) request {
		bearer := benchToken
		if cred := credentials[i%c.clusters]; cred != "" {
			bearer = cred
		}
		return request{url: url + "/v3/clusters", bearer: bearer, body: []byte(fmt.Sprintf(`{"id":"cluster-%05d","components":[`+
			`{"component":{"name":"router","type":"Deployment"},"version":{"train":"stable","version":"v1.0.0"}},`+
			`{"component":{"name":"controller","type":"Deployment"},"version":{"train":"stable","version":"v1.1.0"}},`+
			`{"component":{"name":"registry","type":"Deployment"},"version":{"train":"stable","version":"v1.0.0"}}]}`, i%c.clusters))}
	}
	fmt.Printf("first check-in of %d clusters (registers them: creates the ClusterReports, issues their credentials) ...\n", c.clusters)
	first := drive(c, func(i int) bool { return i < c.clusters }, checkin, func(i int, cred string) { credentials[i%c.clusters] = cred })
	fmt.Printf("first check-ins:           %s\n", first)

	steady := load(c, checkin)
	fmt.Printf("steady-state check-ins:    %s\n", steady)

	// The multi-get against the reference, alternating in rounds beside the
	// running control plane and manager, so that both sides of the ratio
	// share the machine's state; medians of the rounds.
	multi := []byte(`{"data":[{"component":{"name":"router"},"version":{"train":"stable","version":"v1.0.0"}},` +
		`{"component":{"name":"controller"},"version":{"train":"stable"}},{"component":{"name":"registry"}}]}`)
	var refs, mgs []result
	rc := c
	rc.duration = c.duration / 3
	for round := 1; round <= 3; round++ {
		r := load(rc, func(i int) request { return request{url: trivial + "/v3/versions/latest", body: []byte(`{"data":[]}`)} })
		profiled := make(chan error, 1)
		if round == 1 && c.cpuProfile != "" {
			go func() {
				profiled <- benchenv.Fetch(fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", pprofAddr,
					max(1, int(rc.duration.Seconds())-1)), c.cpuProfile)
			}()
		} else {
			profiled <- nil
		}
		m := load(rc, func(int) request { return request{url: url + "/v3/versions/latest", body: multi} })
		if err := <-profiled; err != nil {
			return fmt.Errorf("the CPU profile: %w", err)
		}
		fmt.Printf("round %d: trivial handler %s\n         3-item multi-get %s\n", round, r, m)
		refs, mgs = append(refs, r), append(mgs, m)
	}
	ref, mg := medianOf(refs), medianOf(mgs)
	mgErrors := 0
	for _, m := range mgs {
		mgErrors += m.errors
	}
	mg.errors = mgErrors

	fmt.Printf("\nRESULT clusters=%d connections=%d\n", c.clusters, c.conns)
	fmt.Printf("  steady check-ins: %.0f/s = %.1fx the original service's 230/s (target >= 10x), errors %d\n",
		steady.rate, steady.rate/230, steady.errors)
	fmt.Printf("  multi-get: median %.0f/s = %.0f%% of the trivial handler's median %.0f/s (target >= 50%%), errors %d\n",
		mg.rate, 100*mg.rate/ref.rate, ref.rate, mg.errors)
	return nil
}

// medianOf is the round with the median rate.
func medianOf(rs []result) result {
	s := slices.Clone(rs)
	slices.SortFunc(s, func(a, b result) int {
		switch {
		case a.rate < b.rate:
			return -1
		case a.rate > b.rate:
			return 1
		}
		return 0
	})
	return s[len(s)/2]
}

type result struct {
	n, errors int
	rate      float64
	p50, p99  time.Duration
}

func (r result) String() string {
	return fmt.Sprintf("%6d requests, %7.0f req/s, p50 %v, p99 %v, errors %d", r.n, r.rate, r.p50, r.p99, r.errors)
}

// request is one request of a load: where, what, with which bearer token.
type request struct {
	url    string
	body   []byte
	bearer string
}

// load runs the request for c.duration on c.conns connections.
func load(c config, req func(i int) request) result {
	deadline := time.Now().Add(c.duration)
	return drive(c, func(i int) bool { return time.Now().Before(deadline) }, req, nil)
}

// drive sends requests while more says so; issued (when set) gets the
// credential an answer carries.
func drive(c config, more func(i int) bool, req func(i int) request, issued func(i int, credential string)) result {
	var next atomic.Int64
	var mu sync.Mutex
	var lat []time.Duration
	errs := 0
	start := time.Now()
	var wg sync.WaitGroup
	for range c.conns {
		wg.Go(func() {
			hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1}, Timeout: 30 * time.Second}
			var mine []time.Duration
			bad := 0
			for {
				i := int(next.Add(1)) - 1
				if !more(i) {
					break
				}
				r := req(i)
				t0 := time.Now()
				code, cred, err := postJSON(hc, r)
				if cred != "" && issued != nil {
					issued(i, cred)
				}
				mine = append(mine, time.Since(t0))
				if err != nil || code != http.StatusOK {
					bad++
				}
			}
			mu.Lock()
			lat, errs = append(lat, mine...), errs+bad
			mu.Unlock()
		})
	}
	wg.Wait()
	d := time.Since(start)
	slices.Sort(lat)
	r := result{n: len(lat), errors: errs, rate: float64(len(lat)) / d.Seconds()}
	if len(lat) > 0 {
		r.p50, r.p99 = lat[len(lat)/2], lat[len(lat)*99/100]
	}
	return r
}

// benchToken is the registration token the simulated clusters register with.
const benchToken = "bench-registration-token"

// postJSON sends r and returns the status and the credential the answer
// issued, if any.
func postJSON(hc *http.Client, r request) (int, string, error) {
	req, err := http.NewRequest(http.MethodPost, r.url, bytes.NewReader(r.body))
	if err != nil {
		return 0, "", err
	}
	req.Header.Set("Content-Type", "application/json")
	if r.bearer != "" {
		req.Header.Set("Authorization", "Bearer "+r.bearer)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, resp.Header.Get("X-Trainyard-Credential"), nil
}

// trivialServer answers every request with a small JSON document.
func trivialServer() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	go func() {
		_ = http.Serve(l, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			var v map[string]any
			_ = json.NewDecoder(r.Body).Decode(&v)
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(map[string]any{"data": []any{}})
		}))
	}()
	return "http://" + l.Addr().String(), nil
}

// waitReady waits for the bridge, which starts once the manager's caches
// have synced.
func waitReady(url string) error {
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		resp, err := http.Get(url + "/readyz")
		if err == nil {
			resp.Body.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the bridge did not come up: %w", err)
		}
	}
}
