package bridge

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/controller-runtime/pkg/client"

	trainyardv1 "github.com/trainyard-dev/trainyard/api/v1alpha1"
	"github.com/trainyard-dev/trainyard/internal/ordering"
	"github.com/trainyard-dev/trainyard/internal/validation"
	"github.com/trainyard-dev/trainyard/internal/wire"
)

// The request bodies' fuzzers drive the routes' own code without a server
// or an API server: the route's handler (or its decoder, decodeJSON) on an
// httptest request, with the limits the route table declares, against a
// Kubernetes API that records what would be written (fuzzAPI). What the
// route must answer is worked out independently, from encoding/json's
// reading of the body (wantDecode, walkJSON). `make test` runs each target
// briefly (see the Makefile's FUZZ_TARGETS); the corpora in
// testdata/fuzz/<target> run on every `go test`.

// fuzzNS is the fuzzed requests' namespace.
const fuzzNS = "fuzz"

// routeLimits are the limits the route table declares for a route, with
// the default options: what a body of that route is decoded with.
func routeLimits(tb testing.TB, method, pattern string) limits {
	tb.Helper()
	for _, r := range New(nil, nil, nil, Options{Namespace: fuzzNS}).routeTable {
		if r.method == method && r.pattern == pattern {
			return r.limits
		}
	}
	tb.Fatalf("no route %s %s", method, pattern)
	return limits{}
}

// smallLimits are limits the fuzzer's inputs reach: 1 to 4 items, and a
// body limit at the body's size or 1 or 2 bytes under it (items: false
// keeps the route's items, for a streamed body).
func smallLimits(lim limits, body []byte, items bool) limits {
	n := len(body)
	lim.body = int64(max(n-n%3, 1))
	if items {
		lim.items = 1 + (n/3)%4
	}
	return lim
}

// fuzzRequest is a POST of body as a route's handler gets it: JSON, with
// its Content-Length (known) or streamed, lim in its request state.
func fuzzRequest(body []byte, lim limits, known bool) *http.Request {
	r := httptest.NewRequest(http.MethodPost, "/", bytes.NewReader(body))
	r.Header.Set("Content-Type", "application/json")
	if !known {
		r.ContentLength = -1
	}
	st := &requestState{limits: lim, ns: fuzzNS}
	return r.WithContext(context.WithValue(r.Context(), stateKey{}, st))
}

// fuzzServer is a bridge on api, taking check-ins without registration
// tokens and doctor dumps at any rate.
func fuzzServer(api *fuzzAPI) *Server {
	return New(api, api, api, Options{Namespace: fuzzNS, CheckInAuth: CheckInOpen, DoctorRate: math.Inf(1), DoctorBurst: 1})
}

// fuzzAPI is the Kubernetes API of the fuzzed routes. Reads find only
// the train router.stable and its latest release, v2.3.0 (fuzzRelease), and
// lists are empty; a create is recorded as the API server stores it (the
// object through JSON), and ends the object's way. Any other call panics
// (the embedded nil Client): a route under fuzz must not make it.
type fuzzAPI struct {
	client.Client
	created []client.Object
}

var fuzzRelease = trainyardv1.ComponentRelease{
	ObjectMeta: metav1.ObjectMeta{Namespace: fuzzNS, Name: trainyardv1.ReleaseName("router", "stable", "v2.3.0"), UID: "r1", ResourceVersion: "7"},
	Spec: trainyardv1.ComponentReleaseSpec{Component: "router", Train: "stable", Version: "v2.3.0",
		Released: &metav1.Time{Time: time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)}, Description: "d", Image: "example.com/router:v2.3.0"},
}

func (a *fuzzAPI) Get(_ context.Context, key types.NamespacedName, obj client.Object, _ ...client.GetOption) error {
	switch o := obj.(type) {
	case *trainyardv1.ReleaseTrain:
		if key == (types.NamespacedName{Namespace: fuzzNS, Name: trainyardv1.TrainName("router", "stable")}) {
			*o = trainyardv1.ReleaseTrain{ObjectMeta: metav1.ObjectMeta{Namespace: fuzzNS, Name: key.Name},
				Spec:   trainyardv1.ReleaseTrainSpec{Component: "router", Train: "stable"},
				Status: trainyardv1.ReleaseTrainStatus{Latest: &trainyardv1.ReleaseRef{Name: fuzzRelease.Name, Version: fuzzRelease.Spec.Version}}}
			return nil
		}
	case *trainyardv1.ComponentRelease:
		if key == client.ObjectKeyFromObject(&fuzzRelease) {
			fuzzRelease.DeepCopyInto(o)
			return nil
		}
	}
	return apierrors.NewNotFound(schema.GroupResource{}, key.Name)
}

