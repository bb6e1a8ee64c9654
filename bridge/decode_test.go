package bridge

import (
	"bytes"
	"compress/gzip"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"io"
	"runtime"
	"strings"
	"testing"

	"github.com/trainyard-dev/trainyard/internal/wire"
)

// countingReader counts what the decoder took from the body.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// emptyItems is the attacker's multi-get: ~1 MiB of {} items.
func emptyItems(size int) string {
	n := (size - len(`{"data":[]}`)) / 3
	return `{"data":[` + strings.TrimSuffix(strings.Repeat(`{},`, n), ",") + `]}`
}

// A multi-get of 349,000 empty items stops at item 257: the rest of the
// body is never read or decoded, and the refusal allocates a few KiB.
func TestMultiGetStopsAtTheItemLimit(t *testing.T) {
	body := emptyItems(1 << 20)
	lim := limits{body: 1 << 20, items: MaxMultiGetItems, why: "w"}
	cr := &countingReader{r: strings.NewReader(body)}
	var req dataList[multiGetItem]
	var ms0, ms1 runtime.MemStats
	runtime.ReadMemStats(&ms0)
	err := decodeBody(cr, lim, &req)
	runtime.ReadMemStats(&ms1)
	var tooMany errTooManyItems
	if !errors.As(err, &tooMany) || err.Error() != "data: more than 256 items; at most 256 (w)" {
		t.Fatalf("error %v", err)
	}
	if cr.n > 16<<10 {
		t.Fatalf("read %d bytes of the body before refusing", cr.n)
	}
	if alloc := ms1.TotalAlloc - ms0.TotalAlloc; alloc > 256<<10 && !raceEnabled {
		t.Fatalf("refusing allocated %d bytes", alloc)
	}
	if req.Data != nil {
		t.Fatal("a refused body was decoded")
	}
}

// Each limit names where it was passed; nesting is bounded; a body within
// the limits decodes as encoding/json would.
func TestDecodeBodyLimits(t *testing.T) {
	lim := limits{body: 1 << 20, items: 3}
	for body, want := range map[string]string{
		`{"a":[1,2,3,4]}`: "a: more than 3 items; at most 3",
		`{"a":{"b":[{"c":{"w":1,"x":2,"y":3,"z":4}}]}}`:   "a.b[0].c: more than 3 items; at most 3",
		`{"a":1,"b":2,"c":3,"d":4}`:                       "body: more than 3 items; at most 3",
		`[[1],[1,2,3,4]]`:                                 "[1]: more than 3 items; at most 3",
		strings.Repeat("[", 40) + strings.Repeat("]", 40): "the body nests deeper than 32 levels",
		`{"a":1} {"b":2}`:                                 "invalid JSON body: more than one JSON value",
		`{"a":1} x`:                                       "invalid JSON body: trailing data after the JSON value",
		``:                                                "invalid JSON body: the body is empty",
		`{"a":`:                                           "invalid JSON body: unexpected EOF",
	} {
		var v any
		if err := decodeBody(strings.NewReader(body), lim, &v); err == nil || err.Error() != want {
			t.Errorf("%.40q: %v, want %q", body, err, want)
		}
	}
	var c wire.Cluster
	body := `{"id":"c1","components":[{"component":{"name":"a"},"version":{"version":"1"}}],"properties":{"k":"v"}}`
	if err := decodeBody(strings.NewReader(body), limits{body: 1 << 20, items: maxListItems}, &c); err != nil {
		t.Fatal(err)
	}
	if c.ID != "c1" || len(c.Components) != 1 || c.Components[0].Component.Name != "a" {
		t.Fatalf("decoded %+v", c)
	}
}

// A doctor dump is compressed while it streams and refused as soon as the
// compressed size passes what a Secret stores: an incompressible 8 MiB
// upload is cut off after about that much, and holds no decoded copy.
func TestDoctorDumpIsRefusedWhileItStreams(t *testing.T) {
	noise := make([]byte, 6<<20)
	_, _ = rand.Read(noise)
	body := `{"workflow":{"id":"c1"},"namespaces":[],"nodes":["` + base64.StdEncoding.EncodeToString(noise) + `"]}`
	cr := &countingReader{r: strings.NewReader(body)}
	var ms0, ms1 runtime.MemStats
	runtime.ReadMemStats(&ms0)
	_, err := readDoctor(cr, limits{body: 8 << 20, items: unbounded})
	runtime.ReadMemStats(&ms1)
	if !errors.Is(err, errDoctorTooLarge) {
		t.Fatalf("error %v", err)
	}
	if cr.n > 3*maxDoctorStored/2 {
		t.Fatalf("read %d bytes before refusing (the stored limit is %d)", cr.n, maxDoctorStored)
	}
	if alloc := ms1.TotalAlloc - ms0.TotalAlloc; alloc > 4<<20 && !raceEnabled {
		t.Fatalf("refusing allocated %d bytes", alloc)
	}

	// A dump that fits is stored as sent, and its facts are read.
	dump := `{"Workflow":{"id":"C1","components":[]},"nodes":[{"name":"n1"}],"namespaces":["default"],"extra":1}`
	d, err := readDoctor(strings.NewReader(dump), limits{body: 8 << 20, items: unbounded})
	if err != nil {
		t.Fatal(err)
	}
	if d.workflowID != "C1" || !d.present["nodes"] || !d.present["namespaces"] || d.present["missing"] {
		t.Fatalf("facts %+v", d)
	}
	zr, err := gzip.NewReader(bytes.NewReader(d.compressed))
	if err != nil {
		t.Fatal(err)
	}
	stored, _ := io.ReadAll(zr)
	if string(stored) != dump {
		t.Fatalf("stored %q", stored)
	}
	// null is no value; a dump is an object.
	d, err = readDoctor(strings.NewReader(`{"nodes":null,"namespaces":[]}`), limits{body: 1 << 20, items: unbounded})
	if err != nil || d.present["nodes"] {
		t.Fatalf("null nodes: %+v %v", d, err)
	}
	if _, err := readDoctor(strings.NewReader(`[]`), limits{body: 1 << 20, items: unbounded}); err == nil {
		t.Fatal("an array was taken as a dump")
	}
}
