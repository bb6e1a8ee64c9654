package validation

import (
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	trainyardv1 "github.com/trainyard-dev/trainyard/api/v1alpha1"
)

func TestReportWriter(t *testing.T) {
	r := &trainyardv1.ClusterReport{ObjectMeta: metav1.ObjectMeta{Namespace: "hub", Name: "edge-7"}}
	for user, want := range map[string]string{
		"system:serviceaccount:hub:trainyard-cluster-edge-7":   "",
		"system:serviceaccount:hub:trainyard-cluster-edge-8":   "the ServiceAccount hub/trainyard-cluster-edge-8 writes only the ClusterReport hub/edge-8",
		"system:serviceaccount:other:trainyard-cluster-edge-7": "the ServiceAccount other/trainyard-cluster-edge-7 writes only the ClusterReport other/edge-7",
		"system:serviceaccount:hub:trainyard":                  "", // the manager: not a cluster's identity
		"kubernetes-admin":                                     "",
		"trainyard-cluster-edge-8":                             "", // a user, not a ServiceAccount
	} {
		if got := ReportWriter(user, r, nil); got != want {
			t.Errorf("%s: %q, want %q", user, got, want)
		}
		if want != "" && !strings.Contains(want, "writes only") {
			t.Fatal("bad case")
		}
	}

	// Issue 27 #5: its own report, but not its bridge identity.
	own := "system:serviceaccount:hub:trainyard-cluster-edge-7"
	stored := r.DeepCopy()
	stored.Annotations = map[string]string{trainyardv1.AnnotationCredentialHash: "aaaa", trainyardv1.AnnotationCredentialRevoked: "2026-12-01: stolen"}
	for name, mutate := range map[string]func(*trainyardv1.ClusterReport){
		"set its credential's hash": func(n *trainyardv1.ClusterReport) { n.Annotations[trainyardv1.AnnotationCredentialHash] = "bbbb" },
		"remove its revocation":     func(n *trainyardv1.ClusterReport) { delete(n.Annotations, trainyardv1.AnnotationCredentialRevoked) },
		"name a registration token": func(n *trainyardv1.ClusterReport) {
			n.Annotations[trainyardv1.AnnotationRegisteredWith] = "registration/fleet"
		},
		"keep a previous credential": func(n *trainyardv1.ClusterReport) {
			n.Annotations[trainyardv1.AnnotationPreviousCredentialHash] = "cccc"
		},
		"open itself for a reissue": func(n *trainyardv1.ClusterReport) {
			n.Annotations[trainyardv1.AnnotationReissueHash] = strings.Repeat("e", 64)
		},
	} {
		n := stored.DeepCopy()
		mutate(n)
		if got := ReportWriter(own, n, stored); !strings.Contains(got, "may not set or change the annotation") {
			t.Errorf("%s: %q, want a refusal", name, got)
		}
		if got := ReportWriter("system:serviceaccount:hub:trainyard-bridge", n, stored); got != "" {
			t.Errorf("%s by the bridge: %q", name, got)
		}
	}
	created := r.DeepCopy()
	created.Annotations = map[string]string{trainyardv1.AnnotationCredentialHash: "dddd"}
	if got := ReportWriter(own, created, nil); !strings.Contains(got, trainyardv1.AnnotationCredentialHash) {
		t.Errorf("create with a credential hash: %q", got)
	}
	// Other annotations, and the spec, stay its own.
	n := stored.DeepCopy()
	n.Annotations["example.com/owner"] = "edge-team"
	if got := ReportWriter(own, n, stored); got != "" {
		t.Errorf("another annotation: %q", got)
	}
}

// Issue 27 #4: the pair that opens a revoked cluster for one registration
// is checked for form (its lifetime is the bridge's to judge).
func TestReissueAnnotations(t *testing.T) {
	hash := strings.Repeat("ab", 32)
	for name, c := range map[string]struct {
		annotations map[string]string
		want        string
	}{
		"none":         {nil, ""},
		"both":         {map[string]string{trainyardv1.AnnotationReissueHash: hash, trainyardv1.AnnotationReissueExpires: "2026-12-03T20:00:00Z"}, ""},
		"hash only":    {map[string]string{trainyardv1.AnnotationReissueHash: hash}, `metadata.annotations[trainyard.dev/reissue-expires]: Required value`},
		"expires only": {map[string]string{trainyardv1.AnnotationReissueExpires: "2026-12-03T20:00:00Z"}, `metadata.annotations[trainyard.dev/reissue-sha256]: Required value`},
		"the token":    {map[string]string{trainyardv1.AnnotationReissueHash: "tyr.abc", trainyardv1.AnnotationReissueExpires: "2026-12-03T20:00:00Z"}, "never the token itself"},
		"upper case":   {map[string]string{trainyardv1.AnnotationReissueHash: strings.ToUpper(hash), trainyardv1.AnnotationReissueExpires: "2026-12-03T20:00:00Z"}, "lower-case hex"},
		"not a time":   {map[string]string{trainyardv1.AnnotationReissueHash: hash, trainyardv1.AnnotationReissueExpires: "tomorrow"}, `reissue-expires]: Invalid value: "tomorrow": must be an RFC 3339 time`},
	} {
		r := &trainyardv1.ClusterReport{ObjectMeta: metav1.ObjectMeta{Name: "edge-7", Annotations: c.annotations}, Spec: trainyardv1.ClusterReportSpec{ClusterID: "edge-7"}}
		got := ClusterReport(r, nil).ToAggregate()
		switch {
		case c.want == "" && got != nil:
			t.Errorf("%s: %v", name, got)
		case c.want != "" && (got == nil || !strings.Contains(got.Error(), c.want)):
			t.Errorf("%s: %v, want %q", name, got, c.want)
		}
	}
}
