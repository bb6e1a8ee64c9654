package bridge

import (
	"encoding/json"
	"maps"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	trainyardv1 "github.com/trainyard-dev/trainyard/api/v1alpha1"
	"github.com/trainyard-dev/trainyard/internal/validation"
	"github.com/trainyard-dev/trainyard/internal/wire"
)

// FuzzCheckInToReport drives a check-in (POST /v3/clusters, and POST
// /v2/clusters/{id} with the path's ID) through its handler, from the raw
// body to the ClusterReport the store creates and the answer:
//
//   - the body is decoded as encoding/json decodes it, within the route's
//     limits (no list or map longer than its item limit), and refused past
//     any limit (also at small limits, which the fuzzer's inputs reach);
//   - a decoded check-in that misses a field, or whose report fails
//     validation.ClusterReport, is refused with a 422 and nothing is
//     written; any other is written, as exactly one report that passes
//     validation;
//   - the report holds exactly what was sent (each component's name, type,
//     train, version and image, the properties, the ID), and converting it
//     back (clusterOf, which the answer is) gives the same components.
func FuzzCheckInToReport(f *testing.F) {
	f.Add([]byte(`{"id":"c1","components":[{"component":{"name":"router"},"version":{"version":"v1"}}]}`))
	lim := routeLimits(f, http.MethodPost, "/v3/clusters")
	if v2 := routeLimits(f, http.MethodPost, "/v2/clusters/{id}"); v2 != lim || lim.items != trainyardv1.MaxClusterComponents {
		f.Fatalf("check-in limits %+v and %+v", lim, v2)
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		sh := shapeOf(body)
		checkDecode[wire.Cluster](t, body, sh, smallLimits(lim, body, true), len(body)%2 == 0)
		if c, ok := checkDecode[wire.Cluster](t, body, sh, lim, true); ok {
			n := max(len(c.Components), len(c.Properties))
			for _, cv := range c.Components {
				if cv.Version != nil {
					n = max(n, len(cv.Version.Data))
				}
			}
			if n > lim.items {
				t.Fatalf("a list or map of %d items decoded past the limit of %d", n, lim.items)
			}
		}
		// POST /v3/clusters, or (every other length) /v2/clusters/c1.
		api := &fuzzAPI{}
		w := httptest.NewRecorder()
		var p params
		pathID := ""
		if len(body)/2%2 == 1 {
			pathID = "c1"
			p = params{"id": pathID}
		}
		fuzzServer(api).checkIn(w, fuzzRequest(body, lim, true), p)
		checkCheckIn(t, body, sh, lim, pathID, w, api)
	})
}

