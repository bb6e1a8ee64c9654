package bridge

import (
	"fmt"
	"net/http"
	"net/url"
	"strconv"
)

// Pagination of the list endpoints: ?limit=N&marker=M. Items are in a stable
// order (clusters by name, releases newest first); the marker is the name of
// the last item of the previous page, and a Link header with rel="next"
// points at the next page. Without limit and marker an endpoint answers
// everything, as before.

const maxPageLimit = 1000

type page struct {
	limit  int // 0: no pagination
	marker string
}

// pageParams parses limit and marker: 422 when limit is not 1..1000.
func pageParams(w http.ResponseWriter, r *http.Request) (page, bool) {
	q := r.URL.Query()
	p := page{marker: q.Get("marker")}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxPageLimit {
			writeError(w, http.StatusUnprocessableEntity,
				fmt.Sprintf("query parameter limit=%q must be a whole number from 1 to %d", v, maxPageLimit))
			return p, false
		}
		p.limit = n
	}
	return p, true
}

// cut returns the page of names (in their order) after the marker, at most
// limit of them, and whether more follow. A marker that is not among names
// is an error: the item it named is gone, or it was never one.
func (p page) cut(names []string) (from, to int, more bool, err error) {
	from = 0
	if p.marker != "" {
		i := -1
		for j, n := range names {
			if n == p.marker {
				i = j
				break
			}
		}
		if i < 0 {
			return 0, 0, false, fmt.Errorf("marker %q names no item of this list; start again without a marker", p.marker)
		}
		from = i + 1
	}
	to = len(names)
	if p.limit > 0 && from+p.limit < to {
		to, more = from+p.limit, true
	}
	return from, to, more, nil
}

// linkNext sets the Link header of the next page.
func linkNext(w http.ResponseWriter, r *http.Request, p page, last string) {
	q := r.URL.Query()
	q.Set("marker", last)
	q.Set("limit", strconv.Itoa(p.limit))
	u := url.URL{Path: r.URL.Path, RawQuery: q.Encode()}
	w.Header().Set("Link", fmt.Sprintf(`<%s>; rel="next"`, u.String()))
}

// apply cuts the page out of names, answering 400 for a bad marker and
// setting the Link header when more follow; ok is false when it answered.
func (p page) apply(w http.ResponseWriter, r *http.Request, names []string) (from, to int, ok bool) {
	from, to, more, err := p.cut(names)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return 0, 0, false
	}
	if more {
		linkNext(w, r, p, names[to-1])
	}
	return from, to, true
}
