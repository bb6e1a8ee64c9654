package plugin

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"
	"unicode/utf8"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/duration"
	"sigs.k8s.io/yaml"
)

// print writes v as JSON or YAML, or fills and writes a table.
func (g *globals) print(v any, fill func(*table)) error {
	switch g.output {
	case "json":
		// As kubectl prints JSON: indented, and "<" or ">" as they are.
		enc := json.NewEncoder(g.out())
		enc.SetIndent("", "  ")
		enc.SetEscapeHTML(false)
		return enc.Encode(v)
	case "yaml":
		b, err := yaml.Marshal(v)
		if err != nil {
			return err
		}
		_, err = g.out().Write(b)
		return err
	}
	t := &table{namespaces: g.allNamespaces}
	fill(t)
	return t.write(g)
}

// table is kubectl's table layout: upper-case headers, columns three spaces
// apart, a NAMESPACE column first with -A.
type table struct {
	namespaces bool
	// empty is said (to stderr) instead of an empty table; kubectl's words by default.
	empty   string
	headers []string
	rows    [][]string
}

// header adds columns (a row's first cell is its namespace, not a column
// unless -A).
func (t *table) header(h ...string) { t.headers = append(t.headers, h...) }

// row starts a row: its namespace and cells.
func (t *table) row(namespace string, cells ...any) {
	r := make([]string, 0, len(t.headers)+1)
	if t.namespaces {
		r = append(r, namespace)
	}
	t.rows = append(t.rows, r)
	t.cells(cells...)
}

// cells adds cells to the last row.
func (t *table) cells(cells ...any) {
	r := &t.rows[len(t.rows)-1]
	for _, c := range cells {
		s := fmt.Sprint(c)
		if s == "" {
			s = "-"
		}
		*r = append(*r, s)
	}
}

func (t *table) write(g *globals) error {
	if len(t.rows) == 0 && t.empty != "" {
		_, err := fmt.Fprintln(g.Streams.ErrOut, t.empty)
		return err
	}
	if len(t.rows) == 0 {
		ns, err := g.listNamespace()
		if err != nil {
			return err
		}
		if ns == "" {
			_, err = fmt.Fprintln(g.Streams.ErrOut, "No resources found")
		} else {
			_, err = fmt.Fprintf(g.Streams.ErrOut, "No resources found in %s namespace.\n", ns)
		}
		return err
	}
	return writeColumns(g.out(), t.withHeader(g))
}

// withHeader is the table's rows, its header first unless --no-headers.
func (t *table) withHeader(g *globals) [][]string {
	rows := t.rows
	if !g.noHeaders {
		h := t.headers
		if t.namespaces {
			h = append([]string{"NAMESPACE"}, h...)
		}
		rows = append([][]string{h}, rows...)
	}
	return rows
}

// streamWindow is how many rows set a streamed table's column widths: a
// page at the default --chunk-size, so a table that fits one prints exactly
// as a whole one, at any chunk size.
const streamWindow = pageSize

// streamTable prints a table as its rows come, for a list read page by page
// (`fleet` of 100,000 clusters prints its first rows after the first pages,
// and keeps rows, never the reports). The first streamWindow rows set the
// widths; later rows print at once, a cell wider than its column pushing
// the rest of its line, as `kubectl get -w` does.
//
// The rows are written through a queue drained by a goroutine of its own,
// so that a reader who holds the output (a pager) never holds the list: the
// pages must be read at the API server's pace, since a list's continue
// token expires with etcd's compaction (five minutes), which would cut the
// table short. The queue holds what is not printed yet, at most the table:
// what a whole table held before.
type streamTable struct {
	g      *globals
	t      *table
	widths []int // set once the window is printed
	w      *bufio.Writer
	queue  *queuedWriter
}

func newStreamTable(g *globals, t *table) *streamTable {
	return &streamTable{g: g, t: t}
}

