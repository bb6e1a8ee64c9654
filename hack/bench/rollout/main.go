// Command rollout measures how fast a rollout ring's opening reaches its
// clusters' reports: N clusters in three rings (1 % canary, half early, the
// rest everyone, which waits for an approval and never opens here). Each
// round publishes a new release: the canary ring opens at once; half of the
// canaries then report running it, ready (as their agents would), which
// opens the early ring. The figure is how fast the early ring's reports get
// the release as their recommendation, from the ring's opening (and how
// long the gate took from the last canary's check-in), against the raw rate of the same number of status patches at the same
// concurrency (the API server's limit). No report outside the ring may be
// written meanwhile.
//
// What dominates: each early report's status PATCH (heldBack removed,
// recommended set), the API server writing it to etcd; the rollout
// controller's evaluation (one pass over the train's followers per change)
// and the reconciles of the early reports are cache reads.
//
//	make bench-rollout
//	go run ./hack/bench/rollout -reports 2000 -rounds 3
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	trainyardv1 "github.com/trainyard-dev/trainyard/api/v1alpha1"
	"github.com/trainyard-dev/trainyard/hack/bench/benchenv"
)

const ns = "fleet"

func main() {
	n := flag.Int("reports", 10000, "ClusterReports in the fleet: 1% canary, half early, the rest everyone.")
	rounds := flag.Int("rounds", 3, "Releases rolled out (and raw patch rounds); medians are printed.")
	workers := flag.Int("report-workers", 16, "The manager's --report-workers (the chart's default), and the raw loop's concurrency.")
	manager := flag.String("manager", "bin/trainyard", "The manager binary (make build).")
	flag.Parse()
	log.SetLogger(logr.Discard())
	if err := run(*n, *rounds, *workers, *manager); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func reportName(i int) string { return fmt.Sprintf("cluster-%05d", i) }

// ringOf places cluster i: the first 1 % canary, the next half early.
func ringOf(i, n int) string {
	switch canaries := max(n/100, 2); {
	case i < canaries:
		return "canary"
	case i < canaries+n/2:
		return "early"
	}
	return "everyone"
}

func run(n, rounds, workers int, binary string) error {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	env, err := benchenv.Start(ctx, ns)
	if err != nil {
		return err
	}
	defer env.Stop()
	cl := env.Client

	mgr, metrics, err := env.StartReportManager(binary, workers)
	if err != nil {
		return err
	}
	defer benchenv.StopManager(mgr)

	if err := publish(ctx, cl, "1.0.0"); err != nil {
		return err
	}
	// Each report's key: its ring, recommended and held-back versions.
	w := benchenv.NewWatcher(func(r *trainyardv1.ClusterReport) (string, bool) {
		for _, c := range r.Status.Components {
			if c.Name == "app" {
				held := "-"
				if c.GetHeldBack() != nil {
					held = c.GetHeldBack().Version
				}
				return fmt.Sprintf("%s %s %s", r.Labels["ring"], or(c.Recommended, "-"), held), true
			}
		}
		return "", false
	})
	if err := env.Watch(ctx, ns, w, nil); err != nil {
		return err
	}
	fmt.Printf("creating %d clusters on app 1.0.0 in three rings ...\n", n)
	t0 := time.Now()
	var firstErr atomic.Value
	benchenv.Parallel(n, 32, func(i int) {
		r := &trainyardv1.ClusterReport{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: reportName(i), Labels: map[string]string{"ring": ringOf(i, n)}},
			Spec: trainyardv1.ClusterReportSpec{ClusterID: reportName(i), Components: []trainyardv1.ReportedComponent{app("1.0.0")}}}
		if err := cl.Create(ctx, r); err != nil {
			firstErr.CompareAndSwap(nil, err)
		}
	})
	if err, _ := firstErr.Load().(error); err != nil {
		return err
	}
	if err := w.Wait(ctx, func(string) bool { return true }, n, 15*time.Minute); err != nil {
		return err
	}
	fmt.Printf("all %d reports have a status after %s\n", n, time.Since(t0).Round(time.Second))
	if err := configure(ctx, cl); err != nil {
		return err
	}

	early, canaries := 0, 0
	for i := range n {
		switch ringOf(i, n) {
		case "early":
			early++
		case "canary":
			canaries++
		}
	}
	var rates, gates []float64
	var writes []int
	for round := 1; round <= rounds; round++ {
		v := fmt.Sprintf("1.%d.0", round)
		if err := publish(ctx, cl, v); err != nil {
			return err
		}
		// The canary opens at once; the others hold v back.
		if err := w.Wait(ctx, func(k string) bool { return k == "canary "+v+" -" }, canaries, 10*time.Minute); err != nil {
			return fmt.Errorf("canary: %w", err)
		}
		if err := w.Wait(ctx, func(k string) bool { return strings.HasSuffix(k, " "+v) }, n-canaries, 10*time.Minute); err != nil {
			return fmt.Errorf("held back: %w", err)
		}
		time.Sleep(2 * time.Second) // the last holds land before the snapshot
		before, err := benchenv.PatchCount(metrics)
		if err != nil {
			return err
		}
		rvs := w.ResourceVersions()
		recBefore := reconciles(metrics)
		// Half the canaries run it, ready: the early ring's gate (50 %).
		var t time.Time
		benchenv.Parallel(canaries/2, 8, func(i int) {
			r := &trainyardv1.ClusterReport{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: reportName(i)}}
			body, _ := json.Marshal(map[string]any{"spec": map[string]any{"components": []trainyardv1.ReportedComponent{app(v)}}})
			if err := cl.Patch(ctx, r, client.RawPatch(types.MergePatchType, body)); err != nil {
				firstErr.CompareAndSwap(nil, err)
			}
		})
		t = time.Now()
		if err, _ := firstErr.Load().(error); err != nil {
			return err
		}
		// The ring opens (the rollout's status write), then reaches its reports.
		opened, err := ringOpened(ctx, cl, "early", v)
		if err != nil {
			return err
		}
		if err := w.Wait(ctx, func(k string) bool { return k == "early "+v+" -" }, early, 10*time.Minute); err != nil {
			return fmt.Errorf("early: %w", err)
		}
		d := time.Since(opened)
		arr := w.Arrivals(func(k string) bool { return k == "early "+v+" -" })
		q := func(f float64) string {
			return arr[min(len(arr)-1, int(f*float64(len(arr))))].Sub(opened).Round(100 * time.Millisecond).String()
		}
		fmt.Printf("round %d: early reports reached from the opening: first %s, 10%% %s, 50%% %s, 90%% %s, 99%% %s, last %s\n",
			round, q(0), q(0.1), q(0.5), q(0.9), q(0.99), q(1))
		gates = append(gates, opened.Sub(t).Seconds())
		time.Sleep(2 * time.Second) // stragglers (there should be none) land before counting
		after, err := benchenv.PatchCount(metrics)
		if err != nil {
			return err
		}
		recAfter := reconciles(metrics)
		var recs []string
		for _, c := range []string{"clusterreport", "releasetrain", "rollout", "promotion"} {
			recs = append(recs, fmt.Sprintf("%s %d", c, int(recAfter[c]-recBefore[c])))
		}
		fmt.Printf("round %d: reconciles meanwhile: %s\n", round, strings.Join(recs, ", "))
		inside, outside := w.ChangedSince(rvs, func(name string) bool {
			var i int
			_, _ = fmt.Sscanf(name, "cluster-%05d", &i)
			return ringOf(i, n) == "early" || i < canaries/2
		})
		rate := float64(early) / d.Seconds()
		rates, writes = append(rates, rate), append(writes, after-before)
		fmt.Printf("round %d: ring early opened %s %.1fs after the last canary's check-in, then reached its %d clusters in %s (%.0f reports/s); "+
			"manager PATCHes: %d; reports written: %d in the ring and the moved canaries, %d outside\n",
			round, v, gates[len(gates)-1], early, d.Round(time.Millisecond), rate, after-before, inside, outside)
	}
	benchenv.StopManager(mgr)

	var raw []float64
	for round := 1; round <= rounds; round++ {
		d, err := rawPatches(ctx, cl, n, early, workers, round)
		if err != nil {
			return err
		}
		raw = append(raw, float64(early)/d.Seconds())
		fmt.Printf("raw round %d: %d status patches at concurrency %d in %s (%.0f patches/s)\n",
			round, early, workers, d.Round(time.Millisecond), raw[len(raw)-1])
	}
	got, lim := benchenv.Median(rates), benchenv.Median(raw)
	fmt.Printf("\nRESULT reports=%d canary=%d early=%d workers=%d\n", n, canaries, early, workers)
	fmt.Printf("  opening ring early: median %.0f reports/s from its opening; raw status patches: median %.0f patches/s; ratio %.0f%% (target >= 80%%)\n",
		got, lim, 100*got/lim)
	fmt.Printf("  the gate: the ring opened a median %.1fs after the last canary's check-in (its report's write, the rollout's evaluation and status write)\n",
		benchenv.Median(gates))
	fmt.Printf("  manager PATCHes per round: %v for %d early reports (one per report, the moved canaries' and the train's status)\n", writes, early)
	return nil
}

