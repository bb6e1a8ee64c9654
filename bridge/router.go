package bridge

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"

	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/trainyard-dev/trainyard/internal/validation"
	"github.com/trainyard-dev/trainyard/internal/wire"
)

// route is one endpoint: a method, a path pattern whose {name} segments
// are parameters, who may call it and what its requests may carry. The
// table of routes is also what /openapi.json is checked against.
type route struct {
	method  string
	pattern string
	access  access
	limits  limits
	segs    []string
	handle  func(w http.ResponseWriter, r *http.Request, p params)
}

type params map[string]string

// router dispatches on method and path, answering JSON errors for unknown
// paths (404) and wrong methods (405 with Allow), which http.ServeMux
// answers in plain text, and 400 for a path parameter that cannot name
// anything (paramRules).
type router struct {
	routes []route
	// tenant says whether a /tenants/{tenant}/... prefix names a tenant.
	tenant func(string) bool
	// guard wraps every handler (limits, authentication, metrics, audit).
	guard func(pattern string, a access, l limits, h func(http.ResponseWriter, *http.Request, params)) func(http.ResponseWriter, *http.Request, params)
}

// add registers a route. It panics on a route that does not declare who
// may call it, or what its requests may carry: no route takes an unbounded
// body by omission.
func (rt *router) add(method, pattern string, a access, l limits, h func(http.ResponseWriter, *http.Request, params)) {
	if a == 0 {
		panic("bridge: route " + method + " " + pattern + " declares no access")
	}
	if !l.declared() {
		panic("bridge: route " + method + " " + pattern + " declares no body and item limits")
	}
	if (method == http.MethodGet) != (l.body == noBody) {
		panic("bridge: route " + method + " " + pattern + ": a GET takes no body, and every other method declares its body's limit")
	}
	if rt.guard != nil {
		h = rt.guard(method+" "+pattern, a, l, h)
	}
	rt.routes = append(rt.routes, route{method: method, pattern: pattern, access: a, limits: l,
		segs: strings.Split(strings.Trim(pattern, "/"), "/"), handle: h})
}

// paramRules check path parameters before any handler or map sees them,
// so that a 300-character or unicode segment costs nothing.
var paramRules = map[string]func(*field.Path, string) field.ErrorList{
	"train":     validation.Label,
	"component": validation.Label,
	"release":   validation.Version,
	"id":        validation.ClusterID,
	"uuid":      validateDoctorID,
}

// match compares path segments; literal segments are tried in table order,
// so a literal route ("/v3/clusters/count") listed before a parameter route
// ("/v3/clusters/{id}") wins.
func match(pattern, path []string) (params, bool) {
	if len(pattern) != len(path) {
		return nil, false
	}
	var p params
	for i, s := range pattern {
		if strings.HasPrefix(s, "{") {
			if path[i] == "" {
				return nil, false
			}
			if p == nil {
				p = params{}
			}
			p[strings.Trim(s, "{}")] = path[i]
			continue
		}
		if s != path[i] {
			return nil, false
		}
	}
	return p, true
}

// tenantKey holds the request's tenant (its namespace) in its context.
type tenantKey struct{}

// tenantOf is the request's tenant, or def without a /tenants/ prefix.
func tenantOf(ctx context.Context, def string) string {
	if t, ok := ctx.Value(tenantKey{}).(string); ok {
		return t
	}
	return def
}

// segments splits the path as sent, then decodes each segment: an encoded
// "/" ("%2F") stays inside its segment (and fails the parameter's rules)
// instead of moving the request to another route.
func segments(u *url.URL) []string {
	segs := strings.Split(strings.Trim(u.EscapedPath(), "/"), "/")
	for i, s := range segs {
		if d, err := url.PathUnescape(s); err == nil {
			segs[i] = d
		}
	}
	return segs
}

