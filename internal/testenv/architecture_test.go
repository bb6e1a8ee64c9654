package testenv_test

import (
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/trainyard-dev/trainyard/internal/testenv"
)

const module = "github.com/trainyard-dev/trainyard/"

// docs/architecture.md names files, functions and packages, and says what
// each package may import: a rename or a new import edge that the page does
// not know about fails here.
func TestArchitectureNamesExist(t *testing.T) {
	root := testenv.RepoRoot()
	page, err := os.ReadFile(filepath.Join(root, "docs", "architecture.md"))
	if err != nil {
		t.Fatal(err)
	}
	text := string(page)

	// `file.go` `(*Type).Method` or `file.go` `Func`: the file declares it.
	pairs := regexp.MustCompile("`([a-z0-9_/]+\\.go)` `(\\(\\*?(\\w+)\\)\\.)?(\\w+)`").FindAllStringSubmatch(text, -1)
	if len(pairs) < 20 {
		t.Fatalf("found %d file-function pairs: has the page's syntax changed?", len(pairs))
	}
	for _, m := range pairs {
		file, recv, name := m[1], m[3], m[4]
		src, err := os.ReadFile(filepath.Join(root, file))
		if err != nil {
			t.Errorf("%s: %v", file, err)
			continue
		}
		decl := `func ` + regexp.QuoteMeta(name) + `[\[(]`
		if recv != "" {
			decl = `func \(\w+ \*?` + regexp.QuoteMeta(recv) + `\) ` + regexp.QuoteMeta(name) + `\(`
		}
		if !regexp.MustCompile(`(?m)^` + decl).Match(src) {
			t.Errorf("%s declares no %s", file, m[0])
		}
	}

	// Every path it names exists.
	for _, m := range regexp.MustCompile("`((?:api|internal|bridge|controllers|webhook|notify|agent|plugin|charts|hack|docs|config|cmd)(?:/[a-z0-9_.-]+)*)`").FindAllStringSubmatch(text, -1) {
		if _, err := os.Stat(filepath.Join(root, m[1])); err != nil {
			t.Errorf("names %s: %v", m[1], err)
		}
	}

	// The package table: each package imports no project package but the
	// API and those its row allows.
	rows := regexp.MustCompile("(?m)^\\| `([a-z0-9/]+)` \\|[^|]*\\| ([^|]*) \\|$").FindAllStringSubmatch(text, -1)
	if len(rows) < 15 {
		t.Fatalf("found %d package rows", len(rows))
	}
	for _, row := range rows {
		pkg := row[1]
		allowed := regexp.MustCompile("`([a-z0-9/]+)`").FindAllStringSubmatch(row[2], -1)
		var may []string
		for _, a := range allowed {
			may = append(may, a[1])
		}
		for _, imp := range projectImports(t, filepath.Join(root, pkg)) {
			if imp != "api/v1alpha1" && !slices.Contains(may, imp) {
				t.Errorf("%s imports %s, which docs/architecture.md does not allow it", pkg, imp)
			}
		}
	}
}

// Only internal/manager wires controllers and webhook into a process, and
// the root holds main.go alone.
func TestOnlyTheManagerImportsControllersAndWebhook(t *testing.T) {
	root := testenv.RepoRoot()
	err := filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && path != root && (strings.HasPrefix(d.Name(), ".") || d.Name() == "bin" || d.Name() == "testdata") {
			return filepath.SkipDir
		}
		if !d.IsDir() {
			return nil
		}
		rel, _ := filepath.Rel(root, path)
		for _, imp := range projectImports(t, path) {
			if (imp == "controllers" || imp == "webhook") && rel != filepath.Join("internal", "manager") {
				t.Errorf("%s imports %s: only internal/manager may", rel, imp)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(root)
	if err != nil {
		t.Fatal(err)
	}
	var goFiles []string
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".go") && !strings.HasSuffix(e.Name(), "_test.go") {
			goFiles = append(goFiles, e.Name())
		}
	}
	if !slices.Equal(goFiles, []string{"main.go"}) {
		t.Errorf("the root's Go files are %v, not main.go alone", goFiles)
	}
}

// projectImports are the project packages the non-test files of dir import.
func projectImports(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".go") || strings.HasSuffix(e.Name(), "_test.go") {
			continue
		}
		f, err := parser.ParseFile(token.NewFileSet(), filepath.Join(dir, e.Name()), nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range f.Imports {
			p, _ := strconv.Unquote(s.Path.Value)
			if rest, ok := strings.CutPrefix(p, module); ok && !slices.Contains(out, rest) {
				out = append(out, rest)
			}
		}
	}
	return out
}
