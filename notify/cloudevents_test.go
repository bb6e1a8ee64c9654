package notify_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"mime"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"

	trainyardv1 "github.com/trainyard-dev/trainyard/api/v1alpha1"
	"github.com/trainyard-dev/trainyard/notify"
)

// schemaFile is the JSON Schema of the CloudEvents project for CloudEvents
// 1.0 in the JSON format, as published (see testdata/README.md).
var schemaFile = filepath.Join("testdata", "cloudevents-v1.0.schema.json")

// ceSchema compiles schemaFile once, with format assertions (source is a
// URI-reference, time a date-time) and content assertions (data_base64 is
// base64).
var ceSchema = sync.OnceValues(func() (*jsonschema.Schema, error) {
	f, err := os.Open(schemaFile)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	doc, err := jsonschema.UnmarshalJSON(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", schemaFile, err)
	}
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	c.AssertContent()
	if err := c.AddResource("cloudevents.json", doc); err != nil {
		return nil, err
	}
	return c.Compile("cloudevents.json")
})

// Media types of the CloudEvents JSON format (structured mode) and of its
// batch format.
const (
	structuredType = "application/cloudevents+json"
	batchType      = "application/cloudevents-batch+json"
)

// checkCloudEvents checks one HTTP delivery to a CloudEvents receiver and
// returns what is wrong with it. The delivery is a CloudEvent in structured
// mode, a batch of them, or one in binary mode (ce- headers and the data as
// the body), as the CloudEvents HTTP binding has it; each event is checked
// by checkEvent.
func checkCloudEvents(h http.Header, body []byte) []string {
	mt, _, _ := mime.ParseMediaType(h.Get("Content-Type"))
	var events []map[string]any
	switch {
	case mt == structuredType:
		var ev map[string]any
		if err := json.Unmarshal(body, &ev); err != nil {
			return []string{fmt.Sprintf("structured mode: the body is no JSON object: %v", err)}
		}
		events = append(events, ev)
	case mt == batchType:
		if err := json.Unmarshal(body, &events); err != nil {
			return []string{fmt.Sprintf("batch mode: the body is no JSON array of objects: %v", err)}
		}
	case h.Get("ce-specversion") != "":
		ev, err := fromBinary(h, body)
		if err != nil {
			return []string{"binary mode: " + err.Error()}
		}
		events = append(events, ev)
	default:
		return []string{fmt.Sprintf("a CloudEvents receiver got a delivery in no CloudEvents mode (Content-Type %q, no ce-specversion header)",
			h.Get("Content-Type"))}
	}
	var problems []string
	for i, ev := range events {
		for _, p := range checkEvent(ev) {
			if mt == batchType {
				p = fmt.Sprintf("batch element %d: %s", i, p)
			}
			problems = append(problems, p)
		}
		// A signed delivery of one event carries the event's id.
		if id := h.Get("webhook-id"); id != "" && len(events) == 1 && ev["id"] != id {
			problems = append(problems, fmt.Sprintf("webhook-id %q is not the event's id %v", id, ev["id"]))
		}
	}
	return problems
}

// fromBinary reconstructs a binary-mode event in the JSON format: each
// ce-<name> header is the attribute <name> (its value percent-decoded),
// Content-Type is datacontenttype, and the body is the data: a JSON value
// if the content type is JSON, else data_base64.
func fromBinary(h http.Header, body []byte) (map[string]any, error) {
	ev := map[string]any{}
	for k, vs := range h {
		name, ok := strings.CutPrefix(strings.ToLower(k), "ce-")
		if !ok {
			continue
		}
		if len(vs) != 1 {
			return nil, fmt.Errorf("header %s appears %d times", k, len(vs))
		}
		v, err := url.PathUnescape(vs[0])
		if err != nil {
			return nil, fmt.Errorf("header %s: %v", k, err)
		}
		ev[name] = v
	}
	ct := h.Get("Content-Type")
	if ct != "" {
		ev["datacontenttype"] = ct
	}
	if len(body) == 0 {
		return ev, nil
	}
	if mt, _, _ := mime.ParseMediaType(ct); ct == "" || mt == "application/json" || strings.HasSuffix(mt, "+json") {
		var data any
		if err := json.Unmarshal(body, &data); err != nil {
			return nil, fmt.Errorf("JSON data does not decode: %v", err)
		}
		ev["data"] = data
	} else {
		ev["data_base64"] = base64.StdEncoding.EncodeToString(body)
	}
	return ev, nil
}