// checkParams is the 400 message for the first bad path parameter, or "".
func checkParams(segs []string, p params) string {
	for _, seg := range segs {
		name := strings.Trim(seg, "{}")
		if rule := paramRules[name]; rule != nil && name != seg {
			if errs := rule(field.NewPath("path", name), p[name]); len(errs) > 0 {
				return errs.ToAggregate().Error()
			}
		}
	}
	return ""
}

func (rt *router) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	r = withRequestID(w, r)
	path := segments(r.URL)
	if len(path) >= 2 && path[0] == "tenants" && rt.tenant != nil {
		// /tenants/{tenant}/<route>: the route, in the tenant's namespace.
		if !rt.tenant(path[1]) {
			writeError(w, http.StatusNotFound, fmt.Sprintf("404 no tenant %q", path[1]))
			return
		}
		r = r.WithContext(context.WithValue(r.Context(), tenantKey{}, path[1]))
		path = path[2:]
	}
	var allowed []string
	for _, ro := range rt.routes {
		p, ok := match(ro.segs, path)
		if !ok {
			continue
		}
		if ro.method != r.Method && !(ro.method == http.MethodGet && r.Method == http.MethodHead) {
			if !slices.Contains(allowed, ro.method) {
				allowed = append(allowed, ro.method)
			}
			continue
		}
		if msg := checkParams(ro.segs, p); msg != "" {
			writeError(w, http.StatusBadRequest, msg)
			return
		}
		ro.handle(w, r, p)
		return
	}
	if len(allowed) > 0 {
		w.Header().Set("Allow", strings.Join(allowed, ", "))
		writeError(w, http.StatusMethodNotAllowed, fmt.Sprintf("method %s not allowed; allowed: %s", r.Method, strings.Join(allowed, ", ")))
		return
	}
	writeError(w, http.StatusNotFound, fmt.Sprintf("404 path %s not found", r.URL.Path))
}

// writeJSON answers status with v as JSON.
func writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "encoding the answer: "+err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(append(body, '\n'))
}

// writeError answers {"code": status, "message": msg}.
func writeError(w http.ResponseWriter, status int, msg string) {
	body, _ := json.Marshal(wire.Error{Code: status, Message: msg, RequestID: w.Header().Get(HeaderRequestID)})
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(append(body, '\n'))
}

// writeCacheable answers 200 with body and its ETag, or 304 when the
// client's If-None-Match already names it: agents that poll pay for a body
// only when it changed.
func writeCacheable(w http.ResponseWriter, r *http.Request, body []byte) {
	etag := etagOf(body)
	w.Header().Set("ETag", etag)
	w.Header().Set("Cache-Control", "no-cache")
	if matches(r, etag) {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(body)
}

// writeCacheableJSON is writeCacheable for a value.
func writeCacheableJSON(w http.ResponseWriter, r *http.Request, v any) {
	body := answerBuffers.Get().(*bytes.Buffer)
	defer func() {
		if body.Cap() <= maxPooledAnswer {
			body.Reset()
			answerBuffers.Put(body)
		}
	}()
	// Encode is Marshal and a newline, without copying a page's answer
	// once more to append it.
	if err := json.NewEncoder(body).Encode(v); err != nil {
		writeError(w, http.StatusInternalServerError, "encoding the answer: "+err.Error())
		return
	}
	writeCacheable(w, r, body.Bytes())
}

// answerBuffers keeps answers' buffers between requests. Growing a new one
// to a page of 500 clusters allocated 1.4 MB a page, half of what a page
// allocates, and a page that allocates during a collection helps mark the
// bridge's heap in proportion: that was much of the fleet pages' tail at
// 100,000 clusters (issue 32). The pool holds at most a buffer per request
// in flight (the fair shares bound those), none over maxPooledAnswer, and
// the runtime empties it over two collections.
var answerBuffers = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// maxPooledAnswer is the largest buffer kept: a page of 500 clusters of
// ten components is about 0.6 MB.
const maxPooledAnswer = 4 << 20
