package bridge

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
)

// limits is what a route takes in a request, declared beside its access in
// the route table: a route without them cannot be registered. A body is
// read as a stream and these are enforced while it arrives, so one request
// holds at most one copy of its body (a decoded route), or none at all (a
// doctor dump, compressed as it streams).
type limits struct {
	// body is the largest body in bytes; noBody for a route that takes none.
	body int64
	// items bounds every JSON array and object of the body: reading stops
	// at member items+1. unbounded only where the body is never decoded.
	items int
	// why is said with a refusal for too many items.
	why string
	// held is the memory a request may hold while it is served, which the
	// body budget reserves; 0: its body's size times factor (a decoded
	// body's values can be larger than its text: 1 when 0).
	held   int64
	factor int64
	// answer is what the answer may hold at first; the handler grows it
	// (requestState.grow) as the answer needs more.
	answer int64
}

const (
	// noBody is limits.body of a route that takes no body.
	noBody = -1
	// unbounded is limits.items of a route whose body is streamed, not
	// decoded (its size is bounded by what it compresses to).
	unbounded = -1
	// maxDepth bounds the nesting of every body.
	maxDepth = 32
)

// none is the limits of a route that takes no body (reads, health).
var none = limits{body: noBody}

// declared: the route takes no body, or a bounded one with its items
// bounded (or, streamed, explicitly unbounded).
func (l limits) declared() bool {
	if l.body == noBody {
		return l.items == 0
	}
	return l.body > 0 && (l.items > 0 || l.items == unbounded)
}

// reserve is what a request with this Content-Length (-1: unknown) may
// hold in memory: what the body budget charges it.
func (l limits) reserve(contentLength int64) int64 {
	if l.body == noBody {
		return 0
	}
	n := l.body
	if contentLength >= 0 && contentLength < n {
		n = contentLength
	}
	n *= max(l.factor, 1)
	if l.held > 0 && l.held < n {
		n = l.held
	}
	return n + l.answer
}

// Errors of a body, each with its answer's status.
type (
	errTooManyItems struct {
		path string
		max  int
		why  string
	}
	errTooDeep   struct{ max int }
	errBadJSON   struct{ err error }
	errTrailing  struct{ what string }
	errBodyLarge struct{ limit int64 }
)

func (e errTooManyItems) Error() string {
	msg := fmt.Sprintf("%s: more than %d items; at most %d", e.path, e.max, e.max)
	if e.why != "" {
		msg += " (" + e.why + ")"
	}
	return msg
}
func (e errTooDeep) Error() string { return fmt.Sprintf("the body nests deeper than %d levels", e.max) }
func (e errBadJSON) Error() string { return fmt.Sprintf("invalid JSON body: %v", e.err) }
func (e errTrailing) Error() string {
	return "invalid JSON body: " + e.what
}
func (e errBodyLarge) Error() string {
	return fmt.Sprintf("request body larger than %d bytes", e.limit)
}

// decodeBody reads one JSON value from r within lim into v: the scanner
// enforces the limits while the body arrives, into one buffer, which is
// then decoded. The request decoders' core (fuzzed in
// decode_fuzz_test.go).
func decodeBody(r io.Reader, lim limits, v any) error {
	return decodeSized(r, -1, lim, v)
}

// decodeSized is decodeBody for a body of a known size (-1: unknown),
// buffered in one allocation of that size rather than a doubling series.
func decodeSized(r io.Reader, size int64, lim limits, v any) error {
	var buf bytes.Buffer
	if size > 0 && size <= lim.body {
		buf.Grow(int(size))
	}
	if err := newScanner(io.TeeReader(r, &buf), lim).scan(); err != nil {
		return err
	}
	if err := json.Unmarshal(buf.Bytes(), v); err != nil {
		return errBadJSON{err}
	}
	return nil
}

// jsonBody checks a request's Content-Type and returns its body, limited
// to lim.body bytes and to minBodyRate; it answers 415 or 413 itself.
func jsonBody(w http.ResponseWriter, r *http.Request, lim limits) (io.Reader, bool) {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/json" {
		writeError(w, http.StatusUnsupportedMediaType,
			fmt.Sprintf("Content-Type must be application/json, not %q", r.Header.Get("Content-Type")))
		return nil, false
	}
	if r.ContentLength > lim.body {
		// Refused before a byte of it is read.
		writeError(w, http.StatusRequestEntityTooLarge, errBodyLarge{limit: lim.body}.Error())
		return nil, false
	}
	return minRate(w, http.MaxBytesReader(w, r.Body, lim.body)), true
}

// decodeJSON reads the request's JSON body into v within its route's
// limits, and answers the refusal itself: 415 without an application/json
// Content-Type, 413 over the size, 408 too slow, 422 over the items or
// depth, 400 when it does not parse.
func decodeJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	lim := stateOf(r.Context()).limits
	body, ok := jsonBody(w, r, lim)
	if !ok {
		return false
	}
	if err := decodeSized(body, r.ContentLength, lim, v); err != nil {
		writeBodyError(w, err)
		return false
	}
	return true
}

// writeBodyError answers a body's refusal with its status.
func writeBodyError(w http.ResponseWriter, err error) {
	var (
		tooMany errTooManyItems
		deep    errTooDeep
		large   errBodyLarge
		slow    errSlowBody
		bad     errBadJSON
		trail   errTrailing
	)
	switch {
	case errors.As(err, &large), errors.Is(err, errDoctorTooLarge):
		writeError(w, http.StatusRequestEntityTooLarge, err.Error())
	case errors.As(err, &slow):
		shedTotal.WithLabelValues("slow_body").Inc()
		w.Header().Set("Connection", "close")
		writeError(w, http.StatusRequestTimeout, slow.Error())
	case errors.As(err, &tooMany), errors.As(err, &deep):
		writeError(w, http.StatusUnprocessableEntity, err.Error())
	case errors.As(err, &bad), errors.As(err, &trail):
		writeError(w, http.StatusBadRequest, err.Error())
	default:
		writeError(w, http.StatusBadRequest, err.Error())
	}
}