// flush prints what can be printed: nothing until the window is full, then
// every row added since.
func (s *streamTable) flush() error {
	if s.widths == nil {
		if len(s.t.rows) <= streamWindow {
			return nil
		}
		rows := s.t.withHeader(s.g)
		s.widths = columnWidths(rows[:len(rows)-len(s.t.rows)+streamWindow])
		s.queue = newQueuedWriter(s.g.out())
		s.w = bufio.NewWriterSize(s.queue, 64<<10)
		writeRows(s.w, s.widths, rows)
	} else {
		writeRows(s.w, s.widths, s.t.rows)
	}
	s.t.rows = s.t.rows[:0]
	return s.w.Flush()
}

// finish prints the rest (the whole table when it fit the window) and
// waits until it is written.
func (s *streamTable) finish() error {
	if s.widths == nil {
		return s.t.write(s.g)
	}
	err := s.flush()
	return errors.Join(err, s.queue.Close())
}

// stop ends a table that will not be finished (the list failed): what was
// printed stays, the rest is dropped.
func (s *streamTable) stop() {
	if s.queue != nil {
		_ = s.queue.Close()
	}
}

// queuedWriter takes writes at once and writes them to out on a goroutine
// of its own, in order. Close waits for them and returns the first error,
// which later writes return too.
type queuedWriter struct {
	mu      sync.Mutex
	ready   *sync.Cond
	pending [][]byte
	closed  bool
	err     error
	done    chan struct{}
}

func newQueuedWriter(out io.Writer) *queuedWriter {
	q := &queuedWriter{done: make(chan struct{})}
	q.ready = sync.NewCond(&q.mu)
	go q.run(out)
	return q
}

func (q *queuedWriter) Write(p []byte) (int, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.err != nil {
		return 0, q.err
	}
	q.pending = append(q.pending, bytes.Clone(p))
	q.ready.Signal()
	return len(p), nil
}

func (q *queuedWriter) run(out io.Writer) {
	defer close(q.done)
	for {
		q.mu.Lock()
		for len(q.pending) == 0 && !q.closed {
			q.ready.Wait()
		}
		batch := q.pending
		q.pending = nil
		q.mu.Unlock()
		if len(batch) == 0 {
			return // closed, and all written
		}
		for _, b := range batch {
			if _, err := out.Write(b); err != nil {
				q.mu.Lock()
				q.err, q.pending = err, nil
				q.mu.Unlock()
				return
			}
		}
	}
}

// Close waits until everything written is written out.
func (q *queuedWriter) Close() error {
	q.mu.Lock()
	q.closed = true
	q.ready.Signal()
	q.mu.Unlock()
	<-q.done
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.err
}

// writeColumns lays rows out as kubectl's tab writer does (columns at least
// 6 wide, 3 spaces apart, the last one unpadded), in one pass for the
// widths and one for the text: a 40,000-row `outdated` printed through the
// tab writer took half a second of its 2.5 (make bench-plugin).
func writeColumns(out io.Writer, rows [][]string) error {
	w := bufio.NewWriterSize(out, 64<<10)
	writeRows(w, columnWidths(rows), rows)
	return w.Flush()
}

// columnWidths are the widths of rows' columns but the last.
func columnWidths(rows [][]string) []int {
	const minWidth, padding = 6, 3
	var widths []int
	for _, r := range rows {
		for i, c := range r[:max(len(r)-1, 0)] {
			if i == len(widths) {
				widths = append(widths, minWidth)
			}
			widths[i] = max(widths[i], utf8.RuneCountInString(c)+padding)
		}
	}
	return widths
}

// writeRows writes rows in columns of widths. A cell wider than its column
// (a streamed row's, past the rows that set the widths) is followed by one
// space.
func writeRows(w *bufio.Writer, widths []int, rows [][]string) {
	for _, r := range rows {
		for i, c := range r {
			w.WriteString(c)
			if i < len(r)-1 {
				n := 1
				if i < len(widths) {
					n = max(widths[i]-utf8.RuneCountInString(c), 1)
				}
				for ; n > 0; n-- {
					w.WriteByte(' ')
				}
			}
		}
		w.WriteByte('\n')
	}
}

// age is how long ago t was, as kubectl prints ages ("<unknown>" for none).
func (g *globals) age(t *metav1.Time) string {
	if t == nil || t.IsZero() {
		return "<unknown>"
	}
	return duration.HumanDuration(g.Now().Sub(t.Time))
}
