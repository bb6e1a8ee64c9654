package plugin_test

import (
	"context"
	"encoding/json"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	trainyardv1 "github.com/trainyard-dev/trainyard/api/v1alpha1"
	"github.com/trainyard-dev/trainyard/plugin"
)

// Issue 29 #1: a cluster's timeline, as the controller records it in the
// report's status (the controllers' suite checks the recording).
var _ = Describe("history", Ordered, func() {
	const ns = "history"
	at := func(s string) metav1.Time {
		t, err := time.Parse(time.RFC3339, s)
		Expect(err).NotTo(HaveOccurred())
		return metav1.NewTime(t)
	}
	BeforeAll(func() {
		ctx := context.Background()
		Expect(k8sClient.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})).To(Succeed())
		r := &trainyardv1.ClusterReport{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "edge-1"},
			Spec: trainyardv1.ClusterReportSpec{ClusterID: "edge-1", Components: []trainyardv1.ReportedComponent{
				{Name: "router", Train: "stable", Version: "v1.2.0"}, {Name: "dns", Train: "stable", Version: "1.0.0"}}}}
		Expect(k8sClient.Create(ctx, r)).To(Succeed())
		since, first := at("2026-12-02T10:00:00Z"), at("2026-11-01T00:00:00Z")
		r.Status.Components = []trainyardv1.ComponentStatus{
			{Name: "router", Installed: "v1.2.0", State: trainyardv1.StateUnknown, Since: &since,
				ComponentStatusDetails: &trainyardv1.ComponentStatusDetails{History: []trainyardv1.VersionChange{
					{From: "v1.0.0", To: "v1.1.0", At: at("2026-11-20T08:00:00Z")},
					{From: "v1.1.0", To: "v1.2.0", At: since}}}},
			{Name: "dns", Installed: "1.0.0", State: trainyardv1.StateUnknown, Since: &first},
		}
		Expect(k8sClient.Status().Update(ctx, r)).To(Succeed())
	})

	It("lists each component's changes, oldest first, and since when it runs its version", func() {
		r := run("history", "edge-1", "-n", ns)
		Expect(r.code).To(Equal(0), r.stderr)
		lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
		Expect(lines).To(HaveLen(5))
		Expect(strings.Fields(lines[0])).To(Equal([]string{"COMPONENT", "TRAIN", "FROM", "TO", "AT"}))
		Expect(strings.Fields(lines[1])).To(Equal([]string{"router", "stable", "v1.0.0", "v1.1.0", "2026-11-20T08:00:00Z"}))
		Expect(strings.Fields(lines[2])).To(Equal([]string{"router", "stable", "v1.1.0", "v1.2.0", "2026-12-02T10:00:00Z"}))
		Expect(strings.Fields(lines[3])).To(Equal([]string{"router", "stable", "v1.2.0", "2026-12-02T10:00:00Z", "(running", "since)"}))
		Expect(strings.Fields(lines[4])).To(Equal([]string{"dns", "stable", "1.0.0", "2026-11-01T00:00:00Z", "(running", "since)"}))
	})

	It("prints one component as JSON", func() {
		r := run("history", "edge-1", "-n", ns, "--component", "router", "-o", "json")
		Expect(r.code).To(Equal(0), r.stderr)
		var v plugin.HistoryView
		Expect(json.Unmarshal([]byte(r.stdout), &v)).To(Succeed())
		Expect(v.Cluster).To(Equal("edge-1"))
		Expect(v.Components).To(HaveLen(1))
		c := v.Components[0]
		Expect([]string{c.Component, c.Running, c.Since.UTC().Format(time.RFC3339)}).To(Equal([]string{"router", "v1.2.0", "2026-12-02T10:00:00Z"}))
		Expect(c.Changes).To(HaveLen(2))
		Expect([]string{c.Changes[0].From, c.Changes[0].To, c.Changes[1].From, c.Changes[1].To}).
			To(Equal([]string{"v1.0.0", "v1.1.0", "v1.1.0", "v1.2.0"}))
	})

	DescribeTable("golden output",
		func(name string, args ...string) {
			r := run(args...)
			golden(name, r)
			Expect(r.code).To(Equal(0), "exit code; stderr: %s", r.stderr)
		},
		Entry(nil, "history", "history", "edge-1", "-n", ns),
		Entry(nil, "history-json", "history", "edge-1", "-n", ns, "-o", "json"),
	)

	It("says so when the cluster reports no such component", func() {
		r := run("history", "edge-1", "-n", ns, "--component", "nope")
		Expect(r.code).NotTo(Equal(0))
		Expect(r.stderr).To(ContainSubstring(`cluster edge-1 reports no component "nope"`))
	})
})
