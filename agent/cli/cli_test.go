package cli

import (
	"reflect"
	"strings"
	"testing"
)

func TestFlags(t *testing.T) {
	for _, tc := range []struct {
		args    []string
		sources []string
		err     string
	}{
		{args: []string{"--hub-url=http://hub"}, sources: []string{"workloads"}},
		{args: []string{"--hub-url=http://hub", "--helm-releases"}, sources: []string{"workloads", "helm"}},
		{args: []string{"--hub-url=http://hub", "--sources=helm,workloads", "--helm-releases"}, sources: []string{"helm", "workloads"}},
		{args: []string{"--hub-url=http://hub", "--sources=argocd"}, err: `no discovery source "argocd" (known: helm (`},
		{args: []string{"--hub-url=http://hub", "--sources="}, err: "--sources names no discovery source"},
		{args: []string{}, err: "--hub-url is required in bridge mode"},
		{args: []string{"--mode=direct"}, err: "--hub-kubeconfig is required in direct mode"},
		{args: []string{"--mode=push", "--hub-url=x"}, err: `--mode must be bridge or direct, not "push"`},
		{args: []string{"--hub-url=http://hub", "--token-file=/nonexistent/token"}, err: "reading --token-file"},
		{args: []string{"--hub-url=http://hub", "stray"}, err: "unexpected arguments: stray"},
	} {
		c, err := parse(tc.args)
		if err == nil {
			err = c.check()
		}
		switch {
		case tc.err == "" && err != nil:
			t.Errorf("%v: %v", tc.args, err)
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("%v: got error %v, want one containing %q", tc.args, err, tc.err)
		case tc.err == "" && !reflect.DeepEqual(c.sources, tc.sources):
			t.Errorf("%v: sources %v, want %v", tc.args, c.sources, tc.sources)
		}
	}
}
