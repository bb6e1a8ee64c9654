package dev

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/gbytes"
	"github.com/onsi/gomega/gexec"
	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	trainyardv1 "github.com/trainyard-dev/trainyard/api/v1alpha1"
	"github.com/trainyard-dev/trainyard/internal/testenv"
	"github.com/trainyard-dev/trainyard/test/util"
)

// The omnibus suite drives the whole system as users run it (`make dev`:
// etcd, kube-apiserver, the manager binary with its webhook registered and
// default flags, an agent) through the bridge over real HTTP. For every
// route and method in bridge/openapi.json it generates, from the document,
// valid requests and hostile ones: missing and extra fields, wrong types,
// nulls, empty, huge and deeply nested values, duplicate keys, invalid
// UTF-8, odd path segments, and every credential variant. Every answer must
// be JSON with a status the document lists for that operation: never a 5xx,
// never a dropped connection, never longer than 5 s. Then each route gets a
// flood of 2,000 requests, and the manager's memory must come back within
// omnibusRSSBound. A route added to the document is covered without a change
// here.

// omnibusRSSBound is how much more the manager may keep resident after the
// floods than before them. The floods legitimately add about 800
// ClusterReports to its cache (about 5 MiB in all in our runs); what they must not add is memory per
// made-up name, token or address.
const omnibusRSSBound = 32 << 20

// maxAnswer is the longest any answer may take.
const maxAnswer = 5 * time.Second

type openAPI struct {
	Paths      map[string]map[string]json.RawMessage `json:"paths"`
	Components struct {
		Schemas map[string]*schema `json:"schemas"`
	} `json:"components"`
}

type schema struct {
	Ref        string             `json:"$ref"`
	Type       string             `json:"type"`
	Format     string             `json:"format"`
	Required   []string           `json:"required"`
	Properties map[string]*schema `json:"properties"`
	Items      *schema            `json:"items"`
	MaxItems   int                `json:"maxItems"`
	// additionalProperties of a map (a string map is all the bridge has).
	AdditionalProperties any `json:"additionalProperties"`
}

type operation struct {
	method, path string
	Access       string      `json:"x-trainyard-access"`
	Parameters   []parameter `json:"parameters"`
	RequestBody  *struct {
		Content map[string]struct {
			Schema *schema `json:"schema"`
		} `json:"content"`
	} `json:"requestBody"`
	Responses map[string]json.RawMessage `json:"responses"`
}

type parameter struct {
	Name     string  `json:"name"`
	In       string  `json:"in"`
	Required bool    `json:"required"`
	Schema   *schema `json:"schema"`
}

func (o operation) String() string { return strings.ToUpper(o.method) + " " + o.path }

func (o operation) documents(code int) bool { _, ok := o.Responses[strconv.Itoa(code)]; return ok }

// readOpenAPI lists the document's operations, in a stable order.
func readOpenAPI() ([]operation, openAPI) {
	GinkgoHelper()
	raw, err := os.ReadFile(filepath.Join(testenv.RepoRoot(), "bridge", "openapi.json"))
	Expect(err).NotTo(HaveOccurred())
	var doc openAPI
	Expect(json.Unmarshal(raw, &doc)).To(Succeed())
	var ops []operation
	for path, methods := range doc.Paths {
		for method, rawOp := range methods {
			if method == "parameters" {
				continue
			}
			op := operation{method: strings.ToUpper(method), path: path}
			Expect(json.Unmarshal(rawOp, &op)).To(Succeed())
			Expect(op.Access).NotTo(BeEmpty(), "%s declares no x-trainyard-access", op)
			ops = append(ops, op)
		}
	}
	sort.Slice(ops, func(i, j int) bool { return ops[i].String() < ops[j].String() })
	return ops, doc
}

func (d openAPI) resolve(s *schema) *schema {
	for s != nil && s.Ref != "" {
		s = d.Components.Schemas[strings.TrimPrefix(s.Ref, "#/components/schemas/")]
	}
	return s
}