func (a *fuzzAPI) List(context.Context, client.ObjectList, ...client.ListOption) error { return nil }

func (a *fuzzAPI) Create(_ context.Context, obj client.Object, _ ...client.CreateOption) error {
	b, err := json.Marshal(obj)
	if err != nil {
		return err
	}
	stored := reflect.New(reflect.TypeOf(obj).Elem()).Interface().(client.Object)
	if err := json.Unmarshal(b, stored); err != nil {
		return err
	}
	reflect.ValueOf(obj).Elem().Set(reflect.ValueOf(stored.DeepCopyObject()).Elem())
	a.created = append(a.created, stored)
	return nil
}

// walkJSON walks a valid JSON body with encoding/json's Decoder, calling
// visit with each value (scalars, and arrays and objects as they open) and
// the arrays and objects it is in, as the bridge's scanner tells its visit.
func walkJSON(body []byte, visit func(path []walkFrame, tok json.Token)) {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var path []walkFrame
	for {
		tok, err := dec.Token()
		if err != nil {
			return
		}
		top := len(path) - 1
		if d, ok := tok.(json.Delim); ok && (d == '}' || d == ']') {
			path = path[:top]
			continue
		}
		if top >= 0 && path[top].object && path[top].wantKey {
			path[top].key, path[top].wantKey = tok.(string), false
			continue
		}
		if top >= 0 && path[top].object {
			path[top].wantKey = true
		}
		visit(path, tok)
		if d, ok := tok.(json.Delim); ok {
			path = append(path, walkFrame{object: d == '{', wantKey: d == '{'})
		}
	}
}

type walkFrame struct {
	object, wantKey bool
	key             string // an object's current key
}

// jsonShape is what encoding/json sees of a body: whether it is one JSON
// value, how deep it nests, and the most members of any one of its arrays
// and objects.
type jsonShape struct {
	valid          bool
	depth, members int
}

func shapeOf(body []byte) jsonShape {
	sh := jsonShape{valid: json.Valid(body)}
	if !sh.valid {
		return sh
	}
	// A valid body's structure, read off its brackets and commas (outside
	// strings): a container's members are its commas plus one, unless it
	// is empty.
	var members []int
	inString, escaped := false, false
	for _, c := range body {
		switch {
		case inString:
			switch {
			case escaped:
				escaped = false
			case c == '\\':
				escaped = true
			case c == '"':
				inString = false
			}
			continue
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			continue
		}
		if n := len(members); n > 0 && members[n-1] == 0 && c != ']' && c != '}' {
			members[n-1] = 1 // the first member of the innermost container
		}
		switch c {
		case '"':
			inString = true
		case '[', '{':
			members = append(members, 0)
			sh.depth = max(sh.depth, len(members))
		case ']', '}':
			sh.members = max(sh.members, members[len(members)-1])
			members = members[:len(members)-1]
		case ',':
			members[len(members)-1]++
		}
	}
	return sh
}

// within: the body is valid JSON inside the nesting and item limits.
func (sh jsonShape) within(lim limits) bool {
	return sh.valid && sh.depth <= maxDepth && (lim.items == unbounded || sh.members <= lim.items)
}

// wantDecode is what decodeJSON must make of body (of shape sh) under
// lim, by encoding/json's reading of it: encoding/json's value (ok), or the
// statuses its refusal may have.
func wantDecode[T any](body []byte, sh jsonShape, lim limits, known bool) (ref T, ok bool, codes []int) {
	large := int64(len(body)) > lim.body
	switch {
	case large && (known || sh.within(lim)):
		// Refused on its Content-Length, or at the limit's byte: nothing
		// before it is wrong.
		return ref, false, []int{http.StatusRequestEntityTooLarge}
	case large && sh.valid:
		return ref, false, []int{http.StatusRequestEntityTooLarge, http.StatusUnprocessableEntity}
	case large:
		return ref, false, []int{http.StatusBadRequest, http.StatusRequestEntityTooLarge, http.StatusUnprocessableEntity}
	case !sh.valid:
		// Bad JSON, or limits passed before the syntax error.
		return ref, false, []int{http.StatusBadRequest, http.StatusUnprocessableEntity}
	case !sh.within(lim):
		return ref, false, []int{http.StatusUnprocessableEntity}
	}
	if err := json.Unmarshal(body, &ref); err != nil {
		return ref, false, []int{http.StatusBadRequest}
	}
	return ref, true, nil
}

