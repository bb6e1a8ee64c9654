package plugin_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"testing"

	"github.com/trainyard-dev/trainyard/plugin"
)

// The second wall against terminal injection: whatever a stored value
// holds, the plugin's output has no control character but newline and
// tab, JSON stays valid and decodes to the same text, and a rune split
// across writes is kept whole.
func TestPrintedCellsCannotDriveTheTerminal(t *testing.T) {
	attack := "aws\x1b[1A\x1b[2K\x1b]0;owned\a\x1b]52;c;Y3VybA==\a\u009b31m\u202eok\xff"
	var out bytes.Buffer
	w, flush := plugin.NewPrintable(&out)
	fmt.Fprintf(w, "PROVIDER\t%s\n", attack)
	want := `PROVIDER	aws\x1b[1A\x1b[2K\x1b]0;owned\x07\x1b]52;c;Y3VybA==\x07\u009b31m\u202eok\xff` + "\n"
	if out.String() != want {
		t.Errorf("printed %q\nwant    %q", out.String(), want)
	}

	out.Reset()
	b, _ := json.Marshal(map[string]string{"provider": "gce\u009b31m"})
	_, _ = w.Write(b)
	var back map[string]string
	if err := json.Unmarshal(out.Bytes(), &back); err != nil || back["provider"] != "gce\u009b31m" {
		t.Errorf("JSON through the wall: %s (%v), decoded %q", out.String(), err, back["provider"])
	}
	if bytes.ContainsAny(out.Bytes(), "\u009b") {
		t.Errorf("a raw C1 character passed: %q", out.String())
	}

	out.Reset()
	zurich := []byte("Zürich")
	_, _ = w.Write(zurich[:2]) // "Z" and half of "ü"
	_, _ = w.Write(zurich[2:])
	_, _ = w.Write([]byte{0xe6}) // a rune's first byte, and nothing more
	flush()
	if out.String() != `Zürich\xe6` {
		t.Errorf("split writes: %q", out.String())
	}
}
