package plugin_test

import (
	"bytes"
	"context"
	"flag"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	trainyardv1 "github.com/trainyard-dev/trainyard/api/v1alpha1"
	"github.com/trainyard-dev/trainyard/internal/manager"
	"github.com/trainyard-dev/trainyard/internal/testenv"
	"github.com/trainyard-dev/trainyard/plugin"
)

// update rewrites the golden files: go test ./plugin -args -update
var update = flag.Bool("update", false, "rewrite testdata/*.golden from the output")

func TestPlugin(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "kubectl trainyard")
}

var (
	env        *envtest.Environment
	k8sClient  client.Client
	kubeconfig string
	scheme     = runtime.NewScheme()
	// now is the plugin's clock in every spec: ages in the golden files
	// are against it.
	now = time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
)

var _ = BeforeSuite(func() {
	Expect(clientgoscheme.AddToScheme(scheme)).To(Succeed())
	Expect(trainyardv1.AddToScheme(scheme)).To(Succeed())
	env = testenv.New()
	// Writes go through the admission webhook, as in `make dev` and the
	// chart: publish and retract are tested against its answers.
	env.WebhookInstallOptions = testenv.WebhookOptions()
	cfg, err := testenv.Start(env)
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(func() { Expect(env.Stop()).To(Succeed()) })
	k8sClient, err = client.New(cfg, client.Options{Scheme: scheme})
	Expect(err).NotTo(HaveOccurred())
	_, stop, err := testenv.StartManager(cfg, testenv.Manager{Scheme: scheme, Cache: manager.CacheOptions(),
		Webhook: &env.WebhookInstallOptions, Setups: manager.WebhookOnly()})
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(func() { Expect(stop()).To(Succeed()) })
	Eventually(testenv.WebhookServing(env.WebhookInstallOptions)).Should(Succeed())

	kubeconfig = filepath.Join(GinkgoT().TempDir(), "kubeconfig")
	Expect(os.WriteFile(kubeconfig, env.KubeConfig, 0o600)).To(Succeed())
	createFleet(context.Background())
})

// result is one run of the plugin.
type result struct {
	code           int
	stdout, stderr string
}

// run runs `kubectl trainyard args...` against the test control plane, as
// the binary does, with the fixed clock.
func run(args ...string) result { return runWith(plugin.Options{}, args...) }

// runWith is run with options (a transport that records requests).
func runWith(o plugin.Options, args ...string) result {
	var out, errOut bytes.Buffer
	o.Streams = genericiooptions.IOStreams{In: &bytes.Buffer{}, Out: &out, ErrOut: &errOut}
	o.Now = func() time.Time { return now }
	code := plugin.Run(append(args, "--kubeconfig", kubeconfig), o)
	return result{code: code, stdout: out.String(), stderr: errOut.String()}
}

type roundTripper func(*http.Request) (*http.Response, error)

func (f roundTripper) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// golden compares the output with testdata/<name>.golden: stdout, then
// stderr after a "--- stderr" line when there is any.
func golden(name string, r result) {
	GinkgoHelper()
	got := r.stdout
	if r.stderr != "" {
		got += "--- stderr\n" + r.stderr
	}
	path := filepath.Join("testdata", name+".golden")
	if *update {
		Expect(os.MkdirAll("testdata", 0o755)).To(Succeed())
		Expect(os.WriteFile(path, []byte(got), 0o644)).To(Succeed())
	}
	want, err := os.ReadFile(path)
	Expect(err).NotTo(HaveOccurred(), "no golden file; run go test ./plugin -args -update and review it")
	Expect(got).To(Equal(string(want)), "output differs from %s", path)
}

func ts(s string) *metav1.Time {
	t, err := time.Parse(time.RFC3339, s)
	Expect(err).NotTo(HaveOccurred())
	mt := metav1.NewTime(t)
	return &mt
}

// The fleet of namespace "fleet": what the controllers would have written
// after three clusters checked in. The controllers do not run in this
// suite, so the statuses stay exactly as written here.
const fleetNS = "fleet"