// checkCheckIn checks the check-in route's answer w to body, and what it
// wrote.
func checkCheckIn(t *testing.T, body []byte, sh jsonShape, lim limits, pathID string, w *httptest.ResponseRecorder, api *fuzzAPI) {
	t.Helper()
	refused := func(codes ...int) {
		t.Helper()
		checkRefusal(t, w, codes...)
		if len(api.created) > 0 {
			t.Fatalf("refused with %d %s, and wrote %d objects", w.Code, w.Body, len(api.created))
		}
	}
	c, ok, codes := wantDecode[wire.Cluster](body, sh, lim, true)
	if !ok {
		refused(codes...)
		return
	}
	if pathID != "" {
		if c.ID != "" && !strings.EqualFold(c.ID, pathID) {
			refused(http.StatusBadRequest)
			return
		}
		c.ID = pathID
	}
	want, missing := reportOf(c)
	if missing != "" {
		checkRequired(t, w, missing)
		refused(http.StatusUnprocessableEntity)
		return
	}
	if errs := validation.ClusterReport(want, nil); len(errs) > 0 {
		refused(http.StatusUnprocessableEntity)
		return
	}
	if w.Code != http.StatusOK || len(api.created) != 1 {
		t.Fatalf("answered %d %s and wrote %d objects; want the report written: %s", w.Code, w.Body, len(api.created), asJSON(want.Spec))
	}
	stored, ok := api.created[0].(*trainyardv1.ClusterReport)
	if !ok {
		t.Fatalf("wrote a %T", api.created[0])
	}
	if errs := validation.ClusterReport(stored, nil); len(errs) > 0 {
		t.Fatalf("wrote a report that fails validation: %v", errs.ToAggregate())
	}
	if stored.Namespace != fuzzNS || stored.Name != want.Name || stored.Spec.ClusterID != c.ID ||
		!slices.Equal(stored.Spec.Components, want.Spec.Components) || !maps.Equal(stored.Spec.Properties, c.Properties) {
		t.Fatalf("wrote %s/%s %s; want %s", stored.Namespace, stored.Name, asJSON(stored.Spec), asJSON(want.Spec))
	}
	// Back to the wire: the components as sent, as far as a report keeps
	// them (not descriptions, nor data other than the image).
	sent := sentComponents(c)
	if back := clusterOf(stored, nil); back.ID != c.ID || !reflect.DeepEqual(back.Components, sent) || !maps.Equal(back.Properties, c.Properties) {
		t.Fatalf("the report converts back to %s; want %s", asJSON(back), asJSON(wire.Cluster{ID: c.ID, Components: sent, Properties: c.Properties}))
	}
	var answer wire.Cluster
	if err := json.Unmarshal(w.Body.Bytes(), &answer); err != nil || answer.ID != c.ID || !reflect.DeepEqual(answer.Components, sent) ||
		!maps.Equal(answer.Properties, c.Properties) || answer.FirstSeen == nil || answer.LastSeen == nil {
		t.Fatalf("answered %s (%v); want %s", w.Body, err, asJSON(wire.Cluster{ID: c.ID, Components: sent, Properties: c.Properties}))
	}
}

// reportOf is the report a check-in asks for, or the first field it misses.
func reportOf(c wire.Cluster) (*trainyardv1.ClusterReport, string) {
	switch {
	case c.ID == "":
		return nil, "id"
	case c.Components == nil:
		return nil, "components"
	}
	r := &trainyardv1.ClusterReport{
		ObjectMeta: metav1.ObjectMeta{Namespace: fuzzNS, Name: strings.ToLower(c.ID)},
		Spec:       trainyardv1.ClusterReportSpec{ClusterID: c.ID, Properties: c.Properties},
	}
	for i, cv := range c.Components {
		at := "components[" + strconv.Itoa(i) + "]"
		switch {
		case cv.Component == nil || cv.Component.Name == "":
			return nil, at + ".component.name"
		case cv.Version == nil || cv.Version.Version == "":
			return nil, at + ".version.version"
		}
		rc := trainyardv1.ReportedComponent{Name: cv.Component.Name, Type: cv.Component.Type, Train: cv.Version.Train,
			Version: cv.Version.Version, Image: cv.Version.Data["image"]}
		if rc.Train == "" {
			rc.Train = "stable"
		}
		r.Spec.Components = append(r.Spec.Components, rc)
	}
	return r, ""
}

// asJSON is v in JSON, for messages.
func asJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return err.Error()
	}
	return string(b)
}

// sentComponents are a check-in's components in wire form, as far as a
// report keeps them.
func sentComponents(c wire.Cluster) []wire.ComponentVersion {
	out := []wire.ComponentVersion{}
	for _, cv := range c.Components {
		back := wire.ComponentVersion{Component: &wire.Component{Name: cv.Component.Name, Type: cv.Component.Type},
			Version: &wire.Version{Train: cv.Version.Train, Version: cv.Version.Version}}
		if back.Version.Train == "" {
			back.Version.Train = "stable"
		}
		if image := cv.Version.Data["image"]; image != "" {
			back.Version.Data = map[string]string{"image": image}
		}
		out = append(out, back)
	}
	return out
}