// checkDecode decodes body as a route does (decodeJSON, under lim) and
// checks the outcome against wantDecode: the same refusals, and within the
// limits exactly encoding/json's value (the streaming scanner never changes
// what is decoded).
func checkDecode[T any](t *testing.T, body []byte, sh jsonShape, lim limits, known bool) (T, bool) {
	t.Helper()
	var got T
	w := httptest.NewRecorder()
	ok := decodeJSON(w, fuzzRequest(body, lim, known), &got)
	ref, wantOK, codes := wantDecode[T](body, sh, lim, known)
	switch {
	case ok != wantOK:
		t.Fatalf("limits %+v, Content-Length known %v: decoded %v (%d %s); want decoded %v, or refused with %v",
			lim, known, ok, w.Code, w.Body, wantOK, codes)
	case ok && !reflect.DeepEqual(got, ref):
		t.Fatalf("decoded %s; encoding/json decodes %s", asJSON(got), asJSON(ref))
	case ok && (w.Code != http.StatusOK || w.Body.Len() > 0):
		t.Fatalf("decoded, and answered %d %s", w.Code, w.Body)
	case !ok:
		checkRefusal(t, w, codes...)
	}
	return got, ok
}

// checkRefusal checks that w is an error answer with one of codes.
func checkRefusal(t *testing.T, w *httptest.ResponseRecorder, codes ...int) wire.Error {
	t.Helper()
	var e wire.Error
	if err := json.Unmarshal(w.Body.Bytes(), &e); err != nil || !slices.Contains(codes, w.Code) || e.Code != w.Code || e.Message == "" {
		t.Fatalf("answered %d %s; want an error answer with one of %v", w.Code, w.Body, codes)
	}
	return e
}

// checkRequired checks that w refuses a missing field.
func checkRequired(t *testing.T, w *httptest.ResponseRecorder, missing string) {
	t.Helper()
	if e := checkRefusal(t, w, http.StatusUnprocessableEntity); e.Message != missing+" in body is required" {
		t.Fatalf("answered %q; want %s required", e.Message, missing)
	}
}

