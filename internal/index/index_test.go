package index_test

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// The report indexes keep their keys under the object's namespace only
// (indexInNamespaces): a list across all namespaces by one of them would
// find nothing, silently. Every query of one in the repository names a
// namespace.
func TestReportIndexesAreAskedInANamespace(t *testing.T) {
	root := filepath.Join("..", "..")
	use := regexp.MustCompile(`MatchingFields\{index\.Report\w+:`)
	found := 0
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && path != root && (d.Name() == "bin" || strings.HasPrefix(d.Name(), ".")) {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") {
			return nil
		}
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		text := string(src)
		for _, m := range use.FindAllStringIndex(text, -1) {
			found++
			call := strings.LastIndex(text[:m[0]], ".List(")
			if call < 0 || !strings.Contains(text[call:m[1]], "InNamespace(") {
				line := strings.Count(text[:m[0]], "\n") + 1
				t.Errorf("%s:%d: a report index asked without client.InNamespace finds nothing", path, line)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if found < 3 {
		t.Fatalf("found %d queries of the report indexes: has their spelling changed?", found)
	}
}
