package bridge

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
)

// The OpenAPI document and the route table must list the same routes.
func TestOpenAPIDocumentsEveryRoute(t *testing.T) {
	var doc struct {
		OpenAPI string                               `json:"openapi"`
		Paths   map[string]map[string]map[string]any `json:"paths"`
	}
	if err := json.Unmarshal(openAPIDoc, &doc); err != nil {
		t.Fatalf("openapi.json does not parse: %v", err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.") {
		t.Errorf("openapi = %q, want 3.x", doc.OpenAPI)
	}
	var documented, served []string
	for path, ops := range doc.Paths {
		for method := range ops {
			documented = append(documented, strings.ToUpper(method)+" "+path)
		}
	}
	s := New(nil, nil, nil, Options{Namespace: "x"})
	for _, r := range s.routeTable {
		served = append(served, r.method+" "+r.pattern)
	}
	slices.Sort(documented)
	slices.Sort(served)
	for _, r := range served {
		if !slices.Contains(documented, r) {
			t.Errorf("route %s is not in openapi.json", r)
		}
	}
	for _, d := range documented {
		if !slices.Contains(served, d) {
			t.Errorf("openapi.json documents %s, which no route serves", d)
		}
	}
	// Who may call each route is declared once, in the route table, and the
	// document says the same.
	var ops map[string]map[string]struct {
		Access string `json:"x-trainyard-access"`
	}
	if err := json.Unmarshal(mustPaths(t), &ops); err != nil {
		t.Fatal(err)
	}
	for _, r := range s.routeTable {
		if r.access == 0 {
			t.Errorf("route %s %s declares no access", r.method, r.pattern)
		}
		if got := ops[r.pattern][strings.ToLower(r.method)].Access; got != r.access.String() {
			t.Errorf("route %s %s: openapi.json says access %q, the route table %q", r.method, r.pattern, got, r.access)
		}
	}
	for _, m := range []string{http.MethodGet, http.MethodPost} {
		if !slices.ContainsFunc(served, func(r string) bool { return strings.HasPrefix(r, m+" ") }) {
			t.Errorf("no %s route at all", m)
		}
	}
}

// mustPaths is the document's paths object.
func mustPaths(t *testing.T) []byte {
	var doc struct {
		Paths json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(openAPIDoc, &doc); err != nil {
		t.Fatal(err)
	}
	return doc.Paths
}

// A route added without an access is refused when the table is built.
func TestRouteWithoutAccessIsRefused(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("a route without access was added")
		}
	}()
	(&router{}).add(http.MethodGet, "/x", 0, none, nil)
}

// A route without declared body and item limits cannot be registered: no
// route takes an unbounded body by omission.
func TestRouteWithoutLimitsIsRefused(t *testing.T) {
	for _, c := range []struct {
		method string
		lim    limits
	}{
		{http.MethodPost, limits{}},                    // nothing declared
		{http.MethodPost, limits{body: 1 << 20}},       // no item limit
		{http.MethodPost, limits{items: 10}},           // no body limit
		{http.MethodPost, none},                        // a POST that takes no body
		{http.MethodGet, limits{body: 1, items: 1}},    // a GET with a body
		{http.MethodPut, limits{body: -5, items: 256}}, // a negative limit that is not noBody
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s with %+v was registered", c.method, c.lim)
				}
			}()
			(&router{}).add(c.method, "/x", accessPublic, c.lim, nil)
		}()
	}
	// Declared limits are taken.
	rt := &router{}
	rt.add(http.MethodPost, "/x", accessPublic, limits{body: 1 << 20, items: 256}, nil)
	rt.add(http.MethodGet, "/y", accessPublic, none, nil)
	if len(rt.routes) != 2 {
		t.Fatalf("%d routes registered", len(rt.routes))
	}
}
