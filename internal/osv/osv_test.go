package osv

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"reflect"
	"strings"
	"testing"
)

// The schema's own evaluation, on the shapes it describes: one window,
// several windows, last_affected, limits, "introduced: 0", and an unordered
// event list.
func TestRangeAffects(t *testing.T) {
	ev := func(kind, v string) Event {
		switch kind {
		case "i":
			return Event{Introduced: v}
		case "f":
			return Event{Fixed: v}
		case "l":
			return Event{LastAffected: v}
		}
		return Event{Limit: v}
	}
	cases := []struct {
		name     string
		events   []Event
		affected []string
		not      []string
	}{
		{"issue 30's fixture: introduced 1.0.0, fixed 1.2.1", []Event{ev("i", "1.0.0"), ev("f", "1.2.1")},
			[]string{"1.0.0", "1.1.0", "1.2.0", "v1.2.0", "1.2.1-rc.1"}, []string{"0.9.9", "1.2.1", "1.3.0", "1.0.0-rc.1"}},
		{"from the start", []Event{ev("i", "0"), ev("f", "2.0.0")}, []string{"0.0.1", "1.9.9"}, []string{"2.0.0", "2.0.1"}},
		{"never fixed", []Event{ev("i", "1.4.0")}, []string{"1.4.0", "99.0.0"}, []string{"1.3.9"}},
		{"last_affected is affected, the next is not", []Event{ev("i", "1.0.0"), ev("l", "1.2.0")},
			[]string{"1.2.0"}, []string{"1.2.1", "1.3.0"}},
		{"two windows, listed out of order", []Event{ev("i", "2.0.0"), ev("f", "2.1.0"), ev("i", "1.0.0"), ev("f", "1.2.0")},
			[]string{"1.1.0", "2.0.5"}, []string{"0.9.0", "1.5.0", "2.1.0", "3.0.0"}},
		{"a limit bounds the range", []Event{ev("i", "0"), ev("lim", "1.5.0")}, []string{"1.4.9"}, []string{"1.5.0", "2.0.0"}},
		{"below any one of two limits", []Event{ev("i", "1.0.0"), ev("lim", "1.5.0"), ev("lim", "3.0.0")},
			[]string{"1.2.0", "2.0.0"}, []string{"3.0.0", "0.5.0"}},
		{"limit *", []Event{ev("i", "1.0.0"), ev("lim", "*")}, []string{"9.0.0"}, []string{"0.1.0"}},
	}
	for _, c := range cases {
		r := Range{Type: RangeSemver, Events: c.events}
		for _, v := range c.affected {
			if ok, err := r.Affects(v); err != nil || !ok {
				t.Errorf("%s: %s: affected %v, %v; want affected", c.name, v, ok, err)
			}
		}
		for _, v := range c.not {
			if ok, err := r.Affects(v); err != nil || ok {
				t.Errorf("%s: %s: affected %v, %v; want not", c.name, v, ok, err)
			}
		}
	}
}

func TestRangesTrainyardCannotOrder(t *testing.T) {
	git := Range{Type: RangeGit, Repo: "https://example.com/r", Events: []Event{{Introduced: "0"}, {Fixed: "abc123"}}}
	if _, err := git.Affects("1.0.0"); !errors.Is(err, ErrUnordered) {
		t.Fatalf("a GIT range: %v, want ErrUnordered", err)
	}
	semver := Range{Type: RangeSemver, Events: []Event{{Introduced: "1.0.0"}}}
	if _, err := semver.Affects("latest"); !errors.Is(err, ErrUnordered) {
		t.Fatalf("a version that is not semver: %v, want ErrUnordered", err)
	}
	// An explicit version list decides even where the ranges cannot.
	a := Affected{Ranges: []Range{git}, Versions: []string{"v1.0.0"}}
	if ok, err := a.Affects("1.0.0"); !ok || err != nil {
		t.Fatalf("a listed version: %v, %v; want affected", ok, err)
	}
	if ok, err := a.Affects("1.1.0"); ok || !errors.Is(err, ErrUnordered) {
		t.Fatalf("an unlisted version under a GIT range: %v, %v; want not affected and ErrUnordered", ok, err)
	}
}

// A record as the Go vulnerability database publishes it decodes, keeps
// every field trainyard models as it was, and drops only those it does not.
func TestRealRecordRoundTrips(t *testing.T) {
	raw, err := os.ReadFile("testdata/GO-2021-0072.json")
	if err != nil {
		t.Fatal(err)
	}
	d, err := Decode(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	if d.ID != "GO-2021-0072" || len(d.Aliases) != 2 || len(d.References) != 4 || len(d.Affected) != 1 {
		t.Fatalf("decoded %+v", d)
	}
	if ok, err := d.Affected[0].Affects("2.6.2"); !ok || err != nil {
		t.Fatalf("2.6.2: %v, %v; want affected", ok, err)
	}
	if ok, err := d.Affected[0].Affects("2.7.0"); ok || err != nil {
		t.Fatalf("2.7.0: %v, %v; want not affected (fixed in 2.7.0-rc.0)", ok, err)
	}
	if got := d.Affected[0].Ranges[0].Fixed(); !reflect.DeepEqual(got, []string{"2.7.0-rc.0+incompatible"}) {
		t.Fatalf("fixed: %v", got)
	}

	out, err := json.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	var want, got map[string]any
	if err := json.Unmarshal(raw, &want); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatal(err)
	}
	delete(want, "database_specific")
	for _, a := range want["affected"].([]any) {
		delete(a.(map[string]any), "ecosystem_specific")
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("round trip changed the record:\n got %s\nwant %v", out, want)
	}
}

func TestDecodeRefusals(t *testing.T) {
	for name, c := range map[string]struct{ doc, want string }{
		"not JSON":         {`{"id":`, "not an OSV document"},
		"trailing data":    {`{"id":"X-1"} {"id":"X-2"}`, "data after the JSON object"},
		"no id":            {`{"summary":"s"}`, "id: required"},
		"a range untyped":  {`{"id":"X-1","affected":[{"ranges":[{"events":[{"introduced":"0"}]}]}]}`, "affected[0].ranges[0].type: required"},
		"no events":        {`{"id":"X-1","affected":[{"ranges":[{"type":"SEMVER","events":[]}]}]}`, "affected[0].ranges[0].events: required"},
		"two kinds in one": {`{"id":"X-1","affected":[{"ranges":[{"type":"SEMVER","events":[{"introduced":"0","fixed":"1.0.0"}]}]}]}`, "events[0]: must have exactly one"},
		"oversized":        {`{"id":"X-1","details":"` + strings.Repeat("a", MaxDocumentBytes) + `"}`, "larger than"},
	} {
		_, err := Decode(strings.NewReader(c.doc))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error containing %q", name, err, c.want)
		}
	}
}
