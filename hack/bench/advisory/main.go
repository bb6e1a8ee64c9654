// Command advisory measures how fast a new Advisory's exposure is computed
// and written over a fleet (issue 30's target: under 10 s at 10,000
// clusters), and that only the exposed clusters' reports are written.
//
// The fleet follows its train as fleets do: of N clusters running app,
// 5 % run 1.0.0, 10 % 1.1.0, 15 % 1.2.0, 30 % 1.2.1 and 40 % 1.3.0 (the
// latest). Each round creates a new advisory (introduced 1.0.0, fixed
// 1.2.1): the 30 % below 1.2.1 are exposed. The round measures, from the
// advisory's creation, when its status counts every exposed cluster and
// when every exposed report lists it (with its recommendation moved to the
// nearest fix, 1.2.1); then it withdraws the advisory (not measured) and
// waits for the reports to clear.
//
// What dominates: the exposed reports' status PATCHes (one each; the API
// server writing them to etcd), bounded by the report workers; the
// advisory's own count is one pass over the cache's index of the
// component's reports and one PATCH. The raw rate of the same number of
// status patches at the same concurrency is printed beside it.
//
//	make bench-advisory
//	go run ./hack/bench/advisory -reports 2000 -rounds 3
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
	n := flag.Int("reports", 10000, "ClusterReports in the fleet (30 % of them exposed).")
	rounds := flag.Int("rounds", 3, "Advisory rounds (and raw patch rounds); medians are printed.")
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

// versionOf is cluster i's version: the fleet's spread, by i mod 20.
func versionOf(i int) string {
	switch m := i % 20; {
	case m < 1:
		return "1.0.0"
	case m < 3:
		return "1.1.0"
	case m < 6:
		return "1.2.0"
	case m < 12:
		return "1.2.1"
	}
	return "1.3.0"
}