// example is a valid value of s, every property filled: "x" is a valid
// name, train, version and cluster ID alike, so one generator fits every
// route.
func (d openAPI) example(s *schema, depth int) any {
	s = d.resolve(s)
	if s == nil || depth > 8 {
		return "x"
	}
	switch s.Type {
	case "object", "":
		if s.Properties == nil {
			if s.AdditionalProperties != nil {
				return map[string]any{"key": "x"}
			}
			return map[string]any{}
		}
		m := map[string]any{}
		for name, p := range s.Properties {
			m[name] = d.example(p, depth+1)
		}
		return m
	case "array":
		return []any{d.example(s.Items, depth+1)}
	case "integer", "number":
		return 1
	case "boolean":
		return true
	}
	if s.Format == "date-time" {
		return "2026-11-01T00:00:00Z"
	}
	return "x"
}

// request is one generated request.
type request struct {
	name    string
	op      operation
	path    string
	query   string
	ctype   string
	body    []byte
	auth    string // the Authorization header
	ifMatch string
	// want: the statuses this variant must get (nil: any the document
	// lists for the operation); a hostile variant has its own.
	want []int
	// prefix: the tenant's route prefix ("" for the default tenant).
	prefix string
}

// refusedWith says which status each credential variant gets on a route of
// the given access, as the bridge documents them (docs/bridge.md): a
// missing or unusable credential is 401, a valid one without the right is
// 403; reads and the public routes need none.
func refusedWith(access, variant string) []int {
	switch access {
	case "public", "read":
		return []int{http.StatusOK}
	case "agent":
		if variant == "another cluster's token" {
			return []int{http.StatusForbidden}
		}
		return []int{http.StatusUnauthorized}
	case "publish", "doctor-read":
		switch variant {
		case "another tenant's token", "a publisher without RBAC":
			return []int{http.StatusForbidden}
		}
		return []int{http.StatusUnauthorized}
	}
	return nil
}

// credentials are the variants every route is tried with.
type credentials struct {
	// registration is cluster x's credential (issued when a registration
	// token registered it), otherCluster another cluster's.
	registration, otherCluster, publisher, noRBAC, otherTenant, secretsReader string
}

func (c credentials) valid(access string) string {
	switch access {
	case "agent":
		return "Bearer " + c.registration
	case "publish":
		return "Bearer " + c.publisher
	case "doctor-read":
		return "Bearer " + c.secretsReader
	}
	return ""
}

func (c credentials) variants() map[string]string {
	return map[string]string{
		"no credential":            "",
		"malformed bearer":         "Bearer",
		"malformed scheme":         "Token abc",
		"malformed basic":          "Basic !!!not-base64",
		"another cluster's token":  "Bearer " + c.otherCluster,
		"another tenant's token":   "Bearer " + c.otherTenant,
		"a publisher without RBAC": "Bearer " + c.noRBAC,
		"a made-up token":          "Bearer 0123456789abcdef0123456789abcdef",
	}
}

// pathFor fills the path's parameters: with "x", or with value for one.
func pathFor(op operation, param, value string) string {
	p := op.path
	for _, prm := range op.Parameters {
		if prm.In != "path" {
			continue
		}
		v := "x"
		if prm.Name == param {
			v = value
		}
		p = strings.ReplaceAll(p, "{"+prm.Name+"}", v)
	}
	return p
}

// mutations of a JSON object: each property missing, null, of every wrong
// type, empty, huge, deeply nested; plus an extra field.
func bodyMutations(valid map[string]any) map[string][]byte {
	out := map[string][]byte{}
	enc := func(m map[string]any) []byte { b, _ := json.Marshal(m); return b }
	with := func(k string, v any) []byte {
		m := map[string]any{}
		for kk, vv := range valid {
			m[kk] = vv
		}
		m[k] = v
		return enc(m)
	}
	// raw puts a literal JSON text in place of k's value.
	raw := func(k, lit string) []byte {
		b := with(k, "\x00PLACEHOLDER\x00")
		return bytes.Replace(b, []byte(`"\u0000PLACEHOLDER\u0000"`), []byte(lit), 1)
	}
	keys := make([]string, 0, len(valid))
	for k := range valid {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		m := map[string]any{}
		for kk, vv := range valid {
			if kk != k {
				m[kk] = vv
			}
		}
		out["missing "+k] = enc(m)
		out["null "+k] = with(k, nil)
		out["number "+k] = with(k, 12345)
		out["bool "+k] = with(k, true)
		out["string "+k] = with(k, "x")
		out["empty string "+k] = with(k, "")
		out["array "+k] = with(k, []any{"x", 1, nil})
		out["object "+k] = with(k, map[string]any{"unexpected": map[string]any{"deeper": []any{}}})
		out["huge string "+k] = with(k, strings.Repeat("h", 200<<10))
		out["huge number "+k] = raw(k, "1"+strings.Repeat("0", 400))
		out["deep nesting "+k] = raw(k, strings.Repeat("[", 20000)+strings.Repeat("]", 20000))
		out["unicode "+k] = with(k, "ünïcödé-☃")
		out["invalid UTF-8 "+k] = raw(k, "\"a\xff\xfeb\"")
		if sub, ok := valid[k].(map[string]any); ok {
			for sk, sv := range bodyMutations(sub) {
				out[k+"."+sk] = raw(k, string(sv))
			}
		}
	}
	out["extra field"] = with("unexpectedExtraField", map[string]any{"a": 1})
	if len(keys) > 0 {
		b := enc(valid)
		out["duplicate key"] = append([]byte(`{"`+keys[0]+`":"dup",`), b[1:]...)
	}
	return out
}

