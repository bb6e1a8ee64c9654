package all_test

import (
	"os"
	"reflect"
	"runtime"
	"strings"
	"testing"

	"github.com/trainyard-dev/trainyard/agent"
	_ "github.com/trainyard-dev/trainyard/agent/source/all"
)

// Every package under agent/source is one discovery source, registered
// under the package's name (make manifests names its ClusterRole after the
// package, the chart and --sources after the registration): the two must
// agree, and make generate must have linked every one.
func TestEverySourcePackageRegistersItsOwnName(t *testing.T) {
	entries, err := os.ReadDir("..")
	if err != nil {
		t.Fatal(err)
	}
	var dirs []string
	for _, e := range entries {
		if e.IsDir() && e.Name() != "all" {
			dirs = append(dirs, e.Name())
		}
	}
	var names []string
	for _, r := range agent.Sources() {
		names = append(names, r.Name)
		fn := runtime.FuncForPC(reflect.ValueOf(r.New).Pointer()).Name()
		if want := "github.com/trainyard-dev/trainyard/agent/source/" + r.Name + "."; !strings.HasPrefix(fn, want) {
			t.Errorf("source %q is built by %s, not by package agent/source/%s", r.Name, fn, r.Name)
		}
		if r.Usage == "" {
			t.Errorf("source %q says nothing of what it reports", r.Name)
		}
	}
	if !reflect.DeepEqual(names, dirs) {
		t.Errorf("registered sources %v, packages under agent/source %v (run make generate)", names, dirs)
	}
}