func createFleet(ctx context.Context) {
	GinkgoHelper()
	for _, ns := range []string{fleetNS, "publish"} {
		Expect(k8sClient.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})).To(Succeed())
	}
	train := func(component, train string, spec trainyardv1.ReleaseTrainSpec, st trainyardv1.ReleaseTrainStatus) {
		spec.Component, spec.Train = component, train
		t := &trainyardv1.ReleaseTrain{ObjectMeta: metav1.ObjectMeta{Namespace: fleetNS, Name: trainyardv1.TrainName(component, train)}, Spec: spec}
		Expect(k8sClient.Create(ctx, t)).To(Succeed())
		t.Status = st
		Expect(k8sClient.Status().Update(ctx, t)).To(Succeed())
	}
	release := func(component, train, version, released string, latest bool, retracted *trainyardv1.Retraction) {
		r := &trainyardv1.ComponentRelease{
			ObjectMeta: metav1.ObjectMeta{Namespace: fleetNS, Name: trainyardv1.ReleaseName(component, train, version)},
			Spec: trainyardv1.ComponentReleaseSpec{Component: component, Train: train, Version: version,
				Released: ts(released), Retracted: retracted},
		}
		Expect(k8sClient.Create(ctx, r)).To(Succeed())
		r.Status.Latest = latest
		Expect(k8sClient.Status().Update(ctx, r)).To(Succeed())
	}
	ref := func(component, train, version, released string) *trainyardv1.ReleaseRef {
		return &trainyardv1.ReleaseRef{Version: version, Released: ts(released), Name: trainyardv1.ReleaseName(component, train, version)}
	}

	train("controller", "stable",
		trainyardv1.ReleaseTrainSpec{Ordering: trainyardv1.OrderingSemver, Prereleases: trainyardv1.PrereleasesExclude, VersionRange: ">=1.0.0, <2.0.0"},
		trainyardv1.ReleaseTrainStatus{
			Latest:       ref("controller", "stable", "1.8.0", "2026-09-15T00:00:00Z"),
			Previous:     ref("controller", "stable", "1.7.2", "2026-08-01T00:00:00Z"),
			ReleaseCount: 5,
			History: []trainyardv1.ReleaseRef{*ref("controller", "stable", "1.8.0", "2026-09-15T00:00:00Z"),
				*ref("controller", "stable", "1.7.2", "2026-08-01T00:00:00Z")},
			Adoption: &trainyardv1.FleetAdoption{Clusters: 3, UpToDate: 1, Behind: 2, Summary: "1/3",
				Versions: []trainyardv1.VersionAdoption{{Version: "1.7.2", Clusters: 1}, {Version: "1.8.0", Clusters: 1}, {Version: "1.8.1", Clusters: 1}}},
		})
	release("controller", "stable", "1.7.2", "2026-08-01T00:00:00Z", false, nil)
	release("controller", "stable", "1.8.0", "2026-09-15T00:00:00Z", true, nil)
	release("controller", "stable", "1.8.1", "2026-10-20T00:00:00Z", false,
		&trainyardv1.Retraction{Reason: "Corrupts the cache on upgrade; use 1.8.0.", Since: ts("2026-10-22T00:00:00Z")})
	release("controller", "stable", "1.9.0-rc.1", "2026-11-10T00:00:00Z", false, nil)
	release("controller", "stable", "2.0.0", "2026-11-20T00:00:00Z", false, nil)

	train("router", "stable", trainyardv1.ReleaseTrainSpec{Promotion: &trainyardv1.PromotionPolicy{From: "beta",
		Soak: &metav1.Duration{Duration: 72 * time.Hour}, Adoption: &trainyardv1.AdoptionGate{MinPercent: 20, MinClusters: 1},
		Window: &trainyardv1.PromotionWindow{Days: []trainyardv1.Weekday{"Mon", "Tue", "Wed", "Thu"}, Hours: "09:00-16:00", TimeZone: "Europe/Berlin"}}}, trainyardv1.ReleaseTrainStatus{
		Promotion: &trainyardv1.PromotionStatus{Candidates: []trainyardv1.PromotionCandidate{{
			Version: "v2.5.0-beta.1", Release: trainyardv1.ReleaseName("router", "beta", "v2.5.0-beta.1"), Phase: trainyardv1.PromotionPending,
			Message:        "waiting for: [Window (outside the window Mon,Tue,Wed,Thu 09:00-16:00 Europe/Berlin; opens 2026-12-03T08:00:00Z)]",
			NextEvaluation: ts("2026-12-03T08:00:00Z"),
			Gates: []trainyardv1.GateStatus{
				{Name: trainyardv1.GateNotRetracted, State: trainyardv1.GatePass, Reason: "not retracted", Since: ts("2026-11-20T08:00:00Z")},
				{Name: trainyardv1.GateSoak, State: trainyardv1.GatePass, Reason: "latest on beta since 2026-11-20T08:00:00Z, soak 72h0m0s", Since: ts("2026-11-23T08:00:00Z")},
				{Name: trainyardv1.GateAdoption, State: trainyardv1.GatePass, Reason: "1 of 1 non-stale clusters on beta run it (100%); needs 20% and 1", Since: ts("2026-11-20T08:00:00Z")},
				{Name: trainyardv1.GateWindow, State: trainyardv1.GatePending, Reason: "outside the window Mon,Tue,Wed,Thu 09:00-16:00 Europe/Berlin; opens 2026-12-03T08:00:00Z", Since: ts("2026-11-26T15:00:00Z")},
			},
		}}},
		Latest: ref("router", "stable", "v2.4.1", "2026-11-02T09:30:00Z"), Previous: ref("router", "stable", "v2.3.0", "2026-10-01T12:00:00Z"),
		ReleaseCount: 2,
		History: []trainyardv1.ReleaseRef{*ref("router", "stable", "v2.4.1", "2026-11-02T09:30:00Z"),
			*ref("router", "stable", "v2.3.0", "2026-10-01T12:00:00Z")},
		Adoption: &trainyardv1.FleetAdoption{Clusters: 2, UpToDate: 1, Behind: 1, Summary: "1/2",
			Versions: []trainyardv1.VersionAdoption{{Version: "v2.3.0", Clusters: 1}, {Version: "v2.4.1", Clusters: 1}}},
	})
	release("router", "stable", "v2.3.0", "2026-10-01T12:00:00Z", false, nil)
	release("router", "stable", "v2.4.1", "2026-11-02T09:30:00Z", true, nil)
	train("router", "beta", trainyardv1.ReleaseTrainSpec{}, trainyardv1.ReleaseTrainStatus{
		Latest: ref("router", "beta", "v2.5.0-beta.1", "2026-11-20T08:00:00Z"), ReleaseCount: 1,
		History:  []trainyardv1.ReleaseRef{*ref("router", "beta", "v2.5.0-beta.1", "2026-11-20T08:00:00Z")},
		Adoption: &trainyardv1.FleetAdoption{Clusters: 1, UpToDate: 1, Summary: "1/1", Versions: []trainyardv1.VersionAdoption{{Version: "v2.5.0-beta.1", Clusters: 1}}},
	})
	release("router", "beta", "v2.5.0-beta.1", "2026-11-20T08:00:00Z", true, nil)

	// What the controller recommends (internal/upgrade), by cluster/component.
	recommendations := map[string]trainyardv1.ComponentStatus{
		"prod-eu/router": {Recommended: "v2.4.1", ComponentStatusDetails: &trainyardv1.ComponentStatusDetails{Path: []string{"v2.4.1"}}},
		"0B7E5D1C-2F3A-4B5C-8D9E-0A1B2C3D4E5F/controller": {ComponentStatusDetails: &trainyardv1.ComponentStatusDetails{Conditional: []trainyardv1.ConditionalUpdate{{Version: "1.8.0",
			Risks: []trainyardv1.AppliedRisk{{Name: "etcd-3-6", Message: "1.8 needs etcd 3.6", URL: "https://example.com/kb/18",
				Reason: "cannot be evaluated on this cluster: no such key: etcdVersion"}}}}}},
	}
	type comp struct {
		name, train, version, latest string
		state                        trainyardv1.ComponentState
	}
	report := func(id string, props map[string]string, lastSeen string, stale bool, comps ...comp) {
		r := &trainyardv1.ClusterReport{
			ObjectMeta: metav1.ObjectMeta{Namespace: fleetNS, Name: trainyardv1.ClusterReportName(id)},
			Spec:       trainyardv1.ClusterReportSpec{ClusterID: id, Properties: props},
		}
		sum := &trainyardv1.ComponentSummary{}
		var status []trainyardv1.ComponentStatus
		for _, c := range comps {
			r.Spec.Components = append(r.Spec.Components, trainyardv1.ReportedComponent{Name: c.name, Train: c.train, Version: c.version, Type: "Deployment"})
			cs := trainyardv1.ComponentStatus{Name: c.name, Installed: c.version, Latest: c.latest, State: c.state}
			if rec, ok := recommendations[id+"/"+c.name]; ok {
				cs.Recommended, cs.ComponentStatusDetails = rec.Recommended, rec.ComponentStatusDetails.DeepCopy()
			}
			cs.OmitDerived(nil) // stored as the controller stores it: the plugin reads through the getters
			status = append(status, cs)
			sum.Count(c.state)
		}
		// The label the controller keeps (controllers.reconcileLabels).
		if stale {
			metav1.SetMetaDataLabel(&r.ObjectMeta, trainyardv1.LabelStale, "true")
		}
		Expect(k8sClient.Create(ctx, r)).To(Succeed())
		// Stale is there once the cluster has been stale (as the controller
		// keeps it).
		var conds []metav1.Condition
		if stale {
			conds = append(conds, metav1.Condition{Type: trainyardv1.ConditionStale, Status: metav1.ConditionTrue, Reason: "NoRecentCheckIn",
				Message: "no check-in within the stale threshold (25h0m0s)", LastTransitionTime: *ts(lastSeen), ObservedGeneration: r.Generation})
		}
		r.Status = trainyardv1.ClusterReportStatus{
			ObservedGeneration: r.Generation, FirstSeen: ts("2026-06-01T00:00:00Z"), LastSeen: ts(lastSeen), CheckIns: 4200,
			Components: status, Summary: sum, Conditions: conds,
		}
		Expect(k8sClient.Status().Update(ctx, r)).To(Succeed())
	}
	report("prod-eu", map[string]string{"provider": "gke", "kubernetesVersion": "v1.37.2", "nodes": "12"}, "2026-12-01T11:50:00Z", false,
		comp{"controller", "stable", "1.8.1", "1.8.0", trainyardv1.StateRetracted},
		comp{"router", "stable", "v2.3.0", "v2.4.1", trainyardv1.StateUpdateAvailable})
	report("prod-us", map[string]string{"provider": "eks", "kubernetesVersion": "v1.36.4", "nodes": "30"}, "2026-12-01T11:58:00Z", false,
		comp{"controller", "stable", "1.8.0", "1.8.0", trainyardv1.StateUpToDate},
		comp{"router", "stable", "v2.4.1", "v2.4.1", trainyardv1.StateUpToDate})
	report("0B7E5D1C-2F3A-4B5C-8D9E-0A1B2C3D4E5F", nil, "2026-11-28T06:00:00Z", true,
		comp{"controller", "stable", "1.7.2", "1.8.0", trainyardv1.StateUpdateAvailable},
		comp{"metrics-agent", "stable", "0.3.0", "", trainyardv1.StateUnknown},
		comp{"router", "beta", "v2.5.0-beta.1", "v2.5.0-beta.1", trainyardv1.StateUpToDate})
}

// CI shows only the tail of a run: the causes of its failures come last.
var _ = ReportAfterSuite("failure digest", testenv.FailureDigest(12))