// generate lists every request of the sweep for op.
func generate(op operation, doc openAPI, creds credentials) []request {
	base := request{op: op, path: pathFor(op, "", ""), auth: creds.valid(op.Access)}
	// Required query parameters get a plausible value: a window's times in
	// order (2026, then 2030), "x" otherwise.
	years := []string{"2026", "2030"}
	for _, prm := range op.Parameters {
		if prm.In != "query" || !prm.Required {
			continue
		}
		v := "x"
		if prm.Schema != nil && prm.Schema.Format == "date-time" && len(years) > 0 {
			v, years = years[0]+"-01-01T00:00:00Z", years[1:]
		}
		if base.query != "" {
			base.query += "&"
		}
		base.query += prm.Name + "=" + v
	}
	var valid map[string]any
	if op.RequestBody != nil {
		base.ctype = "application/json"
		if c, ok := op.RequestBody.Content["application/json"]; ok {
			v, _ := doc.example(c.Schema, 0).(map[string]any)
			valid = v
			base.body, _ = json.Marshal(valid)
		}
	}
	var reqs []request
	add := func(name string, mutate func(*request)) {
		r := base
		r.name = name
		mutate(&r)
		reqs = append(reqs, r)
	}
	add("valid", func(r *request) { r.want = []int{http.StatusOK} })
	for _, prm := range op.Parameters {
		switch prm.In {
		case "path":
			for name, v := range map[string]string{"unicode": "%C3%BCn%C3%AFc%C3%B6de", "dots": "a.b", "dot-dot": "..",
				"300 characters": strings.Repeat("a", 300), "upper case": "ABC", "percent-encoded slash": "a%2Fb",
				"control character": "a%00b", "space": "a%20b"} {
				add(fmt.Sprintf("path {%s} %s", prm.Name, name), func(r *request) { r.path = pathFor(op, prm.Name, v) })
			}
		case "query":
			// The other parameters as in the valid request.
			with := func(v string) string {
				var kept []string
				for _, kv := range strings.Split(base.query, "&") {
					if kv != "" && !strings.HasPrefix(kv, prm.Name+"=") {
						kept = append(kept, kv)
					}
				}
				if v != "\x00" {
					kept = append(kept, prm.Name+"="+v)
				}
				return strings.Join(kept, "&")
			}
			for name, v := range map[string]string{"garbage": "%FF%FE", "huge": strings.Repeat("9", 3000), "empty": "",
				"negative": "-1", "unicode": "%E2%98%83", "plausible": "2026-11-01T00:00:00Z"} {
				add(fmt.Sprintf("query %s %s", prm.Name, name), func(r *request) { r.query = with(v) })
			}
			if prm.Required {
				add(fmt.Sprintf("query %s left out", prm.Name), func(r *request) {
					r.query, r.want = with("\x00"), []int{http.StatusBadRequest}
				})
			}
		}
	}
	for name, auth := range creds.variants() {
		add("credential: "+name, func(r *request) { r.auth, r.want = auth, refusedWith(op.Access, name) })
	}
	add("If-None-Match", func(r *request) { r.ifMatch = `"0123"` })
	if op.RequestBody != nil {
		var bodySchema *schema
		if c, ok := op.RequestBody.Content["application/json"]; ok {
			bodySchema = doc.resolve(c.Schema)
		}
		for name, body := range bodyMutations(valid) {
			add("body: "+name, func(r *request) { r.body = body })
		}
		bad := []int{http.StatusBadRequest}
		add("body: empty", func(r *request) { r.body, r.want = nil, bad })
		add("body: not JSON", func(r *request) { r.body, r.want = []byte("{not json"), bad })
		add("body: two values", func(r *request) { r.body, r.want = append(append([]byte{}, base.body...), base.body...), bad })
		add("body: top-level array", func(r *request) { r.body, r.want = []byte(`[1,2,3]`), bad })
		// 2 MiB of blanks: past the route's body limit (413), or, where it
		// takes more (a doctor dump), a body with no JSON value in it (400).
		add("body: 2 MiB", func(r *request) {
			r.body, r.want = bytes.Repeat([]byte(" "), 2<<20), []int{http.StatusRequestEntityTooLarge, http.StatusBadRequest}
		})
		add("content type: text/plain", func(r *request) { r.ctype, r.want = "text/plain", []int{http.StatusUnsupportedMediaType} })
		add("content type: none", func(r *request) { r.ctype = "" })
		add("content type: malformed", func(r *request) { r.ctype, r.want = "application/json; =", []int{http.StatusUnsupportedMediaType} })
		if bodySchema != nil {
			// A required field left out is named in a 422.
			for _, req := range bodySchema.Required {
				if slices.ContainsFunc(op.Parameters, func(p parameter) bool { return p.In == "path" && p.Name == req }) {
					continue // the route takes it from the path (/v2/clusters/{id})
				}
				add("body: required "+req+" left out", func(r *request) {
					m := map[string]any{}
					for k, v := range valid {
						if k != req {
							m[k] = v
						}
					}
					r.body, _ = json.Marshal(m)
					r.want = []int{http.StatusUnprocessableEntity}
				})
			}
			// One item over a list's maxItems is refused before it is decoded.
			for name, p := range bodySchema.Properties {
				if p = doc.resolve(p); p.MaxItems == 0 {
					continue
				}
				add(fmt.Sprintf("body: %d items in %s (maxItems %d)", p.MaxItems+1, name, p.MaxItems), func(r *request) {
					items := make([]any, p.MaxItems+1)
					for i := range items {
						items[i] = doc.example(p.Items, 1)
					}
					m := map[string]any{}
					for k, v := range valid {
						m[k] = v
					}
					m[name] = items
					r.body, _ = json.Marshal(m)
					r.want = []int{http.StatusRequestEntityTooLarge, http.StatusUnprocessableEntity}
				})
			}
		}
	}
	return reqs
}

