package plugin_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/transport"
	"sigs.k8s.io/controller-runtime/pkg/client"

	trainyardv1 "github.com/trainyard-dev/trainyard/api/v1alpha1"
	"github.com/trainyard-dev/trainyard/plugin"
)

var _ = Describe("reading the fleet", func() {
	// Each entry: a golden file, the command line, and the exit code.
	DescribeTable("golden output",
		func(name string, code int, args ...string) {
			r := run(args...)
			golden(name, r)
			Expect(r.code).To(Equal(code), "exit code; stderr: %s", r.stderr)
		},
		Entry(nil, "fleet", 0, "fleet", "-n", fleetNS),
		Entry(nil, "fleet-wide", 0, "fleet", "-n", fleetNS, "-o", "wide"),
		Entry(nil, "fleet-json", 0, "fleet", "-n", fleetNS, "-o", "json"),
		Entry(nil, "fleet-empty", 0, "fleet", "-n", "publish"),
		Entry("in pages of one: the same", "fleet", 0, "fleet", "-n", fleetNS, "--chunk-size", "1"),
		Entry("in one request: the same", "fleet", 0, "fleet", "-n", fleetNS, "--chunk-size", "0"),
		Entry("in pages of two: the same", "outdated", 2, "outdated", "-n", fleetNS, "--chunk-size", "2"),
		Entry(nil, "error-chunk-size", 3, "outdated", "-n", fleetNS, "--chunk-size", "-1"),

		Entry("a retracted release runs: exit 2", "outdated", 2, "outdated", "-n", fleetNS),
		Entry(nil, "outdated-wide", 2, "outdated", "-n", fleetNS, "-o", "wide"),
		Entry(nil, "outdated-json", 2, "outdated", "-n", fleetNS, "-o", "json"),
		Entry(nil, "outdated-yaml-unknown", 2, "outdated", "-n", fleetNS, "-o", "yaml", "--include-unknown"),
		Entry("behind, none retracted: exit 1", "outdated-router", 1, "outdated", "-n", fleetNS, "--component", "router"),
		Entry(nil, "outdated-behind-minor", 1, "outdated", "-n", fleetNS, "--behind=minor"),
		Entry("--cluster takes the ID in any case", "outdated-cluster", 1, "outdated", "-n", fleetNS, "--cluster", "0b7e5d1c-2f3a-4b5c-8d9e-0a1b2c3d4e5f"),
		Entry("nothing outdated: exit 0", "outdated-none", 0, "outdated", "-n", fleetNS, "--cluster", "prod-us"),
		Entry(nil, "outdated-train", 0, "outdated", "-n", fleetNS, "--train", "beta"),
		Entry("-A adds a NAMESPACE column", "outdated-all-namespaces", 1, "outdated", "-A", "--component", "router", "--no-headers"),

		Entry(nil, "train-controller", 0, "train", "controller.stable", "-n", fleetNS),
		Entry("the train defaults to stable", "train-router-json", 0, "train", "router", "-n", fleetNS, "-o", "json"),
		Entry(nil, "train-router-beta", 0, "train", "router.beta", "-n", fleetNS),
		Entry("with its promotion from beta", "train-router-stable", 0, "train", "router.stable", "-n", fleetNS),

		Entry(nil, "why-retracted", 0, "why", "prod-eu", "controller", "-n", fleetNS),
		Entry(nil, "why-behind", 0, "why", "prod-eu", "router", "-n", fleetNS),
		Entry(nil, "why-up-to-date", 0, "why", "prod-us", "router", "-n", fleetNS),
		Entry(nil, "why-no-train-stale", 0, "why", "0B7E5D1C-2F3A-4B5C-8D9E-0A1B2C3D4E5F", "metrics-agent", "-n", fleetNS),
		Entry(nil, "why-json", 0, "why", "0b7e5d1c-2f3a-4b5c-8d9e-0a1b2c3d4e5f", "controller", "-n", fleetNS, "-o", "json"),

		Entry("the clusters differ: exit 1", "diff", 1, "diff", "prod-eu", "0B7E5D1C-2F3A-4B5C-8D9E-0A1B2C3D4E5F", "-n", fleetNS),
		Entry(nil, "diff-json", 1, "diff", "prod-eu", "prod-us", "-n", fleetNS, "-o", "json"),
		Entry("the same: exit 0", "diff-same", 0, "diff", "prod-us", "prod-us", "-n", fleetNS),

		Entry("errors: exit 3", "error-no-cluster", 3, "why", "nope", "router", "-n", fleetNS),
		Entry(nil, "error-no-component", 3, "why", "prod-us", "billing", "-n", fleetNS),
		Entry(nil, "error-no-train", 3, "train", "billing.stable", "-n", fleetNS),
		Entry(nil, "error-behind", 3, "outdated", "-n", fleetNS, "--behind=sideways"),
		Entry(nil, "error-output", 3, "fleet", "-n", fleetNS, "-o", "name"),
		Entry(nil, "error-args", 3, "diff", "prod-us", "-n", fleetNS),
		Entry(nil, "error-all-namespaces", 3, "why", "prod-us", "router", "-A"),
	)

	It("prints -o json that decodes into the documented types, with the exit code in it", func() {
		r := run("outdated", "-n", fleetNS, "-o", "json")
		var list plugin.OutdatedList
		Expect(json.Unmarshal([]byte(r.stdout), &list)).To(Succeed())
		// Clusters read: the two labelled outdated, not prod-us.
		Expect(list.Summary).To(Equal(plugin.OutdatedTotals{Clusters: 2, Outdated: 3, Retracted: 1, ExitCode: r.code}))
		Expect(list.Items).To(ContainElement(And(
			HaveField("Cluster", "prod-eu"), HaveField("Component", "controller"),
			HaveField("State", trainyardv1.StateRetracted), HaveField("Retraction", "Corrupts the cache on upgrade; use 1.8.0."))))
	})

	It("asks the API server only for the reports whose summary counts an outdated component, never the whole fleet", func() {
		record, selectors := listSelectors()
		r := runWith(plugin.Options{WrapTransport: record}, "outdated", "-n", fleetNS, "-o", "json")
		Expect(r.code).To(Equal(2), r.stderr)
		// Behind, or on a retracted release, or with no summary at all (not
		// reconciled yet; "" != "0"): never a report that is outdated
		// unseen, and no report twice.
		// The second at the first's resourceVersion: a report moving from
		// one set to the other meanwhile is neither missed nor listed twice.
		Expect(selectors()).To(Equal([]string{trainyardv1.FieldUpdateAvailable + "!=0",
			trainyardv1.FieldUpdateAvailable + "=0," + trainyardv1.FieldRetracted + "!=0" + pinned}))
		var list plugin.OutdatedList
		Expect(json.Unmarshal([]byte(r.stdout), &list)).To(Succeed())
		Expect(list.Items).To(HaveLen(3)) // all of them: prod-us, not listed, has none

		r = runWith(plugin.Options{WrapTransport: record}, "outdated", "-n", fleetNS, "--include-unknown")
		Expect(r.code).To(Equal(2), r.stderr)
		Expect(selectors()).To(Equal([]string{trainyardv1.FieldUpdateAvailable + "!=0",
			trainyardv1.FieldUpdateAvailable + "=0," + trainyardv1.FieldRetracted + "!=0" + pinned,
			trainyardv1.FieldUpdateAvailable + "=0," + trainyardv1.FieldRetracted + "=0," + trainyardv1.FieldUnknown + "!=0" + pinned}))

		// fleet is about every cluster: it reads them all.
		Expect(runWith(plugin.Options{WrapTransport: record}, "fleet", "-n", fleetNS).code).To(Equal(0))
		Expect(selectors()).To(Equal([]string{""}))
	})

	It("reads every report, and still lists the outdated, where the API server cannot select on the fields", func() {
		// A hub before Kubernetes 1.32, or a CRD from before the fields:
		// the API server answers such a selector 400.
		var asked []string
		refuse := func(rt http.RoundTripper) http.RoundTripper {
			return roundTripper(func(req *http.Request) (*http.Response, error) {
				if !strings.HasSuffix(req.URL.Path, "/clusterreports") {
					return rt.RoundTrip(req)
				}
				sel := req.URL.Query().Get("fieldSelector")
				asked = append(asked, sel)
				if sel == "" {
					return rt.RoundTrip(req)
				}
				body := `{"kind":"Status","apiVersion":"v1","status":"Failure","message":"field label not supported: ` + sel + `","reason":"BadRequest","code":400}`
				return &http.Response{StatusCode: http.StatusBadRequest, Header: http.Header{"Content-Type": {"application/json"}},
					Body: io.NopCloser(strings.NewReader(body)), Request: req}, nil
			})
		}
		r := runWith(plugin.Options{WrapTransport: refuse}, "outdated", "-n", fleetNS, "-o", "json")
		Expect(r.code).To(Equal(2), r.stderr)
		Expect(asked).To(Equal([]string{trainyardv1.FieldUpdateAvailable + "!=0", ""}))
		var list plugin.OutdatedList
		Expect(json.Unmarshal([]byte(r.stdout), &list)).To(Succeed())
		Expect(list.Items).To(HaveLen(3))
	})

	It("finds a report the controller has not reconciled yet (no summary) among the outdated", func() {
		ctx := context.Background()
		id := "not-reconciled-yet"
		r := &trainyardv1.ClusterReport{ObjectMeta: metav1.ObjectMeta{Namespace: fleetNS, Name: id},
			Spec: trainyardv1.ClusterReportSpec{ClusterID: id, Components: []trainyardv1.ReportedComponent{{Name: "router", Train: "stable", Version: "v2.3.0"}}}}
		Expect(k8sClient.Create(ctx, r)).To(Succeed())
		DeferCleanup(func() { Expect(k8sClient.Delete(ctx, r)).To(Succeed()) })
		// The selector the plugin sends matches it: the API server lists
		// a missing field as "".
		var list trainyardv1.ClusterReportList
		Expect(k8sClient.List(ctx, &list, client.InNamespace(fleetNS),
			client.MatchingFieldsSelector{Selector: fields.OneTermNotEqualSelector(trainyardv1.FieldUpdateAvailable, "0")})).To(Succeed())
		var names []string
		for _, it := range list.Items {
			names = append(names, it.Name)
		}
		Expect(names).To(ContainElement(id))
		Expect(names).NotTo(ContainElement(trainyardv1.ClusterReportName("prod-us")), "up to date: not listed")
	})

	It("says what version it is", func() {
		r := run("version")
		Expect(r.code).To(Equal(0))
		Expect(r.stdout).To(HavePrefix("kubectl-trainyard (devel) (commit "))
	})
})

