/*
Copyright 2026 The trainyard Authors.

Licensed under the Apache License, Version 2.0 (the "License");
you may not use this file except in compliance with the License.
You may obtain a copy of the License at

    http://www.apache.org/licenses/LICENSE-2.0

Unless required by applicable law or agreed to in writing, software
distributed under the License is distributed on an "AS IS" BASIS,
WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
See the License for the specific language governing permissions and
limitations under the License.
*/

// Command trainyard is the trainyard manager (the controllers, the
// admission webhook and, unless --bridge-bind-address=0, the check-in
// bridge); as `trainyard bridge`, the check-in bridge alone, in a process
// of its own; and, as `trainyard agent`, the agent that reports a workload
// cluster's components to it.
package main

import (
	"fmt"
	"os"
	"runtime/debug"

	"github.com/trainyard-dev/trainyard/agent/cli"
	"github.com/trainyard-dev/trainyard/internal/manager"
	"github.com/trainyard-dev/trainyard/internal/memlimit"
	"github.com/trainyard-dev/trainyard/internal/version"
)

func main() {
	// Most of the manager's heap is its cache of long-lived objects, so
	// the default GC headroom (GOGC=100, up to twice the live heap) is mostly
	// waste; 50 keeps the resident size near the cache. GOGC and GOMEMLIMIT
	// still override.
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(50)
	}
	memlimit.Apply()
	run := manager.Run
	args := os.Args[1:]
	if len(args) > 0 && args[0] == "agent" {
		// The agent alone is cmd/trainyard-agent, a much smaller binary;
		// this is the same command.
		run, args = cli.Run, args[1:]
	}
	if len(args) > 0 && args[0] == "bridge" {
		// The check-in bridge alone, in a Deployment of its own.
		run, args = manager.RunBridge, args[1:]
	}
	if len(args) > 0 && args[0] == "version" {
		fmt.Println("trainyard", version.Get())
		return
	}
	if err := run(args); err != nil {
		fmt.Fprintln(os.Stderr, "trainyard:", err)
		os.Exit(1)
	}
}
