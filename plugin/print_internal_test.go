package plugin

import (
	"bytes"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"k8s.io/cli-runtime/pkg/genericiooptions"
)

// A streamed table prints exactly as a whole one while it fits the window,
// prints the window once it is full, before the rest has come, and lays the
// later rows out in the window's columns, a wider cell pushing its line.
func TestStreamTablePrintsAsTheRowsCome(t *testing.T) {
	newGlobals := func() (*globals, *lockedBuffer) {
		out := &lockedBuffer{}
		return &globals{Options: Options{Streams: genericiooptions.IOStreams{Out: out, ErrOut: &bytes.Buffer{}}}}, out
	}
	fill := func(t *table, from, to int) {
		for i := from; i < to; i++ {
			t.row("", fmt.Sprintf("cluster-%04d", i), i%7, "True")
		}
	}

	g, out := newGlobals()
	st := newStreamTable(g, &table{headers: []string{"CLUSTER", "COMPONENTS", "STALE"}})
	fill(st.t, 0, streamWindow)
	if err := st.flush(); err != nil {
		t.Fatal(err)
	}
	if out.String() != "" {
		t.Fatalf("printed before the window was full: %q", out.String())
	}
	if err := st.finish(); err != nil {
		t.Fatal(err)
	}
	wg, whole := newGlobals()
	wt := &table{headers: []string{"CLUSTER", "COMPONENTS", "STALE"}}
	fill(wt, 0, streamWindow)
	if err := wt.write(wg); err != nil {
		t.Fatal(err)
	}
	if out.String() != whole.String() {
		t.Fatalf("a table within the window prints otherwise than a whole one:\n%s\nwant\n%s", out, whole)
	}

	g, out = newGlobals()
	st = newStreamTable(g, &table{headers: []string{"CLUSTER", "COMPONENTS", "STALE"}})
	fill(st.t, 0, streamWindow+1)
	if err := st.flush(); err != nil {
		t.Fatal(err)
	}
	// Written by the queue's goroutine, soon.
	for deadline := time.Now().Add(10 * time.Second); strings.Count(out.String(), "\n") != streamWindow+2; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d lines printed once the window was full, want the header and %d rows",
				strings.Count(out.String(), "\n"), streamWindow+1)
		}
	}
	st.t.row("", "a-cluster-id-longer-than-the-column", 1, "False")
	if err := st.finish(); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	if want := "cluster-0000   0            True"; lines[1] != want {
		t.Errorf("first row %q, want %q", lines[1], want)
	}
	if want := "a-cluster-id-longer-than-the-column 1            False"; lines[len(lines)-1] != want {
		t.Errorf("a wider later row %q, want %q", lines[len(lines)-1], want)
	}
}

// lockedBuffer is a buffer written by one goroutine and read by another.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
