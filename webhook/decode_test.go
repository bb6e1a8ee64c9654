package webhook_test

import (
	"reflect"
	"strings"
	"testing"

	trainyardv1 "github.com/trainyard-dev/trainyard/api/v1alpha1"
	"github.com/trainyard-dev/trainyard/webhook"
)

// What a user writes that does not fit a kind is named by its field and
// what the field expects, never by Go's layout text or type names.
func TestDecodeErrorsNameTheFieldAndWhatItExpects(t *testing.T) {
	release := reflect.TypeFor[trainyardv1.ComponentRelease]()
	for name, c := range map[string]struct{ json, want string }{
		"a time that is not RFC 3339": {`{"spec":{"released":"yesterday"}}`,
			`spec.released: Invalid value: "yesterday": must be an RFC 3339 time such as 2026-12-03T10:00:00Z`},
		"a number for a time": {`{"spec":{"released":1733220000}}`,
			`spec.released: Invalid value: "1733220000": must be an RFC 3339 time such as 2026-12-03T10:00:00Z, not a number`},
		"a number for a string": {`{"spec":{"version":3}}`,
			`spec.version: Invalid value: "3": must be a string, not a number`},
		"a nested time": {`{"spec":{"retracted":{"reason":"x","since":"soon"}}}`,
			`spec.retracted.since: Invalid value: "soon": must be an RFC 3339 time`},
		"a map's value": {`{"spec":{"data":{"notes":true}}}`,
			`spec.data[notes]: Invalid value: "true": must be a string, not a boolean`},
		"an object for a list": {`{"spec":{"risks":{"name":"r"}}}`,
			`spec.risks: Invalid value: "{\"name\":\"r\"}": must be a list, not an object`},
		"a list's item": {`{"spec":{"risks":[{"name":"r","message":7}]}}`,
			`spec.risks[0].message: Invalid value: "7": must be a string, not a number`},
		"metadata too": {`{"metadata":{"labels":{"a":1}}}`,
			`metadata.labels[a]: Invalid value: "1": must be a string, not a number`},
	} {
		errs := webhook.DecodeErrors([]byte(c.json), release)
		if got := errs.ToAggregate(); got == nil || !strings.Contains(got.Error(), c.want) {
			t.Errorf("%s: %v\nwant %s", name, got, c.want)
		} else if strings.Contains(got.Error(), "2006-01-02") || strings.Contains(got.Error(), "Go value") {
			t.Errorf("%s: Go's words in %q", name, got)
		}
	}
	ok := `{"apiVersion":"trainyard.dev/v1alpha1","kind":"ComponentRelease","metadata":{"name":"router.stable.v1.0.0","creationTimestamp":null},
		"spec":{"component":"router","train":"stable","version":"v1.0.0","released":"2026-12-01T10:00:00Z","data":{"a":"b"},
		"retracted":{"reason":"r","since":"2026-12-02T10:00:00Z"},"risks":[{"name":"r","message":"m","rule":"true"}]}}`
	if errs := webhook.DecodeErrors([]byte(ok), release); len(errs) > 0 {
		t.Errorf("a valid release: %v", errs)
	}
	train := reflect.TypeFor[trainyardv1.ReleaseTrain]()
	if errs := webhook.DecodeErrors([]byte(`{"spec":{"historyLimit":2.5}}`), train); len(errs) != 1 ||
		!strings.Contains(errs[0].Error(), "spec.historyLimit") || !strings.Contains(errs[0].Error(), "must be an integer") {
		t.Errorf("a fraction for an integer: %v", errs)
	}
}
