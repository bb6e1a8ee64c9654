package bridge

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/http"

	"sigs.k8s.io/controller-runtime/pkg/log"
)

// HeaderRequestID names a request across the logs: every answer carries
// it, every JSON error body repeats it (requestId), and the audit line and
// every log line written for the request have it.
const HeaderRequestID = "X-Request-ID"

// maxRequestIDLength bounds a client's request ID.
const maxRequestIDLength = 64

// requestID is the client's X-Request-ID when it is 1 to 64 printable
// ASCII characters (no spaces: it lands in logs), else a new random one.
func requestID(r *http.Request) string {
	if id := r.Header.Get(HeaderRequestID); validRequestID(id) {
		return id
	}
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func validRequestID(id string) bool {
	if len(id) == 0 || len(id) > maxRequestIDLength {
		return false
	}
	for i := 0; i < len(id); i++ {
		if id[i] <= ' ' || id[i] > '~' {
			return false
		}
	}
	return true
}

// withRequestID names the request: the answer's header, and a logger
// carrying the ID in the request's context.
func withRequestID(w http.ResponseWriter, r *http.Request) *http.Request {
	id := requestID(r)
	w.Header().Set(HeaderRequestID, id)
	ctx := log.IntoContext(r.Context(), log.FromContext(r.Context()).WithValues("requestId", id))
	return r.WithContext(context.WithValue(ctx, requestIDKey{}, id))
}

type requestIDKey struct{}

// requestIDOf is the request's ID ("" outside the bridge's handler).
func requestIDOf(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey{}).(string)
	return id
}
