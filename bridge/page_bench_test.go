package bridge

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	trainyardv1 "github.com/trainyard-dev/trainyard/api/v1alpha1"
)

// BenchmarkAgePage is one page of GET /v3/clusters/age (500 clusters of
// 10 components with images) read from the informer's objects as the
// bridge keeps them (reportNames), copying nothing: what a page allocates is what
// makes the bridge's GC run while a fleet is walked (issue 32; at 100,000
// clusters, a collection every 60 pages before clusterSharing). The
// response recorder's own buffer is in the figures too.
func BenchmarkAgePage(b *testing.B) {
	t := metav1.NewTime(time.Date(2026, 12, 5, 5, 0, 0, 0, time.UTC))
	reports := cachedReports{}
	s := New(reports, nil, nil, Options{Namespace: "ns", CheckInAuth: CheckInOpen, RateLimit: 1e9, RateBurst: 1e9})
	s.names = &reportNames{byNS: map[string]*namespaceNames{}}
	for i := range 1000 {
		r := &trainyardv1.ClusterReport{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: fmt.Sprintf("cluster-%05d", i)}}
		r.Spec.ClusterID = r.Name
		for c := range 10 {
			r.Spec.Components = append(r.Spec.Components, trainyardv1.ReportedComponent{Name: fmt.Sprintf("comp-%d", c),
				Version: "1.0.0", Image: fmt.Sprintf("registry.example/comp-%d:1.0.0", c)})
		}
		r.Status.FirstSeen, r.Status.LastSeen, r.Status.CheckIns = &t, &t, 3
		reports[r.Name] = r
		s.names.changed("ns", r.Name, r)
	}
	b.ReportAllocs()
	for b.Loop() {
		w := httptest.NewRecorder()
		s.Handler().ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/v3/clusters/age?limit=500", nil))
		if w.Code != http.StatusOK {
			b.Fatal(w.Code, w.Body.String())
		}
	}
}

// cachedReports is a cache of reports that hands out its own objects.
type cachedReports map[string]*trainyardv1.ClusterReport

func (c cachedReports) Get(_ context.Context, key client.ObjectKey, obj client.Object, _ ...client.GetOption) error {
	r, ok := c[key.Name]
	if !ok {
		return fmt.Errorf("no %s", key)
	}
	*obj.(*trainyardv1.ClusterReport) = *r
	return nil
}

func (c cachedReports) List(context.Context, client.ObjectList, ...client.ListOption) error {
	return fmt.Errorf("not listed: the page reads the names")
}
