package testenv_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/trainyard-dev/trainyard/internal/testenv"
)

// maxTrackedBytes bounds a tracked file: a 65 MB binary was once committed
// (a `go build` of a bench in the root), and shipped in every clone and
// Docker build context.
const maxTrackedBytes = 2 << 20

// No build output is tracked: every executable file is a script (#!), and
// no file is over 2 MiB.
func TestNoBinariesOrLargeFilesAreTracked(t *testing.T) {
	root := testenv.RepoRoot()
	out, err := exec.Command("git", "-C", root, "ls-files", "-s", "-z").Output()
	if err != nil {
		t.Skipf("not a git checkout (%v)", err)
	}
	for _, entry := range strings.Split(strings.TrimRight(string(out), "\x00"), "\x00") {
		// <mode> <object> <stage>\t<path>
		meta, path, ok := strings.Cut(entry, "\t")
		if !ok {
			continue
		}
		full := filepath.Join(root, path)
		info, err := os.Stat(full)
		if err != nil {
			continue // deleted in the work tree
		}
		if info.Size() > maxTrackedBytes {
			t.Errorf("%s is tracked and %d bytes (at most %d): build outputs belong in bin/ (ignored)", path, info.Size(), maxTrackedBytes)
		}
		if strings.HasPrefix(meta, "100755") {
			head := make([]byte, 2)
			if f, err := os.Open(full); err == nil {
				_, _ = f.Read(head)
				f.Close()
			}
			if !bytes.Equal(head, []byte("#!")) {
				t.Errorf("%s is a tracked executable that is not a script: build outputs belong in bin/ (ignored)", path)
			}
		}
	}
}
