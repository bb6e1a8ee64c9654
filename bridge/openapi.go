package bridge

import (
	_ "embed"
	"net/http"
)

// openAPIDoc documents every route; openapi_test.go fails when a route and
// the document disagree.
//
//go:embed openapi.json
var openAPIDoc []byte

func (s *Server) openAPI(w http.ResponseWriter, _ *http.Request, _ params) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(openAPIDoc)
}
