package main

import (
	"os/exec"
	"strings"
	"testing"
)

// The agent links only what it runs: none of the manager (its controllers,
// webhook, bridge server), and none of the libraries that register every
// Kubernetes API group at start (controller-runtime's client and manager,
// client-go's typed clientset), which were most of its memory.
func TestTheAgentLinksNoneOfTheManager(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	deps := strings.Fields(string(out))
	forbidden := []string{
		"github.com/trainyard-dev/trainyard/bridge",
		"github.com/trainyard-dev/trainyard/controllers",
		"github.com/trainyard-dev/trainyard/webhook",
		"github.com/trainyard-dev/trainyard/internal/review",
		"sigs.k8s.io/controller-runtime/pkg/client",
		"sigs.k8s.io/controller-runtime/pkg/cache",
		"sigs.k8s.io/controller-runtime/pkg/manager",
		"k8s.io/client-go/kubernetes",
		"k8s.io/client-go/kubernetes/scheme",
		// Release verification (issue 31) is the manager's.
		"github.com/trainyard-dev/trainyard/internal/verification",
		"github.com/sigstore/sigstore-go/pkg/verify",
		"github.com/google/go-containerregistry/pkg/v1/remote",
	}
	linked := map[string]bool{}
	for _, d := range deps {
		linked[d] = true
	}
	for _, f := range forbidden {
		if linked[f] {
			t.Errorf("the agent links %s", f)
		}
	}
	var groups []string
	for _, d := range deps {
		if strings.HasPrefix(d, "k8s.io/api/") {
			groups = append(groups, d)
		}
	}
	if len(groups) != 2 {
		t.Errorf("the agent links %d API groups, want core/v1 and apps/v1 only: %v", len(groups), groups)
	}
	if !linked["github.com/trainyard-dev/trainyard/agent/source/all"] {
		t.Errorf("the agent does not link its discovery sources")
	}
	t.Logf("%d packages", len(deps))
}
