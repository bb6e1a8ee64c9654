package bridge

import (
	"testing"
	"time"
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
		var c Cluster
		if err := unmarshal(body, &c); err != nil {
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
		var cv ComponentVersion
		if err := unmarshal(body, &cv); err != nil {
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
		var req dataList[ComponentVersion]
		_ = unmarshal(body, &req)
	})
}

func FuzzDecodeDoctor(f *testing.F) {
	f.Add([]byte(`{"workflow":{"id":"x","components":[]},"nodes":[],"namespaces":[]}`))
	f.Add([]byte(`{"nodes":null}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		var rep DoctorReport
		_ = unmarshal(body, &rep)
	})
}