// sources hands out loopback addresses, so that the sweep is many clients
// rather than one that the rate limits (rightly) stop.
type sources struct {
	n atomic.Uint32
	// of, when not 0, is how many addresses take turns.
	of uint32
}

func (s *sources) client() *http.Client {
	n := s.n.Add(1)
	if s.of > 0 {
		n = 1<<20 + n%s.of
	}
	ip := net.IPv4(127, 100+byte(n>>16), byte(n>>8), byte(n))
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: ip}, Timeout: maxAnswer}
	return &http.Client{Timeout: maxAnswer + time.Second,
		Transport: &http.Transport{DialContext: d.DialContext, DisableKeepAlives: true}}
}

// outcome is what one request got.
type outcome struct {
	code       int
	took       time.Duration
	problem    string
	retryAfter string
	// budgetWaits: 429s of a budget (Retry-After) waited out before it.
	budgetWaits int
}

// sendAsAClient is send as a well-behaved client: a 429 that the variant
// does not expect (its client's budget of failed and invalid requests, or
// its rate, ran out) is waited out as its Retry-After says, and the request
// sent again.
func sendAsAClient(c *http.Client, base string, r request) outcome {
	for waits := 0; ; waits++ {
		o := send(c, base, r)
		o.budgetWaits = waits
		if o.code != http.StatusTooManyRequests || r.want == nil || slices.Contains(r.want, o.code) || waits == 20 {
			return o
		}
		secs, err := strconv.Atoi(o.retryAfter)
		if err != nil || secs < 1 {
			o.problem = fmt.Sprintf("a 429 with Retry-After %q", o.retryAfter)
			return o
		}
		time.Sleep(time.Duration(secs) * time.Second)
	}
}