// reconciles is each controller's reconcile count so far.
func reconciles(metrics string) map[string]float64 {
	m := map[string]float64{}
	for _, c := range []string{"clusterreport", "releasetrain", "rollout", "promotion"} {
		m[c], _ = benchenv.Scrape(metrics, "controller_runtime_reconcile_total{", `controller="`+c+`"`)
	}
	return m
}

// ringOpened polls the train until ring has opened version, and says when
// it saw it.
func ringOpened(ctx context.Context, cl client.Client, ring, version string) (time.Time, error) {
	t := &trainyardv1.ReleaseTrain{}
	for deadline := time.Now().Add(5 * time.Minute); ; time.Sleep(20 * time.Millisecond) {
		if err := cl.Get(ctx, client.ObjectKey{Namespace: ns, Name: "app.stable"}, t); err == nil && t.Status.Rollout != nil {
			for _, r := range t.Status.Rollout.Rings {
				if r.Name == ring && r.Version == version {
					return time.Now(), nil
				}
			}
		}
		if time.Now().After(deadline) {
			return time.Time{}, fmt.Errorf("ring %s did not open %s", ring, version)
		}
	}
}

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func app(v string) trainyardv1.ReportedComponent {
	return trainyardv1.ReportedComponent{Name: "app", Train: "stable", Version: v,
		Readiness: &trainyardv1.WorkloadReadiness{Ready: 3, Desired: 3}}
}

