package bridge

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"
)

// A request body must keep coming: after bodyGrace, at least minBodyRate
// bytes a second on average, and all of it within maxBodyTime. A client
// that sends a byte a second is cut off after a few seconds instead of
// holding an in-flight slot for as long as it likes.
const (
	minBodyRate = 1024
	bodyGrace   = 5 * time.Second
	maxBodyTime = 60 * time.Second
)

// errSlowBody is the 408 answer to a body that came too slowly.
type errSlowBody struct{ received int64 }

func (e errSlowBody) Error() string {
	return fmt.Sprintf("the request body came too slowly: %d bytes received; a body must arrive at %d bytes a second or more after its first %s",
		e.received, minBodyRate, bodyGrace)
}

// rateReader moves the connection's read deadline along with what has
// arrived, so that each read must come before start + grace + n/rate.
type rateReader struct {
	rc    *http.ResponseController
	r     io.Reader
	start time.Time
	n     int64
}

func minRate(w http.ResponseWriter, r io.Reader) io.Reader {
	return &rateReader{rc: http.NewResponseController(w), r: r, start: time.Now()}
}

func (b *rateReader) Read(p []byte) (int, error) {
	deadline := b.start.Add(bodyGrace + time.Duration(b.n)*time.Second/minBodyRate)
	if limit := b.start.Add(maxBodyTime); deadline.After(limit) {
		deadline = limit
	}
	if err := b.rc.SetReadDeadline(deadline); err != nil {
		return b.r.Read(p) // not a connection (a test recorder): no guard
	}
	n, err := b.r.Read(p)
	b.n += int64(n)
	var ne net.Error
	if err != nil && errors.As(err, &ne) && ne.Timeout() {
		return n, errSlowBody{received: b.n}
	}
	return n, err
}
