// Command plugin measures `kubectl trainyard outdated` over a fleet: it
// writes N ClusterReports with the status the controller computes (eight components each; in -behind percent of the
// clusters about a third of them are behind, one cluster in fifty on a
// retracted release; the rest run every train's latest) into a real control
// plane, then runs the plugin binary
// as a user does and prints the median wall time, beside what dominates it:
// the list's bytes alone (in pages, as the plugin asks, and in one
// request), kubectl's paged list decoded in this process, and the binary's
// start-up (`version`); and the plugin with larger pages, one request, and
// without compression.
//
// The reports are stored as the system stores them: without managedFields
// (the report webhook clears them at creation); `outdated` selects on their
// status summary's counts (the CRD's selectable fields). -legacy stores
// them with managedFields kept, as before issue 32.
//
//	make bench-plugin
//	go run ./hack/bench/plugin -reports 2000 -runs 3
//	go run ./hack/bench/plugin -behind 100   # right after new releases: nearly every cluster behind
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	neturl "net/url"
	"os"
	"os/exec"
	"slices"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	trainyardv1 "github.com/trainyard-dev/trainyard/api/v1alpha1"
	"github.com/trainyard-dev/trainyard/hack/bench/benchenv"
)

const ns = "fleet"

func main() {
	n := flag.Int("reports", 10000, "ClusterReports in the fleet.")
	runs := flag.Int("runs", 7, "Runs of each measurement to take the median of.")
	binary := flag.String("plugin", "bin/kubectl-trainyard", "The plugin binary (make build).")
	flag.IntVar(&behindPercent, "behind", 10, "Percent of the clusters that run something older than its train's latest (the rest are current).")
	flag.BoolVar(&legacy, "legacy", false, "Store the reports with managedFields kept, as before issue 32.")
	flag.BoolVar(&withCBOR, "cbor", false, "Turn on the API server's CBORServingAndStorage (alpha in Kubernetes 1.37) and also time the list's bytes alone in CBOR.")
	flag.Parse()
	if withCBOR {
		_ = os.Setenv("TRAINYARD_BENCH_FEATURE_GATES", "CBORServingAndStorage=true")
	}
	if err := run(*n, *runs, *binary); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

var (
	behindPercent int
	legacy        bool
	withCBOR      bool
)

// components of every cluster; the versions each train has, oldest first.
var components = []string{"router", "controller", "registry", "builder", "logger", "monitor", "database", "cache"}
var versions = []string{"v1.0.0", "v1.1.0", "v1.1.1", "v1.2.0"}

func run(n, runs int, binary string) error {
	ctx := context.Background()
	env, err := benchenv.Start(ctx, ns)
	if err != nil {
		return err
	}
	defer env.Stop()
	c := env.Client
	released := metav1.NewTime(time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC))
	for _, comp := range components {
		t := &trainyardv1.ReleaseTrain{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: trainyardv1.TrainName(comp, "stable")},
			Spec: trainyardv1.ReleaseTrainSpec{Component: comp, Train: "stable"}}
		if err := c.Create(ctx, t); err != nil {
			return err
		}
		latest := versions[len(versions)-1]
		t.Status.Latest = &trainyardv1.ReleaseRef{Version: latest, Released: &released, Name: trainyardv1.ReleaseName(comp, "stable", latest)}
		if err := c.Status().Update(ctx, t); err != nil {
			return err
		}
		for i, ver := range versions {
			r := &trainyardv1.ComponentRelease{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: trainyardv1.ReleaseName(comp, "stable", ver)},
				Spec: trainyardv1.ComponentReleaseSpec{Component: comp, Train: "stable", Version: ver, Released: &released}}
			if i == 1 {
				r.Spec.Retracted = &trainyardv1.Retraction{Reason: "a bad release"}
			}
			if err := c.Create(ctx, r); err != nil {
				return err
			}
		}
	}

	fmt.Printf("writing %d ClusterReports with their status (%d%% behind, legacy %v) ...\n", n, behindPercent, legacy)
	start := time.Now()
	errs := make(chan error, 1)
	benchenv.Parallel(n, 32, func(i int) {
		if err := writeReport(ctx, c, i); err != nil {
			select {
			case errs <- err:
			default:
			}
		}
	})
	select {
	case err := <-errs:
		return err
	default:
	}
	fmt.Printf("  %s\n", time.Since(start).Round(time.Second))

	kc, err := env.Kubeconfig()
	if err != nil {
		return err
	}
	plugin := func(args ...string) (time.Duration, string, int, error) {
		cmd := exec.Command(binary, append(args, "--kubeconfig", kc, "-n", ns)...)
		var out, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &stderr
		t0 := time.Now()
		err := cmd.Run()
		d := time.Since(t0)
		code := 0
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			code, err = exit.ExitCode(), nil
		}
		if err != nil || code == 3 {
			return 0, "", code, fmt.Errorf("%s %s: %v %s", binary, strings.Join(args, " "), err, stderr.String())
		}
		return d, out.String(), code, nil
	}

	var table, asJSON, plain, big, whole, startup, list []time.Duration
	var rows, code int
	for range runs {
		d, out, exit, err := plugin("outdated")
		if err != nil {
			return err
		}
		table, rows, code = append(table, d), strings.Count(out, "\n")-1, exit
		if d, _, _, err = plugin("outdated", "-o", "json"); err != nil {
			return err
		}
		asJSON = append(asJSON, d)
		// kubectl's --disable-compression: the API server gzips a large
		// list for a client that accepts it, which on a fast link is CPU
		// spent for nothing.
		if d, _, _, err = plugin("outdated", "--disable-compression"); err != nil {
			return err
		}
		plain = append(plain, d)
		if d, _, _, err = plugin("outdated", "--chunk-size", "2000"); err != nil {
			return err
		}
		big = append(big, d)
		if d, _, _, err = plugin("outdated", "--chunk-size", "0"); err != nil {
			return err
		}
		whole = append(whole, d)
		if d, _, _, err = plugin("version"); err != nil {
			return err
		}
		startup = append(startup, d)
		t0 := time.Now()
		got := 0
		l := &trainyardv1.ClusterReportList{}
		for cont := ""; ; {
			if err := c.List(ctx, l, client.InNamespace(ns), client.Limit(500), client.Continue(cont)); err != nil {
				return err
			}
			got += len(l.Items)
			if cont = l.Continue; cont == "" {
				break
			}
		}
		list = append(list, time.Since(t0))
		if got != n {
			return fmt.Errorf("listed %d reports, wrote %d", got, n)
		}
	}
	// Where the list's time goes: the same pages as bytes only (the API
	// server's encoding and the transfer), and one unpaged list.
	hc, err := rest.HTTPClientFor(env.Config)
	if err != nil {
		return err
	}
	plainCfg := rest.CopyConfig(env.Config)
	plainCfg.DisableCompression = true
	hcPlain, err := rest.HTTPClientFor(plainCfg)
	if err != nil {
		return err
	}
	url := strings.TrimSuffix(env.Config.Host, "/") + "/apis/trainyard.dev/v1alpha1/namespaces/" + ns + "/clusterreports"
	var raw, rawAll, rawPlain, rawCBOR []time.Duration
	var bytesPerReport, cborPerReport int
	for range runs {
		t0 := time.Now()
		total := 0
		for cont := ""; ; {
			body, err := get(hc, url+"?limit=500&continue="+neturl.QueryEscape(cont))
			if err != nil {
				return err
			}
			total += len(body)
			var page struct {
				Metadata struct{ Continue string }
			}
			if err := json.Unmarshal(body, &page); err != nil {
				return err
			}
			if cont = page.Metadata.Continue; cont == "" {
				break
			}
		}
		raw = append(raw, time.Since(t0))
		bytesPerReport = total / n
		t0 = time.Now()
		if _, err := get(hc, url); err != nil {
			return err
		}
		rawAll = append(rawAll, time.Since(t0))
		t0 = time.Now()
		if _, err := get(hcPlain, url); err != nil {
			return err
		}
		rawPlain = append(rawPlain, time.Since(t0))
		if withCBOR {
			t0 = time.Now()
			body, err := getAs(hc, url, "application/cbor")
			if err != nil {
				return err
			}
			rawCBOR = append(rawCBOR, time.Since(t0))
			cborPerReport = len(body) / n
		}
	}

	fmt.Printf("\nkubectl trainyard outdated over %d ClusterReports (%d components each, %d%% of the clusters behind), %d runs, medians:\n",
		n, len(components), behindPercent, runs)
	fmt.Printf("  outdated (table)           %8s   %d rows, exit code %d (target < 1s, and at most half the unpaged bytes alone: %.2f)\n",
		median(table), rows, code, float64(median(table))/float64(median(rawAll)))
	fmt.Printf("  outdated -o json           %8s\n", median(asJSON))
	fmt.Printf("  outdated --chunk-size 2000 %8s\n", median(big))
	fmt.Printf("  outdated --chunk-size 0    %8s   (one request: nothing to decode alongside)\n", median(whole))
	fmt.Printf("  outdated, uncompressed     %8s   (--disable-compression: %.2f of the compressed run)\n", median(plain),
		float64(median(plain))/float64(median(table)))
	fmt.Printf("  kubectl's way to list them %8s   (pages of 500, each decoded before the next is asked for; in this process)\n", median(list))
	fmt.Printf("  the bytes alone, paged     %8s   (%d bytes per report; what the plugin asks for, and decodes alongside)\n", median(raw), bytesPerReport)
	fmt.Printf("  the bytes alone, unpaged   %8s   (the API server's encoding and the transfer: %.0f%% of the table run)\n",
		median(rawAll), 100*float64(median(rawAll))/float64(median(table)))
	fmt.Printf("  the bytes alone, unpaged, uncompressed %s\n", median(rawPlain))
	if withCBOR {
		fmt.Printf("  the bytes alone, unpaged, CBOR %8s   (%d bytes per report; %.2f of JSON's)\n", median(rawCBOR), cborPerReport,
			float64(median(rawCBOR))/float64(median(rawAll)))
	}
	fmt.Printf("  the binary's start-up      %8s   (`version`)\n", median(startup))
	return nil
}