func FuzzDecodeRelease(f *testing.F) {
	f.Add([]byte(`{"version":null}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		var cv wire.ComponentVersion
		if err := decodeBody(bytes.NewReader(body), limits{body: 1 << 20, items: maxListItems}, &cv); err != nil {
			return
		}
		spec, err := releaseSpec("router", "stable", "v1", cv, time.Unix(0, 0))
		if err == nil && spec.Released == nil {
			t.Fatal("no release time")
		}
	})
}

// FuzzDecodeMultiGet drives the multi-get (POST /v3 and /v2/versions/latest)
// through its handler: the body is decoded as encoding/json decodes it
// within the route's limits (and refused past any limit), every item must
// name its component, and the answer is exactly one entry per distinct
// item in request order: the train's latest release (router on stable,
// with updateAvailable when the item's installed version differs), or the
// pair without a version.
func FuzzDecodeMultiGet(f *testing.F) {
	f.Add([]byte(`{"data":[{"component":{"name":"router"},"version":{"train":"stable","version":"1"}}]}`))
	lim := routeLimits(f, http.MethodPost, "/v3/versions/latest")
	if v2 := routeLimits(f, http.MethodPost, "/v2/versions/latest"); v2 != lim || lim.items != MaxMultiGetItems {
		f.Fatalf("multi-get limits %+v and %+v", lim, v2)
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		sh := shapeOf(body)
		checkDecode[dataList[multiGetItem]](t, body, sh, smallLimits(lim, body, true), len(body)%2 == 0)
		if req, ok := checkDecode[dataList[multiGetItem]](t, body, sh, lim, true); ok && len(req.Data) > MaxMultiGetItems {
			t.Fatalf("%d items decoded past the limit of %d", len(req.Data), MaxMultiGetItems)
		}
		// POST /v3/versions/latest, or (every other length) the v2 one,
		// whose default train is beta.
		s, w := fuzzServer(&fuzzAPI{}), httptest.NewRecorder()
		handle, defaultTrain := s.latestV3, trainyardv1.DefaultTrain
		if len(body)/2%2 == 1 {
			handle, defaultTrain = s.latestV2, "beta"
		}
		handle(w, fuzzRequest(body, lim, true), nil)
		checkMultiGet(t, body, sh, lim, defaultTrain, w)
	})
}

// checkMultiGet checks the multi-get's answer w to body.
func checkMultiGet(t *testing.T, body []byte, sh jsonShape, lim limits, defaultTrain string, w *httptest.ResponseRecorder) {
	t.Helper()
	req, ok, codes := wantDecode[dataList[multiGetItem]](body, sh, lim, true)
	if !ok {
		checkRefusal(t, w, codes...)
		return
	}
	if req.Data == nil {
		checkRequired(t, w, "data")
		return
	}
	want := []byte(`{"data":[`)
	seen := map[[3]string]bool{}
	for i, item := range req.Data {
		if item.Component == nil || item.Component.Name == "" {
			checkRequired(t, w, "data["+strconv.Itoa(i)+"].component.name")
			return
		}
		train, installed := defaultTrain, ""
		if item.Version != nil {
			if item.Version.Train != "" {
				train = item.Version.Train
			}
			installed = item.Version.Version
		}
		// Distinct items: by component, train and installed version, each
		// on its own ("a.b" on train "c" is not "a" on train "b.c").
		if key := [3]string{item.Component.Name, train, installed}; seen[key] {
			continue
		} else {
			seen[key] = true
		}
		if len(want) > maxMultiGetAnswer {
			checkRefusal(t, w, http.StatusUnprocessableEntity)
			return
		}
		if len(seen) > 1 {
			want = append(want, ',')
		}
		cv := wire.ComponentVersion{Component: &wire.Component{Name: item.Component.Name}, Version: &wire.Version{Train: train}}
		if item.Component.Name == "router" && train == "stable" {
			cv.Version = &wire.Version{Train: "stable", Version: "v2.3.0", Released: "2026-11-01T00:00:00Z",
				Data: map[string]string{"description": "d", "image": "example.com/router:v2.3.0"}}
			if installed != "" && ordering.Canonical(installed) != ordering.Canonical("v2.3.0") {
				cv.UpdateAvailable = "v2.3.0"
			}
		}
		b, err := json.Marshal(cv)
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, b...)
	}
	want = append(want, "]}\n"...)
	if w.Code != http.StatusOK || !bytes.Equal(w.Body.Bytes(), want) {
		t.Fatalf("answered %d %s\nwant 200 %s", w.Code, w.Body, want)
	}
}

// FuzzDecodeDoctor drives the doctor upload (POST /v3/doctor/{uuid}) through
// its handler, at the route's limits and at a small body limit: a dump is
// refused past the body limit and the nesting limit, must be a JSON object
// with nodes and namespaces (not null), and one with a workflow.id is the
// cluster that ID names (a valid one); a dump taken is stored in one Secret
// whose compressed data is exactly the body.
func FuzzDecodeDoctor(f *testing.F) {
	f.Add([]byte(`{"nodes":[],"namespaces":[]}`))
	lim := routeLimits(f, http.MethodPost, "/v3/doctor/{uuid}")
	if lim.items != unbounded {
		f.Fatalf("doctor limits %+v", lim)
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		sh := shapeOf(body)
		for _, run := range []struct {
			lim   limits
			known bool
		}{{lim, true}, {smallLimits(lim, body, false), len(body)%2 == 0}} {
			api := &fuzzAPI{}
			w := httptest.NewRecorder()
			fuzzServer(api).postDoctor(w, fuzzRequest(body, run.lim, run.known), params{"uuid": "Dump-1"})
			checkDoctor(t, body, sh, run.lim, run.known, w, api)
		}
	})
}

// checkDoctor checks the doctor route's answer w to body, and what it stored.
func checkDoctor(t *testing.T, body []byte, sh jsonShape, lim limits, known bool, w *httptest.ResponseRecorder, api *fuzzAPI) {
	t.Helper()
	stored := func() bool {
		if w.Code != http.StatusOK && len(api.created) > 0 {
			t.Fatalf("answered %d %s, and stored %d objects", w.Code, w.Body, len(api.created))
		}
		return w.Code == http.StatusOK
	}
	large := int64(len(body)) > lim.body
	switch {
	case large && (known || sh.within(lim)):
		checkRefusal(t, w, http.StatusRequestEntityTooLarge)
		stored()
		return
	case large:
		checkRefusal(t, w, http.StatusBadRequest, http.StatusRequestEntityTooLarge, http.StatusUnprocessableEntity)
		stored()
		return
	case !sh.valid:
		checkRefusal(t, w, http.StatusBadRequest, http.StatusUnprocessableEntity)
		stored()
		return
	case !sh.within(lim):
		checkRefusal(t, w, http.StatusUnprocessableEntity)
		stored()
		return
	case w.Code == http.StatusRequestEntityTooLarge && len(body) > maxDoctorStored*99/100:
		// What it compresses to may not fit in a Secret.
		stored()
		return
	}
	// What the bridge reads of a dump, as its scanner tells it: a top-level
	// object, its keys nodes and namespaces (in any case) with a value
	// other than null, and the last string id in an object workflow.
	var object, nodes, namespaces bool
	var id string
	walkJSON(body, func(path []walkFrame, tok json.Token) {
		switch len(path) {
		case 0:
			object = tok == json.Delim('{')
		case 1:
			key := strings.ToLower(path[0].key)
			nodes = nodes || key == "nodes" && tok != nil
			namespaces = namespaces || key == "namespaces" && tok != nil
		case 2:
			if s, ok := tok.(string); ok && strings.EqualFold(path[0].key, "workflow") && path[1].object && strings.EqualFold(path[1].key, "id") {
				id = s
			}
		}
	})
	switch {
	case !object:
		checkRefusal(t, w, http.StatusBadRequest)
		stored()
		return
	case !nodes:
		checkRequired(t, w, "nodes")
		stored()
		return
	case !namespaces:
		checkRequired(t, w, "namespaces")
		stored()
		return
	case id != "" && len(validation.ClusterID(field.NewPath("workflow", "id"), id)) > 0:
		checkRefusal(t, w, http.StatusUnprocessableEntity)
		stored()
		return
	}
	if !stored() || len(api.created) != 1 {
		t.Fatalf("answered %d %s; stored %d objects; want the dump stored", w.Code, w.Body, len(api.created))
	}
	sec, ok := api.created[0].(*corev1.Secret)
	if !ok {
		t.Fatalf("stored a %T", api.created[0])
	}
	cluster := "dump-1"
	if id != "" {
		cluster = trainyardv1.ClusterReportName(id)
	}
	compressed := sec.Data[doctorKey]
	if sec.Name != doctorPrefix+"dump-1" || sec.Labels[LabelDoctorReport] != "true" || sec.Labels[LabelDoctorCluster] != cluster ||
		sec.Annotations[AnnotationDoctorBytes] != strconv.Itoa(len(compressed)) || len(compressed) > maxDoctorStored {
		t.Fatalf("stored Secret %s labels %v annotations %v, %d bytes; want the dump of cluster %s",
			sec.Name, sec.Labels, sec.Annotations, len(compressed), cluster)
	}
	// What is stored is exactly what was sent.
	zr, err := gzip.NewReader(bytes.NewReader(compressed))
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(zr)
	if err != nil || !bytes.Equal(got, body) {
		t.Fatalf("stored %q for %q (%v)", got, body, err)
	}
}

// FuzzScanner: the streaming scanner accepts exactly what encoding/json
// accepts within its nesting limit, and refuses valid JSON only for its
// nesting, so a body it passes always decodes.
func FuzzScanner(f *testing.F) {
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		err := newScanner(bytes.NewReader(body), limits{body: 1 << 20, items: unbounded}).scan()
		sh := shapeOf(body)
		switch deep := errors.As(err, new(errTooDeep)); {
		case sh.valid && sh.depth > maxDepth && !deep:
			t.Fatalf("%.100q nests %d levels: %v", body, sh.depth, err)
		case sh.valid && sh.depth <= maxDepth && err != nil:
			t.Fatalf("%.100q is valid JSON of %d levels: %v", body, sh.depth, err)
		case !sh.valid && err == nil:
			t.Fatalf("%.100q is not JSON, and was taken", body)
		}
	})
}
