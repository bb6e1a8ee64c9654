package plugin_test

import (
	"context"
	"encoding/json"
	"strings"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	trainyardv1 "github.com/trainyard-dev/trainyard/api/v1alpha1"
	"github.com/trainyard-dev/trainyard/plugin"
)

// advisoriesNS holds issue 30's fleet as the controllers would have left
// it: an advisory (introduced 1.0.0, fixed 1.2.1) and five clusters on
// 1.0.0 to 1.3.0, the three below 1.2.1 exposed and recommended the fix; a
// second advisory that exposes nobody.
const advisoriesNS = "advisories"

func createAdvisories(ctx context.Context) {
	GinkgoHelper()
	Expect(k8sClient.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: advisoriesNS}})).To(Succeed())
	adv := func(name, id, fixed, vector string, exposed int32, expedite bool) {
		a := &trainyardv1.Advisory{ObjectMeta: metav1.ObjectMeta{Namespace: advisoriesNS, Name: name},
			Spec: trainyardv1.AdvisorySpec{ID: id, Aliases: []string{"CVE-2026-" + name}, Summary: "Path traversal in the upload handler of app lets a client write outside its directory",
				Expedite: expedite,
				Affected: []trainyardv1.AffectedComponent{{Component: "app", Ranges: []trainyardv1.AffectedRange{{Type: "SEMVER",
					Events: []trainyardv1.RangeEvent{{Introduced: "1.0.0"}, {Fixed: fixed}}}}}}}}
		if vector != "" {
			a.Spec.Severity = []trainyardv1.AdvisorySeverity{{Type: trainyardv1.SeverityCVSSv3, Vector: vector}}
		}
		Expect(k8sClient.Create(ctx, a)).To(Succeed())
		a.Status.Exposed = &trainyardv1.Exposure{Clusters: exposed}
		Expect(k8sClient.Status().Update(ctx, a)).To(Succeed())
	}
	adv("ghsa-1", "GHSA-1111-2222-3333", "1.2.1", "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H", 3, true)
	adv("ghsa-2", "GHSA-4444-5555-6666", "1.0.1", "", 0, false)

	since := metav1.NewTime(now.Add(-2 * 3600e9))
	for i, v := range []string{"1.0.0", "1.1.0", "1.2.0", "1.2.1", "1.3.0"} {
		id := []string{"edge-0", "edge-1", "edge-2", "edge-3", "edge-4"}[i]
		r := &trainyardv1.ClusterReport{ObjectMeta: metav1.ObjectMeta{Namespace: advisoriesNS, Name: id},
			Spec: trainyardv1.ClusterReportSpec{ClusterID: id, Components: []trainyardv1.ReportedComponent{{Name: "app", Train: "stable", Version: v}}}}
		Expect(k8sClient.Create(ctx, r)).To(Succeed())
		cs := trainyardv1.ComponentStatus{Name: "app", Installed: v, Latest: "1.3.0", State: trainyardv1.StateUpdateAvailable}
		switch {
		case v < "1.2.1":
			cs.Recommended, cs.Details().Path = "1.2.1", []string{"1.2.1"}
			cs.Details().Advisories = []trainyardv1.ComponentAdvisory{{ID: "GHSA-1111-2222-3333", Since: since, Expedite: true}}
		case v == "1.2.1":
			cs.Recommended, cs.Details().Path = "1.3.0", []string{"1.3.0"}
		default:
			cs.State = trainyardv1.StateUpToDate
		}
		if id == "edge-0" { // only reachable through an affected hop
			cs.Recommended, cs.Details().Path = "", nil
		}
		// The summary the controller keeps, whose exposed count `exposed`
		// selects on.
		sum := &trainyardv1.ComponentSummary{}
		sum.Count(cs.State)
		if len(cs.GetAdvisories()) > 0 {
			sum.Exposed = 1
		}
		r.Status = trainyardv1.ClusterReportStatus{LastSeen: &since, Components: []trainyardv1.ComponentStatus{cs}, Summary: sum}
		Expect(k8sClient.Status().Update(ctx, r)).To(Succeed())
	}
}

var _ = Describe("advisories and exposed", Ordered, func() {
	BeforeAll(func(ctx SpecContext) { createAdvisories(ctx) })

	DescribeTable("golden output",
		func(name string, code int, args ...string) {
			r := run(args...)
			golden(name, r)
			Expect(r.code).To(Equal(code), "exit code; stderr: %s", r.stderr)
		},
		Entry(nil, "advisories", 0, "advisories", "-n", advisoriesNS),
		Entry(nil, "advisories-empty", 0, "advisories", "-n", "publish"),
		Entry("clusters exposed: exit 1", "exposed", 1, "exposed", "GHSA-1111-2222-3333", "-n", advisoriesNS),
		Entry("by name or alias: the same", "exposed", 1, "exposed", "ghsa-1", "-n", advisoriesNS),
		Entry(nil, "exposed", 1, "exposed", "cve-2026-ghsa-1", "-n", advisoriesNS),
		Entry("none exposed: exit 0", "exposed-none", 0, "exposed", "GHSA-4444-5555-6666", "-n", advisoriesNS),
		Entry("no such advisory: exit 3", "error-exposed-missing", 3, "exposed", "GHSA-0000", "-n", advisoriesNS),
		Entry(nil, "error-exposed-all-namespaces", 3, "exposed", "ghsa-1", "-A"),
	)

	It("asks the API server only for the reports labelled exposed", func() {
		record, selectors := listSelectors()
		r := runWith(plugin.Options{WrapTransport: record}, "exposed", "ghsa-1", "-n", advisoriesNS)
		Expect(r.code).To(Equal(plugin.ExitOutdated), r.stderr)
		Expect(selectors()).To(Equal([]string{trainyardv1.FieldExposed + "!=0," + trainyardv1.FieldExposed + "!="}))
	})

	It("prints -o json that decodes into the documented types, with the exit code in it", func() {
		r := run("exposed", "ghsa-1", "-n", advisoriesNS, "-o", "json")
		Expect(r.code).To(Equal(plugin.ExitOutdated), r.stderr)
		var v plugin.ExposedView
		dec := json.NewDecoder(strings.NewReader(r.stdout))
		dec.DisallowUnknownFields()
		Expect(dec.Decode(&v)).To(Succeed())
		Expect(v.ExitCode).To(Equal(1))
		Expect(v.Advisory.Severity).To(Equal("Critical"))
		Expect(v.Advisory.Score).To(Equal("9.8"))
		Expect(v.Items).To(HaveLen(3))
		Expect(v.Items[1]).To(And(HaveField("Cluster", "edge-1"), HaveField("Running", "1.1.0"), HaveField("Recommended", "1.2.1")))

		r = run("advisories", "-n", advisoriesNS, "-o", "json")
		Expect(r.code).To(Equal(0), r.stderr)
		var list plugin.AdvisoryList
		dec = json.NewDecoder(strings.NewReader(r.stdout))
		dec.DisallowUnknownFields()
		Expect(dec.Decode(&list)).To(Succeed())
		Expect(list.Items).To(HaveLen(2))
		Expect(list.Items[0]).To(And(HaveField("ID", "GHSA-1111-2222-3333"), HaveField("Exposed", int32(3)), HaveField("Fixed", []string{"1.2.1"})))
	})
})