func send(c *http.Client, base string, r request) outcome {
	u := base + r.prefix + r.path
	if r.query != "" {
		u += "?" + r.query
	}
	var body io.Reader
	if r.body != nil {
		body = bytes.NewReader(r.body)
	}
	req, err := http.NewRequest(r.op.method, u, body)
	if err != nil {
		return outcome{problem: "building the request: " + err.Error()}
	}
	if r.ctype != "" {
		req.Header.Set("Content-Type", r.ctype)
	}
	if r.auth != "" {
		req.Header.Set("Authorization", r.auth)
	}
	if r.ifMatch != "" {
		req.Header.Set("If-None-Match", r.ifMatch)
	}
	start := time.Now()
	resp, err := c.Do(req)
	if err != nil {
		return outcome{took: time.Since(start), problem: "no answer (dropped connection or timeout): " + err.Error()}
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	o := outcome{code: resp.StatusCode, took: time.Since(start), retryAfter: resp.Header.Get("Retry-After")}
	switch {
	case err != nil:
		o.problem = "the answer broke off: " + err.Error()
	case o.took > maxAnswer:
		o.problem = fmt.Sprintf("took %s", o.took)
	case o.code >= 500:
		o.problem = fmt.Sprintf("a %d: %s", o.code, data)
	case r.want != nil && !slices.Contains(r.want, o.code):
		o.problem = fmt.Sprintf("status %d, want %v: %.200s", o.code, r.want, data)
	case !r.op.documents(o.code):
		o.problem = fmt.Sprintf("status %d is not documented for %s: %s", o.code, r.op, data)
	case len(data) > 0 && resp.Header.Get("Content-Type") != "application/json":
		o.problem = fmt.Sprintf("a %d with Content-Type %q", o.code, resp.Header.Get("Content-Type"))
	case len(data) > 0 && !json.Valid(data):
		o.problem = fmt.Sprintf("a %d whose body is not JSON: %.200s", o.code, data)
	case o.code >= 400:
		var e struct {
			Code    int    `json:"code"`
			Message string `json:"message"`
		}
		if json.Unmarshal(data, &e) != nil || e.Code != o.code || e.Message == "" {
			o.problem = fmt.Sprintf("a %d that is not a {code, message} error: %.200s", o.code, data)
		}
	}
	return o
}

// bridgeRSS is the resident memory of the dev bridge (`trainyard bridge`,
// a process of its own as the chart runs it), in bytes.
func bridgeRSS(state string) int64 {
	GinkgoHelper()
	var pids []string
	for _, p := range util.ProcessesMentioning(state) {
		if strings.Contains(p, " bridge --") {
			pids = append(pids, strings.SplitN(p, ":", 2)[0])
		}
	}
	Expect(pids).To(HaveLen(1), "one bridge process")
	status, err := os.ReadFile(filepath.Join("/proc", pids[0], "status"))
	Expect(err).NotTo(HaveOccurred())
	m := regexp.MustCompile(`VmRSS:\s+(\d+) kB`).FindSubmatch(status)
	Expect(m).NotTo(BeNil())
	kb, _ := strconv.ParseInt(string(m[1]), 10, 64)
	return kb << 10
}

// omnibusTenant is the tenant the sweep also covers, under
// /tenants/omnibus-tenant/ (the dev bridge serves it: --bridge-tenants).
const omnibusTenant = "omnibus-tenant"

// omnibusCredentials makes every credential variant in the dev cluster, for
// the default tenant (namespace default) and for omnibusTenant: each
// tenant's "another tenant's token" is the other's publisher.
func omnibusCredentials(state, registration, bridgeURL string) (def, tenant credentials) {
	GinkgoHelper()
	ctx := context.Background()
	rc, err := clientcmd.BuildConfigFromFlags("", filepath.Join(state, "kubeconfig"))
	Expect(err).NotTo(HaveOccurred())
	cs, err := kubernetes.NewForConfig(rc)
	Expect(err).NotTo(HaveOccurred())
	sa := func(ns, name string, rules ...rbacv1.PolicyRule) string {
		if ns != "default" {
			_, _ = cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
		}
		_, err := cs.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
		Expect(err).NotTo(HaveOccurred())
		if len(rules) > 0 {
			_, err = cs.RbacV1().Roles(ns).Create(ctx, &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: name}, Rules: rules}, metav1.CreateOptions{})
			Expect(err).NotTo(HaveOccurred())
			_, err = cs.RbacV1().RoleBindings(ns).Create(ctx, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: name},
				RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: name},
				Subjects: []rbacv1.Subject{{Kind: "ServiceAccount", Name: name, Namespace: ns}}}, metav1.CreateOptions{})
			Expect(err).NotTo(HaveOccurred())
		}
		tr, err := cs.CoreV1().ServiceAccounts(ns).CreateToken(ctx, name, &authnv1.TokenRequest{}, metav1.CreateOptions{})
		Expect(err).NotTo(HaveOccurred())
		return tr.Status.Token
	}
	publish := rbacv1.PolicyRule{APIGroups: []string{"trainyard.dev"}, Resources: []string{"componentreleases"}, Verbs: []string{"create"}}
	readSecrets := rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"get"}}
	def = credentials{
		registration:  registration,
		publisher:     sa("default", "omnibus-publisher", publish),
		noRBAC:        sa("default", "omnibus-nobody"),
		secretsReader: sa("default", "omnibus-doctor", readSecrets),
		otherCluster:  "omnibus-other-fleet-token",
	}
	tenant = credentials{
		registration:  "omnibus-tenant-fleet-token",
		publisher:     sa(omnibusTenant, "publisher", publish),
		noRBAC:        sa(omnibusTenant, "nobody"),
		secretsReader: sa(omnibusTenant, "doctor", readSecrets),
		otherCluster:  "omnibus-tenant-other-fleet-token",
		otherTenant:   def.publisher,
	}
	def.otherTenant = tenant.publisher
	// A second fleet's registration token in the default tenant.
	// (A patch: the bridge annotates the Secret, the tokens' expiry and uses.)
	_, err = cs.CoreV1().Secrets("default").Patch(ctx, "trainyard-registration", types.MergePatchType,
		[]byte(`{"stringData":{"other-fleet":"`+def.otherCluster+`"}}`), metav1.PatchOptions{})
	Expect(err).NotTo(HaveOccurred())
	_, err = cs.CoreV1().Secrets(omnibusTenant).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "trainyard-registration"},
		StringData: map[string]string{"fleet": tenant.registration, "other-fleet": tenant.otherCluster}}, metav1.CreateOptions{})
	Expect(err).NotTo(HaveOccurred())
	// In each tenant, cluster "x" (every generated ID) belongs to the first
	// fleet and cluster "other-fleet" to the second, once the bridge has
	// (re-)read the Secret. Each cluster's own credential is what its
	// agent's requests carry.
	checkIn := func(prefix, token, id string) (int, string) {
		req, _ := http.NewRequest(http.MethodPost, bridgeURL+prefix+"/v3/clusters", strings.NewReader(
			`{"id":"`+id+`","components":[{"component":{"name":"x"},"version":{"version":"x"}}]}`))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, ""
		}
		resp.Body.Close()
		return resp.StatusCode, resp.Header.Get("X-Trainyard-Credential")
	}
	register := func(prefix, token, id string) string {
		var issued string
		Eventually(func() int {
			code, cred := checkIn(prefix, token, id)
			issued = cred
			return code
		}, 30*time.Second).Should(Equal(http.StatusOK), "registering %s%s", prefix, id)
		Expect(issued).To(HavePrefix("tyc."))
		return issued
	}
	for _, t := range []struct {
		prefix string
		c      *credentials
	}{{"", &def}, {"/tenants/" + omnibusTenant, &tenant}} {
		t.c.registration = register(t.prefix, t.c.registration, "x")
		t.c.otherCluster = register(t.prefix, t.c.otherCluster, "other-fleet")
		// RBAC takes a moment to reach the authorizer.
		Eventually(func() int {
			req, _ := http.NewRequest(http.MethodPost, bridgeURL+t.prefix+"/v3/versions/stable/omnibus/v1.0.0", strings.NewReader(`{}`))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Authorization", "Bearer "+t.c.publisher)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				return 0
			}
			resp.Body.Close()
			return resp.StatusCode
		}, 30*time.Second).Should(Equal(http.StatusOK))
	}
	return def, tenant
}