var _ = Describe("BehindOf", func() {
	DescribeTable("how far a version is behind the latest",
		func(running, latest string, want plugin.Behind) {
			Expect(plugin.BehindOf(running, latest)).To(Equal(want))
		},
		Entry(nil, "1.2.3", "2.0.0", plugin.BehindMajor),
		Entry(nil, "v1.2.3", "1.3.0", plugin.BehindMinor),
		Entry(nil, "1.2.3", "v1.2.4", plugin.BehindPatch),
		Entry(nil, "1.2.3-rc.1", "1.2.3", plugin.BehindPrerelease),
		Entry(nil, "1.2.3", "1.2.3", plugin.BehindNone),
		Entry("ahead of the latest", "1.8.1", "1.8.0", plugin.BehindNone),
		Entry("a minor ahead and a patch behind is not behind", "1.9.0", "1.8.5", plugin.BehindNone),
		Entry(nil, "nightly", "1.0.0", plugin.BehindUnknown),
		Entry("no latest", "1.0.0", "", plugin.BehindUnknown),
	)
})

var _ = Describe("publishing and retracting", Ordered, func() {
	ctx := context.Background()
	const ns = "publish"
	get := func(name string) *trainyardv1.ComponentRelease {
		GinkgoHelper()
		r := &trainyardv1.ComponentRelease{}
		Expect(k8sClient.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, r)).To(Succeed())
		return r
	}

	It("publishes a release under its canonical name", func() {
		r := run("publish", "billing", "1.0.0", "-n", ns, "--image", "quay.io/example/billing:1.0.0",
			"--description", "First release.", "--released", "2026-11-30T10:00:00Z", "--data", "changelog=https://example.com/1.0.0")
		golden("publish", r)
		Expect(r.code).To(Equal(0))
		rel := get("billing.stable.v1.0.0")
		Expect(rel.Spec.Version).To(Equal("1.0.0"))
		Expect(rel.Spec.Train).To(Equal("stable"))
		Expect(rel.Spec.Image).To(Equal("quay.io/example/billing:1.0.0"))
		Expect(rel.Spec.Data).To(Equal(map[string]string{"changelog": "https://example.com/1.0.0"}))
		Expect(rel.Spec.Released.UTC().Format("2006-01-02T15:04:05Z")).To(Equal("2026-11-30T10:00:00Z"))
	})

	It("refuses the same version in another spelling", func() {
		r := run("publish", "billing", "v1.0.0", "-n", ns)
		golden("publish-again", r)
		Expect(r.code).To(Equal(3))
	})

	It("passes on the webhook's warnings", func() {
		r := run("publish", "billing", "nightly-2026-11-30", "-n", ns)
		golden("publish-warning", r)
		Expect(r.code).To(Equal(0))
	})

	It("stores nothing on a dry run", func() {
		r := run("publish", "billing", "1.1.0", "-n", ns, "--dry-run", "-o", "name")
		Expect(r.code).To(Equal(0), r.stderr)
		Expect(r.stdout).To(Equal("componentrelease.trainyard.dev/billing.stable.v1.1.0 published (server dry run)\n"))
		err := k8sClient.Get(ctx, types.NamespacedName{Namespace: ns, Name: "billing.stable.v1.1.0"}, &trainyardv1.ComponentRelease{})
		Expect(apierrors.IsNotFound(err)).To(BeTrue(), "got %v", err)
	})

	It("refuses a bad release locally with the webhook's message", func() {
		r := run("publish", "Billing", "1.0.0", "-n", ns)
		golden("publish-invalid", r)
		Expect(r.code).To(Equal(3))
	})

	It("retracts with a reason and the time, and undoes it", func() {
		r := run("retract", "billing", "1.0.0", "-n", ns, "--reason", "Double-charges annual plans.")
		golden("retract", r)
		Expect(r.code).To(Equal(0))
		rel := get("billing.stable.v1.0.0")
		Expect(rel.Spec.Retracted).NotTo(BeNil())
		Expect(rel.Spec.Retracted.Reason).To(Equal("Double-charges annual plans."))
		Expect(rel.Spec.Retracted.Since.Time.Equal(now)).To(BeTrue(), "since %v", rel.Spec.Retracted.Since)

		r = run("retract", "billing.stable", "v1.0.0", "-n", ns, "--undo")
		golden("retract-undo", r)
		Expect(r.code).To(Equal(0))
		Expect(get("billing.stable.v1.0.0").Spec.Retracted).To(BeNil())
	})

	It("refuses a blank reason with exactly what the webhook answers for it", func() {
		r := run("retract", "billing", "1.0.0", "-n", ns, "--reason", "   ")
		golden("retract-blank-reason", r)
		Expect(r.code).To(Equal(3))
		msg := strings.TrimSpace(strings.TrimPrefix(r.stderr, "error: "))

		// The same change sent straight to the API server, past the plugin.
		rel := get("billing.stable.v1.0.0")
		patch := client.MergeFrom(rel.DeepCopy())
		rel.Spec.Retracted = &trainyardv1.Retraction{Reason: "   "}
		err := k8sClient.Patch(ctx, rel, patch)
		Expect(apierrors.IsInvalid(err)).To(BeTrue(), "the webhook refuses it: %v", err)
		Expect(err.Error()).To(HaveSuffix(msg))
		Expect(get("billing.stable.v1.0.0").Spec.Retracted).To(BeNil())
	})

	It("says what is missing", func() {
		golden("retract-missing", run("retract", "billing", "9.9.9", "-n", ns, "--reason", "x"))
		golden("retract-flags", run("retract", "billing", "1.0.0", "-n", ns))
	})
})