// attributeName is the rule of the CloudEvents specification for
// attribute names (lower-case letters and digits), with its advice on
// length (at most 20) taken as a rule for ours.
var attributeName = regexp.MustCompile(`^[a-z0-9]{1,20}$`)

var severities = map[string]bool{"info": true, "warning": true, "critical": true}

// checkEvent checks one event, decoded from its JSON form:
//
//   - against the CloudEvents project's JSON Schema;
//   - against the rules of the CloudEvents 1.0 specification and its JSON
//     format that the schema leaves out: specversion is "1.0", attribute
//     names, data and data_base64 not both present, extension attributes
//     of the specification's types;
//   - against the shape docs/notifications.md gives trainyard's events: no
//     other attributes or data members than notify.CloudEvent's (decoded
//     strictly), the delivery's count, listed events and omitted, and a
//     single event's own id and subject.
func checkEvent(ev map[string]any) []string {
	raw, err := json.Marshal(ev)
	if err != nil {
		return []string{err.Error()}
	}
	var problems []string
	bad := func(format string, args ...any) {
		problems = append(problems, fmt.Sprintf(format, args...)+"\n\tin "+string(raw))
	}

	schema, err := ceSchema()
	if err != nil {
		return []string{fmt.Sprintf("the CloudEvents schema does not compile: %v", err)}
	}
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		return []string{err.Error()}
	}
	if err := schema.Validate(inst); err != nil {
		bad("not valid against the CloudEvents schema: %v", err)
	}

	if ev["specversion"] != "1.0" {
		bad("specversion is %#v, want \"1.0\"", ev["specversion"])
	}
	_, hasData := ev["data"]
	_, hasBase64 := ev["data_base64"]
	if hasData && hasBase64 {
		bad("both data and data_base64")
	}
	for name, v := range ev {
		switch name {
		case "data", "data_base64":
			continue
		}
		if !attributeName.MatchString(name) {
			bad("attribute name %q: not 1 to 20 lower-case letters or digits", name)
		}
		switch v.(type) {
		case string, float64, bool, nil:
		default:
			bad("attribute %s is a %T, not a string, number or boolean", name, v)
		}
	}

	var ce notify.CloudEvent
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&ce); err != nil {
		bad("not the documented trainyard event: %v", err)
		return problems
	}
	d := ce.Data
	switch {
	case !strings.HasPrefix(ce.Type, "dev.trainyard."):
		bad("type %q is not a trainyard event type", ce.Type)
	case ce.DataContentType != "application/json":
		bad("datacontenttype %q, want application/json", ce.DataContentType)
	case !severities[ce.Severity]:
		bad("severity %q is not info, warning or critical", ce.Severity)
	case ce.Source != "/apis/trainyard.dev/v1alpha1/namespaces/"+d.Namespace:
		bad("source %q is not the rule's namespace %q", ce.Source, d.Namespace)
	case d.Rule == "" || d.Summary == "":
		bad("data has no rule or no summary")
	case d.Count < 1 || len(d.Events) != min(d.Count, trainyardv1.MaxDigestEvents) || d.Omitted != d.Count-len(d.Events):
		bad("data lists %d events and omits %d of count %d: want the first %d and the rest omitted",
			len(d.Events), d.Omitted, d.Count, trainyardv1.MaxDigestEvents)
	}
	if _, err := time.Parse(time.RFC3339, ce.Time); err != nil {
		bad("time: %v", err)
	}
	for i, e := range d.Events {
		if string(e.Type) != ce.Type || e.ID == "" || e.Summary == "" || e.Time.IsZero() {
			bad("data.events[%d] is not a %s event with an id, a summary and a time", i, ce.Type)
		}
	}
	if d.Count == 1 && len(d.Events) == 1 {
		if e := d.Events[0]; ce.ID != e.ID || ce.Subject != e.Subject || d.Summary != e.Summary {
			bad("a delivery of one event does not carry its id, subject and summary")
		}
	} else if d.Count > 1 && ce.Subject != "" {
		bad("a digest has subject %q: it is about several objects", ce.Subject)
	}
	return problems
}