func exposed(name string) bool {
	var i int
	_, _ = fmt.Sscanf(name, "cluster-%05d", &i)
	return versionOf(i) < "1.2.1"
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

	for _, v := range []string{"1.0.0", "1.1.0", "1.2.0", "1.2.1", "1.3.0"} {
		r := &trainyardv1.ComponentRelease{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: trainyardv1.ReleaseName("app", "stable", v)},
			Spec: trainyardv1.ComponentReleaseSpec{Component: "app", Train: "stable", Version: v}}
		if err := cl.Create(ctx, r); err != nil {
			return err
		}
	}

	// A report's value: its app state, recommendation and advisories.
	w := benchenv.NewWatcher(func(r *trainyardv1.ClusterReport) (string, bool) {
		for _, c := range r.Status.Components {
			if c.Name == "app" {
				var ids []string
				for _, a := range c.GetAdvisories() {
					ids = append(ids, a.ID)
				}
				return fmt.Sprintf("%s %s [%s]", c.State, c.Recommended, strings.Join(ids, ",")), true
			}
		}
		return "", false
	})
	if err := env.Watch(ctx, ns, w, nil); err != nil {
		return err
	}

	fmt.Printf("creating %d clusters on app 1.0.0 to 1.3.0 ...\n", n)
	t0 := time.Now()
	var firstErr atomic.Value
	want := 0
	for i := range n {
		if exposed(reportName(i)) {
			want++
		}
	}
	benchenv.Parallel(n, 32, func(i int) {
		r := &trainyardv1.ClusterReport{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: reportName(i)},
			Spec: trainyardv1.ClusterReportSpec{ClusterID: reportName(i),
				Components: []trainyardv1.ReportedComponent{{Name: "app", Train: "stable", Version: versionOf(i)}}}}
		if err := cl.Create(ctx, r); err != nil {
			firstErr.CompareAndSwap(nil, err)
		}
	})
	if err, _ := firstErr.Load().(error); err != nil {
		return err
	}
	if err := w.Wait(ctx, func(v string) bool {
		return strings.HasPrefix(v, "UpToDate") || strings.HasPrefix(v, "UpdateAvailable 1.3.0")
	}, n, 15*time.Minute); err != nil {
		return err
	}
	fmt.Printf("all %d reports computed after %s; %d of them run a version below 1.2.1\n", n, time.Since(t0).Round(time.Second), want)

	var counted, listed []float64
	var writes []int
	for round := 1; round <= rounds; round++ {
		id := fmt.Sprintf("GHSA-bench-%04d-0000", round)
		before, err := benchenv.PatchCount(metrics)
		if err != nil {
			return err
		}
		rvs := w.ResourceVersions()
		adv := &trainyardv1.Advisory{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: strings.ToLower(id)},
			Spec: trainyardv1.AdvisorySpec{ID: id, Summary: "bench",
				Affected: []trainyardv1.AffectedComponent{{Component: "app", Ranges: []trainyardv1.AffectedRange{{Type: "SEMVER",
					Events: []trainyardv1.RangeEvent{{Introduced: "1.0.0"}, {Fixed: "1.2.1"}}}}}}}}
		t := time.Now()
		if err := cl.Create(ctx, adv); err != nil {
			return err
		}
		// The advisory's count, polled (one object) while the reports are watched.
		countDone := make(chan time.Duration, 1)
		go func() {
			for ctx.Err() == nil {
				a := &trainyardv1.Advisory{}
				if err := cl.Get(ctx, client.ObjectKeyFromObject(adv), a); err == nil && a.Status.Exposed != nil && int(a.Status.Exposed.Clusters) == want {
					countDone <- time.Since(t)
					return
				}
				time.Sleep(20 * time.Millisecond)
			}
		}()
		listedBy := "UpdateAvailable 1.2.1 [" + id + "]"
		if err := w.Wait(ctx, func(v string) bool { return v == listedBy }, want, 5*time.Minute); err != nil {
			return err
		}
		dl := time.Since(t)
		var dc time.Duration
		select {
		case dc = <-countDone:
		case <-time.After(5 * time.Minute):
			return fmt.Errorf("the advisory's status never counted %d exposed clusters", want)
		}
		time.Sleep(2 * time.Second) // stragglers (there should be none) land before counting
		after, err := benchenv.PatchCount(metrics)
		if err != nil {
			return err
		}
		in, out := w.ChangedSince(rvs, exposed)
		counted, listed, writes = append(counted, dc.Seconds()), append(listed, dl.Seconds()), append(writes, after-before)
		fmt.Printf("round %d: status.exposed counts %d clusters after %s; all %d exposed reports list it after %s (%.0f reports/s); "+
			"manager PATCHes: %d; reports written: %d exposed, %d others\n",
			round, want, dc.Round(time.Millisecond), want, dl.Round(time.Millisecond), float64(want)/dl.Seconds(), after-before, in, out)

		// Withdrawn (not measured): the reports clear before the next round.
		if err := cl.Get(ctx, client.ObjectKeyFromObject(adv), adv); err != nil {
			return err
		}
		patch := client.MergeFrom(adv.DeepCopy())
		adv.Spec.Withdrawn = &metav1.Time{Time: time.Now()}
		if err := cl.Patch(ctx, adv, patch); err != nil {
			return err
		}
		if err := w.Wait(ctx, func(v string) bool { return !strings.Contains(v, id) }, n, 5*time.Minute); err != nil {
			return err
		}
	}
	benchenv.StopManager(mgr)

	var raw []float64
	exposedNames := make([]string, 0, want)
	for i := range n {
		if exposed(reportName(i)) {
			exposedNames = append(exposedNames, reportName(i))
		}
	}
	for round := 1; round <= rounds; round++ {
		d, err := benchenv.RawStatusPatches(ctx, cl, ns, want, workers, func(i int) string { return exposedNames[i] }, func(i int) map[string]any {
			return map[string]any{"components": []map[string]any{{"name": "app", "train": "stable", "installed": "1.0.0",
				"latest": "1.3.0", "state": "UpdateAvailable", "recommended": "1.2.1", "path": []string{"1.2.1"},
				"advisories": []map[string]any{{"id": fmt.Sprintf("GHSA-raw-%d", round), "since": "2026-12-04T00:00:00Z"}}}}}
		})
		if err != nil {
			return err
		}
		raw = append(raw, d.Seconds())
		fmt.Printf("raw round %d: %d status patches at concurrency %d in %s (%.0f patches/s)\n",
			round, want, workers, d.Round(time.Millisecond), float64(want)/d.Seconds())
	}
	fmt.Printf("\nRESULT reports=%d exposed=%d workers=%d\n", n, want, workers)
	fmt.Printf("  a new advisory: status.exposed written after median %.2f s; every exposed report lists it after median %.2f s (target < 10 s)\n",
		benchenv.Median(counted), benchenv.Median(listed))
	fmt.Printf("  the same %d status patches, raw: median %.2f s (the API server's limit at this concurrency)\n", want, benchenv.Median(raw))
	fmt.Printf("  manager PATCHes per round: %v for %d exposed reports (one per exposed report, plus the advisory's status and its train's releases)\n", writes, want)
	return nil
}
