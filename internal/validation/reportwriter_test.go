package validation

import (
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "github.com/trainyard-dev/trainyard/api/v1alpha1"
)

func TestReportWriter(t *testing.T) {
	r := &v1.ClusterReport{ObjectMeta: metav1.ObjectMeta{Namespace: "hub", Name: "edge-7"}}
	for user, want := range map[string]string{
		"system:serviceaccount:hub:trainyard-cluster-edge-7":   "",
		"system:serviceaccount:hub:trainyard-cluster-edge-8":   "the ServiceAccount hub/trainyard-cluster-edge-8 writes only the ClusterReport hub/edge-8",
		"system:serviceaccount:other:trainyard-cluster-edge-7": "the ServiceAccount other/trainyard-cluster-edge-7 writes only the ClusterReport other/edge-7",
		"system:serviceaccount:hub:trainyard":                  "", // the manager: not a cluster's identity
		"kubernetes-admin":                                     "",
		"trainyard-cluster-edge-8":                             "", // a user, not a ServiceAccount
	} {
		if got := ReportWriter(user, r); got != want {
			t.Errorf("%s: %q, want %q", user, got, want)
		}
		if want != "" && !strings.Contains(want, "writes only") {
			t.Fatal("bad case")
		}
	}
}
