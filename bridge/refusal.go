package bridge

import (
	"context"
	"io"
	"net/http"
	"strconv"
	"time"
)

// statusRecorder remembers the status a handler wrote.
type statusRecorder struct {
	http.ResponseWriter
	code int
	// hasBody: the request came with a body. Go's server reads what is
	// left of a small unread body before it sends the answer; a refusal is
	// sent first (full duplex), then drainRefused reads the rest.
	hasBody bool
	// srv, st and ctx: for holding a 429 (Options.RefusalDelay).
	srv *Server
	st  *requestState
	ctx context.Context
}

// maxHeldRefusals bounds the refusals held at once (a goroutine and a
// connection's buffers each, some 20 KiB: 10 MiB in all).
const maxHeldRefusals = 512

func (s *statusRecorder) WriteHeader(code int) {
	if s.code == 0 {
		if (code == http.StatusTooManyRequests || code == http.StatusServiceUnavailable) && s.srv != nil {
			s.srv.holdRefusal(s.ctx, s.st, s.Header().Get("Retry-After"))
		}
		s.code = code
		if s.hasBody && code >= http.StatusBadRequest {
			_ = http.NewResponseController(s.ResponseWriter).EnableFullDuplex()
			// The connection ends with a refused body: what is left of it
			// may be more than drainRefused reads, and a connection whose
			// body was not read to its end cannot carry another request.
			s.Header().Set("Connection", "close")
		}
	}
	s.ResponseWriter.WriteHeader(code)
}

// holdRefusal waits Options.RefusalDelay (at most retryAfter seconds)
// before a 429 or 503 goes out, having given back the request's source slot and
// level seat: held, it costs a goroutine, not a seat anyone else needs. A
// client that keeps sending after its budget is spent is mostly waiting,
// so a flood from a few connections costs the bridge a few refusals a
// second instead of a thousand, the CPU its clusters' check-ins need.
func (s *Server) holdRefusal(ctx context.Context, st *requestState, retryAfter string) {
	d := s.opts.RefusalDelay
	if ra, err := strconv.Atoi(retryAfter); err == nil && time.Duration(ra)*time.Second < d {
		d = time.Duration(ra) * time.Second
	}
	if d <= 0 {
		return
	}
	select {
	case s.heldRefusals <- struct{}{}:
		defer func() { <-s.heldRefusals }()
	default:
		heldRefusalsFull.Inc()
		return // as many held as may be: this one goes out at once
	}
	if st != nil {
		st.free()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	case <-s.draining:
	}
}

// A refused request's unread body is read, up to maxDrained bytes (the
// largest body any route takes) and for at most refusedBodyWait, after its
// answer has gone out: a client sending a byte a second has its refusal at
// once and holds its slot 2 s at most, while a fast one is not reset in the
// middle of its upload (which would lose it the answer: closing a
// connection with unread data resets it, and the reset discards the answer
// the client had not read yet). An anonymous source has a drain budget,
// drainRate a second after a burst of drainBurst: reading a flood of refused
// 1 MiB bodies whole cost the bridge the CPU its clusters' check-ins wait
// for. Past it, at most maxDrainedAnonymous is read and the connection
// closes.
const (
	refusedBodyWait     = 2 * time.Second
	maxDrained          = 8<<20 + 1
	maxDrainedAnonymous = 64 << 10
	drainUnit           = 1 << 10 // the drain budget counts KiB
	drainRate           = (1 << 20) / drainUnit
	drainBurst          = (16 << 20) / drainUnit
)

// drainLimit is how much of a refused request's body is read: all of it
// (up to maxDrained) for an authenticated client, and for an anonymous one
// while its source's drain budget lasts.
func (s *Server) drainLimit(st *requestState, a access, r *http.Request) int64 {
	if st.priority(a) != priorityAnonymous {
		return maxDrained
	}
	n := r.ContentLength
	if n < 0 || n > maxDrained {
		n = maxDrained
	}
	if ok, _ := s.drains.allowN(st.source, int(n/drainUnit)+1); ok {
		return n
	}
	return maxDrainedAnonymous
}

func (s *statusRecorder) drainRefused(r *http.Request, limit int64) {
	if !s.hasBody || s.code < http.StatusBadRequest {
		return
	}
	rc := http.NewResponseController(s.ResponseWriter)
	if rc.Flush() != nil || rc.SetReadDeadline(time.Now().Add(refusedBodyWait)) != nil {
		return
	}
	_, _ = io.CopyN(io.Discard, r.Body, limit)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	if s.code == 0 {
		s.code = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection (read
// deadlines of slow bodies).
func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }
