// A CloudEvents receiver for trainyard's notifications: it verifies the
// Standard Webhooks signature, drops deliveries it has already handled (the
// same id comes again after a retry), and prints each event.
//
//	WEBHOOK_SECRET=whsec_... go run ./docs/examples/receiver -addr :9000
package main

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// event is the part of a trainyard CloudEvent this receiver reads.
type event struct {
	ID   string `json:"id"`
	Type string `json:"type"`
	Data struct {
		Count   int    `json:"count"`
		Summary string `json:"summary"`
	} `json:"data"`
}

func main() {
	addr := flag.String("addr", ":9000", "listen address")
	flag.Parse()
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(os.Getenv("WEBHOOK_SECRET"), "whsec_"))
	if err != nil || len(key) == 0 {
		log.Fatal("set WEBHOOK_SECRET to the target Secret's signingKey (whsec_...)")
	}
	seen := newSeen(10000)
	http.HandleFunc("POST /", func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		if err != nil {
			http.Error(w, "cannot read body", http.StatusBadRequest)
			return
		}
		id := r.Header.Get("webhook-id")
		if !verify(key, id, r.Header.Get("webhook-timestamp"), r.Header.Get("webhook-signature"), body) {
			http.Error(w, "bad signature", http.StatusUnauthorized)
			return
		}
		if !seen.add(id) {
			w.WriteHeader(http.StatusOK) // a retry of what we have: acknowledge, do nothing
			return
		}
		var e event
		if err := json.Unmarshal(body, &e); err != nil {
			http.Error(w, "not a CloudEvent", http.StatusBadRequest)
			return
		}
		fmt.Printf("%s %s (%d): %s\n", e.Type, e.ID, e.Data.Count, e.Data.Summary)
		w.WriteHeader(http.StatusAccepted)
	})
	log.Fatal(http.ListenAndServe(*addr, nil))
}

// verify checks a Standard Webhooks signature: HMAC-SHA256 over
// "<id>.<timestamp>.<body>", sent as "v1,<base64>" (several may be sent,
// separated by spaces), with a timestamp within five minutes.
func verify(key []byte, id, ts, sigs string, body []byte) bool {
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || id == "" || time.Since(time.Unix(sec, 0)).Abs() > 5*time.Minute {
		return false
	}
	m := hmac.New(sha256.New, key)
	fmt.Fprintf(m, "%s.%s.", id, ts)
	m.Write(body)
	want := m.Sum(nil)
	for _, s := range strings.Fields(sigs) {
		if v, ok := strings.CutPrefix(s, "v1,"); ok {
			if got, err := base64.StdEncoding.DecodeString(v); err == nil && hmac.Equal(got, want) {
				return true
			}
		}
	}
	return false
}

// seen remembers the last n ids handled.
type seen struct {
	mu    sync.Mutex
	ids   map[string]bool
	order []string
	n     int
}

func newSeen(n int) *seen { return &seen{ids: map[string]bool{}, n: n} }

// add tells whether id is new, and remembers it.
func (s *seen) add(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ids[id] {
		return false
	}
	s.ids[id] = true
	s.order = append(s.order, id)
	if len(s.order) > s.n {
		delete(s.ids, s.order[0])
		s.order = s.order[1:]
	}
	return true
}
