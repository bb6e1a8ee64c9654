package webhook

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"reflect"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	trainyardv1 "github.com/trainyard-dev/trainyard/api/v1alpha1"
)

// The mutating webhooks run before the API server checks an object against
// its CRD schema, so they are the first to decode what a user wrote. Go's
// decoder then answered `released: "yesterday"` with its layout text
// (parsing time "yesterday" as "2006-01-02T15:04:05Z07:00": cannot parse
// ...) and a wrong type with a Go type name. precise checks the object's
// JSON against its kind first and names the field and what it expects.

// precise wraps an admission handler of kind T.
func precise[T runtime.Object](kind string, h admission.Handler) admission.Handler {
	typ := reflect.TypeFor[T]().Elem()
	return admission.HandlerFunc(func(ctx context.Context, req admission.Request) admission.Response {
		if len(req.Object.Raw) > 0 {
			if errs := DecodeErrors(req.Object.Raw, typ); len(errs) > 0 {
				name := req.Name
				return admission.Errored(http.StatusUnprocessableEntity, apierrors.NewInvalid(
					trainyardv1.GroupVersion.WithKind(kind).GroupKind(), name, errs))
			}
		}
		return h.Handle(ctx, req)
	})
}

// DecodeErrors says, per field, where raw (a JSON object) does not fit the
// Go type typ: a wrong JSON type, or a time or duration that does not
// parse. Nil when it fits (or is not JSON at all, which the decoder
// reports itself).
func DecodeErrors(raw []byte, typ reflect.Type) field.ErrorList {
	var v any
	if json.Unmarshal(raw, &v) != nil {
		return nil
	}
	return check(nil, v, typ)
}

var (
	timeType     = reflect.TypeFor[metav1.Time]()
	microType    = reflect.TypeFor[metav1.MicroTime]()
	durationType = reflect.TypeFor[metav1.Duration]()
	unmarshaler  = reflect.TypeFor[json.Unmarshaler]()
)

// exampleTime is what an RFC 3339 time looks like, in messages.
const exampleTime = "2026-12-03T10:00:00Z"

func check(p *field.Path, v any, t reflect.Type) field.ErrorList {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if v == nil {
		return nil // null: the zero value, as the decoder takes it
	}
	show := func() string {
		b, _ := json.Marshal(v)
		if s := string(b); len(s) <= 64 {
			return s
		}
		return string(b[:61]) + "..."
	}
	wrong := func(want string) field.ErrorList {
		return field.ErrorList{field.Invalid(p, show(), "must be "+want+", not "+jsonType(v))}
	}
	switch t {
	case timeType, microType:
		s, ok := v.(string)
		if !ok {
			return wrong("an RFC 3339 time such as " + exampleTime)
		}
		if _, err := time.Parse(time.RFC3339, s); err != nil {
			return field.ErrorList{field.Invalid(p, s, "must be an RFC 3339 time such as "+exampleTime)}
		}
		return nil
	case durationType:
		s, ok := v.(string)
		if !ok {
			return wrong("a duration such as 30s or 1h30m")
		}
		if _, err := time.ParseDuration(s); err != nil {
			return field.ErrorList{field.Invalid(p, s, "must be a duration such as 30s or 1h30m")}
		}
		return nil
	}
	if reflect.PointerTo(t).Implements(unmarshaler) || t.Implements(unmarshaler) {
		return nil // decoded its own way (quantities, int-or-string, raw JSON)
	}
	switch t.Kind() {
	case reflect.Struct:
		m, ok := v.(map[string]any)
		if !ok {
			return wrong("an object")
		}
		var errs field.ErrorList
		for name, ft := range jsonFields(t) {
			if fv, present := m[name]; present {
				errs = append(errs, check(child(p, name), fv, ft)...)
			}
		}
		return errs
	case reflect.Map:
		m, ok := v.(map[string]any)
		if !ok {
			return wrong("an object")
		}
		var errs field.ErrorList
		for k, mv := range m {
			errs = append(errs, check(p.Key(k), mv, t.Elem())...)
		}
		return errs
	case reflect.Slice, reflect.Array:
		if t.Elem().Kind() == reflect.Uint8 {
			if _, ok := v.(string); !ok {
				return wrong("a base64 string")
			}
			return nil
		}
		l, ok := v.([]any)
		if !ok {
			return wrong("a list")
		}
		var errs field.ErrorList
		for i, e := range l {
			errs = append(errs, check(p.Index(i), e, t.Elem())...)
		}
		return errs
	case reflect.String:
		if _, ok := v.(string); !ok {
			return wrong("a string")
		}
	case reflect.Bool:
		if _, ok := v.(bool); !ok {
			return wrong("true or false")
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		if n, ok := v.(float64); !ok || n != math.Trunc(n) {
			return wrong("an integer")
		}
	case reflect.Float32, reflect.Float64:
		if _, ok := v.(float64); !ok {
			return wrong("a number")
		}
	}
	return nil
}

// child is p's field name, or the root's.
func child(p *field.Path, name string) *field.Path {
	if p == nil {
		return field.NewPath(name)
	}
	return p.Child(name)
}

// jsonFields are a struct's fields by JSON name, inlined ones flattened.
func jsonFields(t reflect.Type) map[string]reflect.Type {
	out := map[string]reflect.Type{}
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		tag := f.Tag.Get("json")
		name, opts, _ := strings.Cut(tag, ",")
		switch {
		case name == "-":
			continue
		case f.Anonymous && (name == "" || strings.Contains(opts, "inline")):
			ft := f.Type
			for ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				for k, v := range jsonFields(ft) {
					out[k] = v
				}
				continue
			}
		case name == "":
			name = f.Name
		}
		out[name] = f.Type
	}
	return out
}

// jsonType names a decoded JSON value's type, as a user wrote it.
func jsonType(v any) string {
	switch v.(type) {
	case string:
		return "a string"
	case float64:
		return "a number"
	case bool:
		return "a boolean"
	case []any:
		return "a list"
	case map[string]any:
		return "an object"
	}
	return fmt.Sprintf("%T", v)
}