var _ = Describe("reading a list page's continue token and resourceVersion", func() {
	DescribeTable("finds the list's metadata, never an item's",
		func(body, want, wantRV string) {
			got, rv, err := plugin.MetadataOf([]byte(body))
			Expect(err).NotTo(HaveOccurred())
			Expect(got).To(Equal(want))
			Expect(rv).To(Equal(wantRV))
		},
		Entry("as the API server lays a list out", `{"apiVersion":"v1","items":[{"metadata":{"name":"a","resourceVersion":"3"}}],"kind":"L","metadata":{"continue":"tok\"en","resourceVersion":"5"}}`+"\n", `tok"en`, "5"),
		Entry("the last page", `{"apiVersion":"v1","items":[],"kind":"L","metadata":{"resourceVersion":"5"}}`, "", "5"),
		Entry("metadata first: decoded whole", `{"metadata":{"continue":"next","resourceVersion":"7"},"items":[{"metadata":{"name":"a","resourceVersion":"3"},"spec":{}}]}`, "next", "7"),
	)
	It("refuses a page that is not JSON", func() {
		_, _, err := plugin.MetadataOf([]byte(`{"items":[`))
		Expect(err).To(HaveOccurred())
	})
})

// pinned marks, in what listSelectors records, a list asked at an exact
// resourceVersion (the first list's).
const pinned = " @rv"

// listSelectors records the field selector of every list of ClusterReports
// a command makes (with pinned when it was asked at an exact
// resourceVersion); selectors returns them and starts again.
func listSelectors() (record transport.WrapperFunc, selectors func() []string) {
	var mu sync.Mutex
	var seen []string
	record = func(rt http.RoundTripper) http.RoundTripper {
		return roundTripper(func(req *http.Request) (*http.Response, error) {
			if strings.HasSuffix(req.URL.Path, "/clusterreports") {
				mu.Lock()
				// The status labels are gone (issue 32): field selectors only.
				Expect(req.URL.Query().Has("labelSelector")).To(BeFalse(), req.URL.String())
				q := req.URL.Query()
				sel := q.Get("fieldSelector")
				if q.Get("resourceVersionMatch") == "Exact" && q.Get("resourceVersion") != "" {
					sel += pinned
				}
				seen = append(seen, sel)
				mu.Unlock()
			}
			return rt.RoundTrip(req)
		})
	}
	return record, func() []string {
		mu.Lock()
		defer mu.Unlock()
		out := seen
		seen = nil
		return out
	}
}
