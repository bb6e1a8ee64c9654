package plugin_test

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"text/template"

	"sigs.k8s.io/yaml"

	"github.com/trainyard-dev/trainyard/internal/testenv"
)

// The krew manifest, rendered as krew-release-bot renders it at a tag,
// installs the archives `make plugin-archives` builds, one per platform.
func TestKrewManifestNamesTheArchivesTheMakefileBuilds(t *testing.T) {
	root := testenv.RepoRoot()
	src, err := os.ReadFile(filepath.Join(root, ".krew.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	const tag = "v1.2.3"
	funcs := template.FuncMap{"addURIAndSha": func(url, tag string) (string, error) {
		var b bytes.Buffer
		if err := template.Must(template.New("url").Parse(url)).Execute(&b, map[string]string{"TagName": tag}); err != nil {
			return "", err
		}
		return fmt.Sprintf("uri: %s\n    sha256: %s", b.String(), strings.Repeat("0", 64)), nil
	}}
	var out bytes.Buffer
	if err := template.Must(template.New("krew").Funcs(funcs).Parse(string(src))).Execute(&out, map[string]string{"TagName": tag}); err != nil {
		t.Fatal(err)
	}
	var m struct {
		APIVersion, Kind string
		Metadata         struct{ Name string }
		Spec             struct {
			Version, Homepage, ShortDescription, Description string
			Platforms                                        []struct {
				Selector         struct{ MatchLabels map[string]string }
				URI, Sha256, Bin string
			}
		}
	}
	if err := yaml.UnmarshalStrict(out.Bytes(), &m); err != nil {
		t.Fatalf("rendered manifest: %v\n%s", err, out.String())
	}
	if m.APIVersion != "krew.googlecontainertools.github.com/v1alpha2" || m.Kind != "Plugin" || m.Metadata.Name != "trainyard" || m.Spec.Version != tag {
		t.Errorf("manifest header: %+v", m)
	}
	makefile, err := os.ReadFile(filepath.Join(root, "Makefile"))
	if err != nil {
		t.Fatal(err)
	}
	platforms := regexp.MustCompile(`(?m)^PLUGIN_PLATFORMS \?= (.*)$`).FindSubmatch(makefile)
	if platforms == nil {
		t.Fatal("no PLUGIN_PLATFORMS in the Makefile")
	}
	want := strings.Fields(string(platforms[1]))
	if len(m.Spec.Platforms) != len(want) {
		t.Fatalf("%d platforms in .krew.yaml, %d in the Makefile", len(m.Spec.Platforms), len(want))
	}
	for i, p := range m.Spec.Platforms {
		os, arch := p.Selector.MatchLabels["os"], p.Selector.MatchLabels["arch"]
		if os+"/"+arch != want[i] {
			t.Errorf("platform %d: %s/%s, the Makefile builds %s", i, os, arch, want[i])
		}
		archive := fmt.Sprintf("/releases/download/%s/kubectl-trainyard_%s_%s.tar.gz", tag, os, arch)
		if !strings.HasSuffix(p.URI, archive) {
			t.Errorf("%s/%s: uri %s, want one ending %s", os, arch, p.URI, archive)
		}
		bin := "kubectl-trainyard"
		if os == "windows" {
			bin += ".exe"
		}
		if p.Bin != bin {
			t.Errorf("%s/%s: bin %q, want %q", os, arch, p.Bin, bin)
		}
	}
}
