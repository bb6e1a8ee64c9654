package logging_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"strings"
	"testing"

	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/trainyard-dev/trainyard/internal/logging"
)

// With --zap-encoder=json every line is JSON, client-go's klog lines (leader
// election and reflectors log through klog's functions) included.
func TestKlogLinesGoThroughTheJSONLogger(t *testing.T) {
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	opts := zap.Options{}
	opts.BindFlags(fs)
	if err := fs.Parse([]string{"--zap-encoder=json"}); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	logging.Setup(&opts, zap.WriteTo(&buf))

	ctrl.Log.WithName("setup").Info("starting manager")
	// What leaderelection.go and reflector.go call.
	klog.Infof("attempting to acquire leader lease %s...", "trainyard-system/trainyard-manager.trainyard.dev")
	klog.InfoS("successfully acquired lease", "lease", "trainyard-system/trainyard-manager.trainyard.dev")
	klog.ErrorS(errors.New("connection refused"), "Failed to watch", "reflector", "pkg/mod/k8s.io/client-go/tools/cache/reflector.go:251")
	klog.Warningf("Throttling request took %v", "1.2s")
	klog.Flush()

	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 5 {
		t.Fatalf("want 5 lines, got %d:\n%s", len(lines), buf.String())
	}
	for _, l := range lines {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Errorf("not JSON: %q", l)
			continue
		}
		if m["msg"] == nil {
			t.Errorf("no msg: %q", l)
		}
	}
	if !strings.Contains(lines[1], `"logger":"klog"`) || !strings.Contains(lines[1], "attempting to acquire leader lease") {
		t.Errorf("klog's line is not the logger's: %s", lines[1])
	}
}