// sweep sends reqs with at most workers at once, each from its own source
// address, and returns what went wrong ("request: problem").
func sweep(base string, src *sources, reqs []request, workers int) (problems []string, codes map[int]int) {
	var mu sync.Mutex
	codes = map[int]int{}
	work := make(chan request)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for r := range work {
				o := sendAsAClient(src.client(), base, r)
				mu.Lock()
				codes[o.code]++
				codes[http.StatusTooManyRequests] += o.budgetWaits
				if o.problem != "" {
					problems = append(problems, fmt.Sprintf("%s%s [%s]: %s", r.prefix, r.op, r.name, o.problem))
				}
				mu.Unlock()
			}
		})
	}
	for _, r := range reqs {
		work <- r
	}
	close(work)
	wg.Wait()
	sort.Strings(problems)
	return problems, codes
}

var _ = Describe("every bridge route, as users and attackers call it", Ordered, func() {
	var (
		bridgeURL string
		state     string
		ops       []operation
		doc       openAPI
		creds     credentials
		tenant    credentials
		st        *store
		src       = &sources{}
	)
	BeforeAll(func() {
		var session *gexec.Session
		// Refusals are sent at once: the flood below is then as fast as its
		// senders, the hardest case for the bridge's memory (held refusals,
		// the default, would slow it to a refusal per sender per second,
		// and the sweep gives each request an address of its own anyway).
		// Budgets apply: a cluster sending the sweep's invalid bodies runs
		// out of its budget of failed and invalid requests and is told to
		// wait (429, Retry-After), as any client would be; the sweep waits,
		// as a client should. The budget's rate is raised from 1 to 10 a
		// second so that the sweep's ~500 invalid requests per cluster take
		// a minute, not eight. Likewise a cluster's doctor uploads (three,
		// then one a minute): the sweep sends a hundred as cluster x.
		session, state, _ = startDev("-workloads", "", "--", "--bridge-refusal-delay=0", "--bridge-tenants="+omnibusTenant,
			"--bridge-failed-auth-rate=10", "--bridge-doctor-burst=1000", "--bridge-doctor-per-minute=6000")
		Eventually(session.Out, 2*time.Minute).Should(gbytes.Say("trainyard is ready"))
		banner := string(session.Out.Contents())
		bridgeURL = regexp.MustCompile(`http://127\.0\.0\.1:\d+`).FindString(banner[strings.Index(banner, "curl"):])
		token := regexp.MustCompile(`Authorization: Bearer ([0-9a-f]+)`).FindStringSubmatch(banner)
		Expect(token).To(HaveLen(2))
		ops, doc = readOpenAPI()
		Expect(len(ops)).To(BeNumerically(">=", 18))
		creds, tenant = omnibusCredentials(state, token[1], bridgeURL)
		st = newStore(state, "default", omnibusTenant)
		// The dev agent's own report changes as it checks in: not the sweep's.
		var reports trainyardv1.ClusterReportList
		Expect(st.c.List(context.Background(), &reports, client.InNamespace("default"))).To(Succeed())
		for _, r := range reports.Items {
			if r.Spec.ClusterID != "x" && r.Spec.ClusterID != "other-fleet" {
				st.background["default/"+r.Name] = true
			}
		}
	})

	// Each generated variant carries what it must get: a hostile one (a
	// made-up token, another tenant's or cluster's credential, a publisher
	// without RBAC, a required field left out, one item over a limit, a
	// body too large or not JSON) its own refusal; the valid one a 200.
	// Every write is sent alone, between two reads of the store: a refused
	// write must leave every object as it was, an accepted one must have
	// stored exactly what it sent. Reads run eight at a time and must
	// leave the store unchanged too. Both tenants' routes are swept.
	It("answers every generated request as documented: hostile ones refused with their own status and nothing stored, accepted ones stored as sent", func() {
		var problems []string
		codes := map[int]int{}
		requests := 0
		for _, t := range []struct {
			ns, prefix string
			creds      credentials
		}{{"default", "", creds}, {omnibusTenant, "/tenants/" + omnibusTenant, tenant}} {
			var writes, reads []request
			for _, op := range ops {
				if op.Access == "public" && t.prefix != "" {
					continue // the probes and the document are not a tenant's
				}
				reqs := generate(op, doc, t.creds)
				// A method the route does not have: 405 with Allow, in JSON.
				wrong := reqs[0]
				wrong.name, wrong.op, wrong.want = "method DELETE", operation{method: http.MethodDelete, path: op.path,
					Responses: map[string]json.RawMessage{"405": nil}}, []int{http.StatusMethodNotAllowed}
				reqs = append(reqs, wrong)
				for i := range reqs {
					reqs[i].prefix = t.prefix
				}
				if op.method == http.MethodPost && (op.Access == "agent" || op.Access == "publish") {
					writes = append(writes, reqs...)
				} else {
					reads = append(reads, reqs...)
				}
			}
			requests += len(writes) + len(reads)
			for _, r := range writes {
				before := st.snapshot()
				o := sendAsAClient(src.client(), bridgeURL, r)
				codes[o.code]++
				codes[http.StatusTooManyRequests] += o.budgetWaits
				what := fmt.Sprintf("%s%s [%s]", t.prefix, r.op, r.name)
				if o.problem != "" {
					problems = append(problems, what+": "+o.problem)
				}
				switch changed := before.diff(st.snapshot()); {
				case o.code == http.StatusOK:
					if why := st.storedAsSent(t.ns, r); why != "" {
						problems = append(problems, what+": accepted, but "+why)
					}
				case len(changed) > 0:
					problems = append(problems, fmt.Sprintf("%s: refused with %d, but the store changed: %v", what, o.code, changed))
				}
			}
			before := st.snapshot()
			readProblems, readCodes := sweep(bridgeURL, src, reads, 8)
			problems = append(problems, readProblems...)
			for c, n := range readCodes {
				codes[c] += n
			}
			if changed := before.diff(st.snapshot()); len(changed) > 0 {
				problems = append(problems, fmt.Sprintf("%s: the reads changed the store: %v", t.ns, changed))
			}
		}
		GinkgoWriter.Printf("omnibus: %d requests over %d operations and 2 tenants; statuses %v\n", requests, len(ops), codes)
		GinkgoWriter.Println(strings.Join(problems, "\n"))
		Expect(problems).To(BeEmpty())
		// The sweep reached the handlers, not only the guards.
		Expect(codes[http.StatusOK]).To(BeNumerically(">=", 2*len(ops)))
		Expect(codes[http.StatusUnprocessableEntity]).To(BeNumerically(">", 0))
		// ... and the budgets applied to the senders of invalid requests.
		Expect(codes[http.StatusTooManyRequests]).To(BeNumerically(">", 0))
	})

	It("stays within its memory bound after a flood of 2,000 requests on every route", func() {
		before := bridgeRSS(state)
		flood := func(op operation, i int) request {
			r := generate(op, doc, creds)[0]
			r.name, r.want = "flood", nil
			// Every request names something new: a map keyed by client
			// input would grow with each.
			for _, prm := range op.Parameters {
				switch {
				case prm.In == "path":
					r.path = pathFor(op, prm.Name, fmt.Sprintf("flood-%d", i))
				case prm.Name == "wait":
					r.query, r.ifMatch = "wait=200ms", `"stale"`
				}
			}
			switch op.Access {
			case "publish", "doctor-read":
				r.auth = fmt.Sprintf("Bearer made-up-%d", i)
			}
			if op.RequestBody != nil && strings.Contains(op.path, "latest") {
				items := make([]string, 256)
				for k := range items {
					items[k] = fmt.Sprintf(`{"component":{"name":"c%d-%d"}}`, i, k)
				}
				r.body = []byte(`{"data":[` + strings.Join(items, ",") + `]}`)
			}
			if strings.Contains(op.path, "clusters") && op.method == http.MethodPost {
				// 400 clusters new to the bridge, each checking in 5 times:
				// creating a report costs two API writes within the
				// manager's own API rate (--kube-api-qps).
				id := fmt.Sprintf("flood-%d", i%400)
				r.path = strings.ReplaceAll(op.path, "{id}", id)
				r.body = []byte(fmt.Sprintf(`{"id":%q,"components":[{"component":{"name":"x"},"version":{"version":"x"}}]}`, id))
			}
			return r
		}
		// A flood comes from 16 addresses: the rate limits and the failure
		// budget see to it that most of it is turned away; what gets in
		// names something new each time.
		floodSources := func() *sources { return &sources{of: 16} }
		var all []string
		for _, op := range ops {
			reqs := make([]request, 2000)
			for i := range reqs {
				reqs[i] = flood(op, i)
			}
			start := time.Now()
			problems, codes := sweep(bridgeURL, floodSources(), reqs, 16)
			GinkgoWriter.Printf("flood %s: %s, statuses %v, RSS %d MiB\n", op, time.Since(start).Round(time.Millisecond), codes, bridgeRSS(state)>>20)
			all = append(all, problems...)
		}
		Expect(all).To(BeEmpty())
		Eventually(func() int64 { return bridgeRSS(state) - before }, time.Minute, time.Second).
			Should(BeNumerically("<", omnibusRSSBound), "RSS before the floods: %d MiB", before>>20)
	})
})