// The checks of every delivery can fail: the schema and the rules it
// leaves out refuse what they should, in each mode.
func TestDeliveryChecksRefuseWhatIsNotACloudEvent(t *testing.T) {
	good := map[string]any{
		"specversion": "1.0", "id": "a1", "source": "/apis/trainyard.dev/v1alpha1/namespaces/fleet",
		"type": "dev.trainyard.release.latest", "subject": "releasetrains/router.stable",
		"time": "2026-12-01T12:00:00Z", "datacontenttype": "application/json", "severity": "info",
		"data": map[string]any{"namespace": "fleet", "rule": "audit", "count": 1, "summary": "router 2.4.1 is the latest release on stable",
			"events": []any{map[string]any{"id": "a1", "type": "dev.trainyard.release.latest", "severity": "info",
				"time": "2026-12-01T12:00:00Z", "subject": "releasetrains/router.stable",
				"summary": "router 2.4.1 is the latest release on stable", "component": "router", "train": "stable", "version": "2.4.1"}}},
	}
	with := func(k string, v any) map[string]any {
		out := map[string]any{}
		for kk, vv := range good {
			out[kk] = vv
		}
		if v == nil {
			delete(out, k)
		} else {
			out[k] = v
		}
		return out
	}
	structured := func(ev any) (http.Header, []byte) {
		b, _ := json.Marshal(ev)
		return http.Header{"Content-Type": {notify.ContentType}}, b
	}
	if p := checkCloudEvents(structured(good)); len(p) != 0 {
		t.Fatalf("a good event: %v", p)
	}
	for _, tc := range []struct {
		name string
		ev   map[string]any
		want string
	}{
		{"an invalid source", with("source", "http://exa mple.com/%zz"), "CloudEvents schema"},
		{"no id", with("id", nil), "CloudEvents schema"},
		{"an empty type", with("type", ""), "CloudEvents schema"},
		{"a time that is not RFC 3339", with("time", "yesterday"), "CloudEvents schema"},
		{"another specversion", with("specversion", "1"), `specversion is "1"`},
		{"an attribute name with capitals", with("Severity", "info"), `attribute name "Severity"`},
		{"data and data_base64", with("data_base64", "Zm9vYg=="), "both data and data_base64"},
		{"an undocumented attribute", with("priority", "high"), "not the documented trainyard event"},
		{"another source", with("source", "/elsewhere"), "is not the rule's namespace"},
	} {
		p := checkCloudEvents(structured(tc.ev))
		if len(p) == 0 || !strings.Contains(strings.Join(p, "\n"), tc.want) {
			t.Errorf("%s: %v, want a problem saying %q", tc.name, p, tc.want)
		}
	}

	// A batch: each element is checked.
	b, _ := json.Marshal([]any{good, with("specversion", "0.3")})
	if p := checkCloudEvents(http.Header{"Content-Type": {batchType}}, b); len(p) != 1 || !strings.HasPrefix(p[0], "batch element 1: specversion") {
		t.Errorf("a batch with a bad second event: %v", p)
	}
	// Binary mode: the event is made of the ce- headers and the body.
	h := http.Header{"Content-Type": {"application/json"}}
	for k, v := range good {
		if s, ok := v.(string); ok && k != "datacontenttype" {
			h.Set("ce-"+k, url.PathEscape(s))
		}
	}
	data, _ := json.Marshal(good["data"])
	if p := checkCloudEvents(h, data); len(p) != 0 {
		t.Errorf("a good event in binary mode: %v", p)
	}
	h.Set("ce-specversion", "2.0")
	if p := checkCloudEvents(h, data); len(p) == 0 {
		t.Error("binary mode with specversion 2.0 passes")
	}
	// Neither: refused.
	if p := checkCloudEvents(http.Header{"Content-Type": {"application/json"}}, data); len(p) != 1 {
		t.Errorf("plain JSON: %v", p)
	}
	// A signed delivery carries the event's id.
	hdr, body := structured(good)
	hdr.Set("webhook-id", "other")
	if p := checkCloudEvents(hdr, body); len(p) != 1 {
		t.Errorf("a webhook-id other than the event's: %v", p)
	}
}