// writeReport writes cluster i's report and the status the controller
// would compute: component j runs versions[(i+j)%4] (v1.1.0 is retracted).
func writeReport(ctx context.Context, c client.Client, i int) error {
	id := fmt.Sprintf("cluster-%05d", i)
	r := &trainyardv1.ClusterReport{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: id},
		Spec: trainyardv1.ClusterReportSpec{ClusterID: id, Properties: map[string]string{"provider": "gke", "kubernetesVersion": "v1.37.2"}}}
	sum := &trainyardv1.ComponentSummary{}
	var status []trainyardv1.ComponentStatus
	behind := i%100 < behindPercent
	for j, comp := range components {
		ver := versions[(i/7+j)%len(versions)]
		if i%50 != 0 && ver == versions[1] {
			ver = versions[len(versions)-1] // one cluster in fifty runs the retracted release
		}
		if !behind {
			ver = versions[len(versions)-1]
		}
		r.Spec.Components = append(r.Spec.Components, trainyardv1.ReportedComponent{Name: comp, Train: "stable", Version: ver, Type: "Deployment",
			Image: "registry.example.com/" + comp + ":" + ver})
		st := trainyardv1.ComponentStatus{Name: comp, Installed: ver, Latest: versions[len(versions)-1], State: trainyardv1.StateUpdateAvailable}
		sum.Total++
		switch ver {
		case versions[len(versions)-1]:
			st.State = trainyardv1.StateUpToDate
			sum.UpToDate++
		case versions[1]:
			st.State = trainyardv1.StateRetracted
			sum.Retracted++
		default:
			sum.UpdateAvailable++
		}
		status = append(status, st)
	}
	if err := c.Create(ctx, r); err != nil {
		return err
	}
	now := metav1.NewTime(time.Now().Truncate(time.Second))
	r.Status = trainyardv1.ClusterReportStatus{ObservedGeneration: r.Generation, FirstSeen: &now, LastSeen: &now, CheckIns: 1,
		Components: status, Summary: sum}
	if legacy {
		// As the controller stored a report before issue 32: Stale=False
		// on every report, every component's latest and since.
		r.Status.Conditions = []metav1.Condition{{Type: trainyardv1.ConditionStale, Status: metav1.ConditionFalse,
			Reason: "CheckedIn", Message: "checked in within the stale threshold (25h0m0s)", LastTransitionTime: now}}
		for i := range status {
			status[i].Since = &now
		}
	} else {
		for i := range status {
			status[i].OmitDerived(&now) // as the controller stores it
		}
	}
	if err := c.Status().Update(ctx, r); err != nil || legacy {
		return err
	}
	// What the report webhook does at creation: no managedFields, and so
	// none tracked by the writes after.
	return c.Patch(ctx, r, client.RawPatch(types.MergePatchType, []byte(`{"metadata":{"managedFields":[{}]}}`)))
}

func get(hc *http.Client, url string) ([]byte, error) { return getAs(hc, url, "") }

// getAs GETs url accepting the content type (JSON when empty), and checks
// the API server answered in it.
func getAs(hc *http.Client, url, accept string) ([]byte, error) {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	if ct := resp.Header.Get("Content-Type"); accept != "" && !strings.HasPrefix(ct, accept) {
		resp.Body.Close()
		return nil, fmt.Errorf("GET %s as %s: answered %s", url, accept, ct)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return io.ReadAll(resp.Body)
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2].Round(time.Millisecond)
}
