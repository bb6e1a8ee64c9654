// Command recommend measures how fast the manager recomputes recommended
// upgrade paths after one retraction over a fleet: N clusters run app 1.2.0
// on the graph (1.0–1.4, 2.0–2.3, 2.x from 1.4 up, 2.3 risky below
// Kubernetes 1.29); half of them run Kubernetes 1.28 (path [1.4, 2.2]), half
// 1.30 (path [1.4, 2.3]). Retracting 2.2 moves the first half to
// [1.4, 2.0]; the second half's reports must not be written. The rate is
// compared with the raw rate of the same number of status patches at the
// same concurrency, the limit the API server sets.
//
// What dominates: each affected report's status PATCH (the API server
// writing the report to etcd); the reconciles of the unaffected half are
// cache reads and a CEL evaluation, with no write.
//
//	make bench-recommend
//	go run ./hack/bench/recommend -reports 2000 -rounds 3
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	trainyardv1 "github.com/trainyard-dev/trainyard/api/v1alpha1"
	"github.com/trainyard-dev/trainyard/hack/bench/benchenv"
)

const ns = "fleet"

func main() {
	n := flag.Int("reports", 10000, "ClusterReports in the fleet (half of them affected by the retraction).")
	rounds := flag.Int("rounds", 3, "Retraction rounds (and raw patch rounds); medians are printed.")
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

// affected: the even reports run Kubernetes 1.28.
func affected(i int) bool { return i%2 == 0 }

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

	var v22 *trainyardv1.ComponentRelease
	for _, v := range []string{"1.0.0", "1.1.0", "1.2.0", "1.3.0", "1.4.0", "2.0.0", "2.1.0", "2.2.0", "2.3.0"} {
		r := &trainyardv1.ComponentRelease{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: trainyardv1.ReleaseName("app", "stable", v)},
			Spec: trainyardv1.ComponentReleaseSpec{Component: "app", Train: "stable", Version: v}}
		if v[0] == '2' {
			r.Spec.UpgradeFrom = ">=1.4.0"
		}
		if v == "2.1.0" {
			r.Spec.Retracted = &trainyardv1.Retraction{Reason: "broken migration"}
		}
		if v == "2.3.0" {
			r.Spec.Risks = []trainyardv1.UpgradeRisk{{Name: "old-kubernetes", Message: "needs Kubernetes 1.29",
				Rule: `compareVersions(cluster.properties.kubernetesVersion, "1.29") < 0`}}
		}
		if err := cl.Create(ctx, r); err != nil {
			return err
		}
		if v == "2.2.0" {
			v22 = r
		}
	}

	w := benchenv.NewWatcher(func(r *trainyardv1.ClusterReport) (string, bool) {
		for _, c := range r.Status.Components {
			if c.Name == "app" {
				return strings.Join(c.GetPath(), " "), true
			}
		}
		return "", false
	})
	if err := env.Watch(ctx, ns, w, nil); err != nil {
		return err
	}

	fmt.Printf("creating %d clusters on app 1.2.0 ...\n", n)
	t0 := time.Now()
	var firstErr atomic.Value
	benchenv.Parallel(n, 32, func(i int) {
		k8s := "1.30"
		if affected(i) {
			k8s = "1.28"
		}
		r := &trainyardv1.ClusterReport{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: reportName(i)},
			Spec: trainyardv1.ClusterReportSpec{ClusterID: reportName(i), Properties: map[string]string{"kubernetesVersion": k8s},
				Components: []trainyardv1.ReportedComponent{{Name: "app", Train: "stable", Version: "1.2.0"}}}}
		if err := cl.Create(ctx, r); err != nil {
			firstErr.CompareAndSwap(nil, err)
		}
	})
	if err, _ := firstErr.Load().(error); err != nil {
		return err
	}
	if err := w.Wait(ctx, func(path string) bool { return path != "" }, n, 15*time.Minute); err != nil {
		return err
	}
	fmt.Printf("all %d reports have a path after %s\n", n, time.Since(t0).Round(time.Second))

	want := n / 2
	var rates []float64
	var writes []int
	for round := 1; round <= rounds; round++ {
		// Retract 2.2: the affected half moves to [1.4.0 2.0.0].
		before, err := benchenv.PatchCount(metrics)
		if err != nil {
			return err
		}
		rvs := w.ResourceVersions()
		t := time.Now()
		if err := setRetracted(ctx, cl, v22, true); err != nil {
			return err
		}
		if err := w.Wait(ctx, func(path string) bool { return path == "1.4.0 2.0.0" }, want, 10*time.Minute); err != nil {
			return err
		}
		d := time.Since(t)
		time.Sleep(2 * time.Second) // stragglers (there should be none) land before counting
		after, err := benchenv.PatchCount(metrics)
		if err != nil {
			return err
		}
		moved, unaffectedWritten := w.ChangedSince(rvs, func(name string) bool {
			var i int
			_, _ = fmt.Sscanf(name, "cluster-%05d", &i)
			return affected(i)
		})
		rate := float64(want) / d.Seconds()
		rates, writes = append(rates, rate), append(writes, after-before)
		fmt.Printf("round %d: %d affected reports on [1.4.0 2.0.0] in %s (%.0f reports/s); manager PATCHes: %d; "+
			"reports written: %d affected, %d unaffected\n", round, want, d.Round(time.Millisecond), rate, after-before, moved, unaffectedWritten)
		// Withdraw the retraction (not measured), for the next round.
		if err := setRetracted(ctx, cl, v22, false); err != nil {
			return err
		}
		if err := w.Wait(ctx, func(path string) bool { return path == "1.4.0 2.2.0" }, want, 10*time.Minute); err != nil {
			return err
		}
	}
	benchenv.StopManager(mgr)

	// The limit: the same number of status patches, the same concurrency.
	var raw []float64
	for round := 1; round <= rounds; round++ {
		d, err := rawPatches(ctx, cl, want, workers, round)
		if err != nil {
			return err
		}
		raw = append(raw, float64(want)/d.Seconds())
		fmt.Printf("raw round %d: %d status patches at concurrency %d in %s (%.0f patches/s)\n",
			round, want, workers, d.Round(time.Millisecond), raw[len(raw)-1])
	}
	rec, lim := benchenv.Median(rates), benchenv.Median(raw)
	fmt.Printf("\nRESULT reports=%d affected=%d workers=%d\n", n, want, workers)
	fmt.Printf("  recommendations after one retraction: median %.0f reports/s; raw status patches: median %.0f patches/s; ratio %.0f%% (target >= 80%%)\n",
		rec, lim, 100*rec/lim)
	fmt.Printf("  manager PATCHes per round: %v for %d affected reports (one per affected report, plus the release and its train)\n", writes, want)
	return nil
}

func setRetracted(ctx context.Context, cl client.Client, r *trainyardv1.ComponentRelease, retracted bool) error {
	if err := cl.Get(ctx, client.ObjectKeyFromObject(r), r); err != nil {
		return err
	}
	patch := client.MergeFrom(r.DeepCopy())
	r.Spec.Retracted = nil
	if retracted {
		r.Spec.Retracted = &trainyardv1.Retraction{Reason: "data loss"}
	}
	return cl.Patch(ctx, r, patch)
}

// rawPatches patches n affected reports' status with a payload shaped like
// the controller's (the component with its recommendation).
func rawPatches(ctx context.Context, cl client.Client, n, concurrency, round int) (time.Duration, error) {
	return benchenv.RawStatusPatches(ctx, cl, ns, n, concurrency, func(i int) string { return reportName(2 * i) }, func(int) map[string]any {
		return map[string]any{"components": []map[string]any{{"name": "app", "train": "stable", "installed": "1.2.0",
			"latest": "2.3.0", "state": "UpdateAvailable", "recommended": fmt.Sprintf("2.%d.0", round%3),
			"path": []string{"1.4.0", fmt.Sprintf("2.%d.0", round%3)}}}}
	})
}
