package bridge

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/trainyard-dev/trainyard/internal/wire"
)

// The request decoders must answer any input with a value or an error,
// never a panic. `make test` runs each target briefly (see the Makefile);
// the seeds below run on every `go test`.

func FuzzDecodeCheckIn(f *testing.F) {
	f.Add([]byte(`{"id":"f47ac10b-58cc-4372-a567-0e02b2c3d479","components":[{"component":{"name":"router","type":"Deployment"},"version":{"train":"stable","version":"v2.3.0","data":{"image":"x"}}}]}`))
	f.Add([]byte(`{"ID":"c1","Components":[]}`))
	f.Add([]byte(`{"id":"c1","components":[{"component":null,"version":{}}]}`))
	f.Add([]byte(`{"id":1}`))
	f.Add([]byte(`[]`))
	f.Add([]byte(`{} {}`))
	f.Add([]byte(`{"components":[{"version":{"version":"1"}}],"firstSeen":"nope"}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		var c wire.Cluster
		if err := decodeBody(bytes.NewReader(body), limits{body: 1 << 20, items: maxListItems}, &c); err != nil {
			return
		}
		comps, err := reportedComponents(c.Components)
		if err == nil && len(comps) != len(c.Components) {
			t.Fatalf("%d components converted from %d", len(comps), len(c.Components))
		}
	})
}

func FuzzDecodeRelease(f *testing.F) {
	f.Add([]byte(`{"component":{"name":"router","description":"d"},"version":{"train":"stable","version":"v1","released":"2026-11-01T00:00:00Z","data":{"fixes":"f","extra":"e"}}}`))
	f.Add([]byte(`{"version":{"released":"yesterday"}}`))
	f.Add([]byte(`{"version":{"data":{"image":""}}}`))
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

func FuzzDecodeMultiGet(f *testing.F) {
	f.Add([]byte(`{"data":[{"component":{"name":"router"},"version":{"train":"beta","version":"1"}}]}`))
	f.Add([]byte(`{"data":null}`))
	f.Add([]byte(`{"data":[null]}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		var req dataList[multiGetItem]
		err := decodeBody(bytes.NewReader(body), limits{body: 1 << 20, items: 4}, &req)
		if err == nil && len(req.Data) > 4 {
			t.Fatalf("%d items decoded past a limit of 4", len(req.Data))
		}
		// Valid JSON within the limits is never refused by the scanner.
		var tooMany errTooManyItems
		if json.Valid(body) && err != nil && !errors.As(err, &tooMany) && !errors.As(err, new(errTooDeep)) {
			if json.Unmarshal(body, &req) == nil {
				t.Fatalf("refused %q: %v", body, err)
			}
		}
	})
}

func FuzzDecodeDoctor(f *testing.F) {
	f.Add([]byte(`{"workflow":{"id":"x","components":[]},"nodes":[],"namespaces":[]}`))
	f.Add([]byte(`{"nodes":null}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		d, err := readDoctor(bytes.NewReader(body), limits{body: 8 << 20, items: unbounded})
		if err != nil {
			return
		}
		// What is stored is exactly what was sent.
		zr, zerr := gzip.NewReader(bytes.NewReader(d.compressed))
		if zerr != nil {
			t.Fatal(zerr)
		}
		stored, zerr := io.ReadAll(zr)
		if zerr != nil || !bytes.Equal(stored, body) {
			t.Fatalf("stored %q for %q (%v)", stored, body, zerr)
		}
		if !json.Valid(body) {
			t.Fatalf("the scanner took invalid JSON: %q", body)
		}
	})
}

// The streaming scanner accepts exactly what encoding/json accepts (within
// its nesting limit), so a body it passes always decodes.
func FuzzScanner(f *testing.F) {
	for _, s := range []string{`{}`, `[1,-2.5e+3,"a\u00e9\n",true,false,null,{"k":[]}]`, `{"a":01}`, `"\ud800"`,
		`1.`, `-`, `[1,]`, `{"a" 1}`, " \t\n{}\r\n", `"` + "\xff" + `"`, `1e5`, `0.0E-0`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		err := newScanner(bytes.NewReader(body), limits{body: 1 << 20, items: unbounded}).scan()
		if errors.As(err, new(errTooDeep)) {
			return
		}
		if valid := json.Valid(body); valid != (err == nil) {
			t.Fatalf("%q: json.Valid %v, scanner %v", body, valid, err)
		}
	})
}