func publish(ctx context.Context, cl client.Client, v string) error {
	return cl.Create(ctx, &trainyardv1.ComponentRelease{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: trainyardv1.ReleaseName("app", "stable", v)},
		Spec: trainyardv1.ComponentReleaseSpec{Component: "app", Train: "stable", Version: v}})
}

// configure gives the train its rings once it has a latest (the baseline).
func configure(ctx context.Context, cl client.Client) error {
	t := &trainyardv1.ReleaseTrain{}
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(100 * time.Millisecond) {
		if err := cl.Get(ctx, client.ObjectKey{Namespace: ns, Name: "app.stable"}, t); err == nil && t.Status.Latest != nil {
			break
		} else if time.Now().After(deadline) {
			return fmt.Errorf("the train has no latest: %v", err)
		}
	}
	patch := client.MergeFrom(t.DeepCopy())
	t.Spec.Rollout = &trainyardv1.RolloutPolicy{Rings: []trainyardv1.Ring{
		{Name: "canary", ClusterSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"ring": "canary"}}},
		{Name: "early", ClusterSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"ring": "early"}},
			After: &trainyardv1.RingGate{MinReportingPercent: 50}},
		{Name: "everyone", After: &trainyardv1.RingGate{MinReportingPercent: 90, Approval: true}},
	}}
	if err := cl.Patch(ctx, t, patch); err != nil {
		return err
	}
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(100 * time.Millisecond) {
		if err := cl.Get(ctx, client.ObjectKey{Namespace: ns, Name: "app.stable"}, t); err == nil &&
			t.Status.Rollout != nil && t.Status.Rollout.Phase == trainyardv1.RolloutComplete {
			return nil
		} else if time.Now().After(deadline) {
			return fmt.Errorf("the rollout has no baseline: %v", err)
		}
	}
}

// rawPatches patches early reports' status with a payload shaped like the
// controller's (the component, recommended, no longer held back).
func rawPatches(ctx context.Context, cl client.Client, n, count, concurrency, round int) (time.Duration, error) {
	first := max(n/100, 2)
	v := fmt.Sprintf("1.%d.0", 10+round)
	return benchenv.RawStatusPatches(ctx, cl, ns, count, concurrency, func(i int) string { return reportName(first + i) }, func(int) map[string]any {
		return map[string]any{"components": []map[string]any{{"name": "app", "train": "stable", "installed": "1.0.0",
			"latest": v, "state": "UpdateAvailable", "recommended": v, "path": []string{v}, "ring": "early", "heldBack": nil}}}
	})
}
