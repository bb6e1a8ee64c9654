package osv_test

import (
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/trainyard-dev/trainyard/internal/osv"
	"github.com/trainyard-dev/trainyard/internal/validation"
)

// Issue 30: a real OSV record imports into an Advisory the webhook accepts,
// and comes back out as the same record, but for the fields the Advisory
// does not keep (schema_version, modified, published, related).
func TestImportRoundTrips(t *testing.T) {
	f, err := os.Open("testdata/GO-2021-0072.json")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	d, err := osv.Decode(f)
	if err != nil {
		t.Fatal(err)
	}
	a, warnings, err := osv.ToAdvisory(d, "registry", []string{"stable"})
	if err != nil || len(warnings) > 0 {
		t.Fatalf("import: %v, warnings %v", err, warnings)
	}
	if a.Name != "go-2021-0072" || a.Kind != "Advisory" {
		t.Fatalf("name %q, kind %q", a.Name, a.Kind)
	}
	if errs := validation.Advisory(a); len(errs) > 0 {
		t.Fatalf("the webhook would refuse the import: %v", errs)
	}
	back := osv.FromAdvisory(a)
	want := *d
	want.SchemaVersion, want.Modified, want.Published, want.Related = "", "", "", nil
	if !reflect.DeepEqual(back, &want) {
		t.Fatalf("round trip:\n got %+v\nwant %+v", back, &want)
	}
}

func TestImportLeavesOutWhatCannotBeOrdered(t *testing.T) {
	d := &osv.Document{ID: "GHSA-aaaa-bbbb-cccc", Severity: []osv.Severity{
		{Type: "CVSS_V3", Score: "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"},
		{Type: "CVSS_V4", Score: "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N"},
	}, Affected: []osv.Affected{
		{Ranges: []osv.Range{{Type: "GIT", Repo: "https://example.com/r", Events: []osv.Event{{Introduced: "0"}, {Fixed: "abc"}}}}},
		{Ranges: []osv.Range{{Type: "SEMVER", Events: []osv.Event{{Introduced: "0"}, {Fixed: "1.2.1"}}}}, Versions: []string{"1.0", "1.1.0"}},
	}}
	a, warnings, err := osv.ToAdvisory(d, "router", nil)
	if err != nil {
		t.Fatal(err)
	}
	joined := strings.Join(warnings, "\n")
	for _, w := range []string{"severity CVSS_V4 left out", "affected[0].ranges[0] left out: a GIT range", `affected[1].versions: "1.0" left out`} {
		if !strings.Contains(joined, w) {
			t.Errorf("no warning %q in %q", w, joined)
		}
	}
	if len(a.Spec.Affected) != 1 || !reflect.DeepEqual(a.Spec.Affected[0].Versions, []string{"1.1.0"}) || len(a.Spec.Severity) != 1 {
		t.Fatalf("imported %+v", a.Spec)
	}
	if errs := validation.Advisory(a); len(errs) > 0 {
		t.Fatalf("the webhook would refuse the import: %v", errs)
	}

	d.Affected = d.Affected[:1]
	if _, _, err := osv.ToAdvisory(d, "router", nil); err == nil || !strings.Contains(err.Error(), "no affected versions trainyard can order") {
		t.Fatalf("only a GIT range: %v", err)
	}
}

func TestName(t *testing.T) {
	for id, want := range map[string]string{"GHSA-h62f-wm92-2cmw": "ghsa-h62f-wm92-2cmw", "PYSEC-2021_1": "pysec-2021-1", "RUSTSEC/2020:0001": "rustsec-2020-0001"} {
		if got := osv.Name(id); got != want {
			t.Errorf("%s: %s, want %s", id, got, want)
		}
	}
}
