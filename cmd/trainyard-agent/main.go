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

// Command trainyard-agent is the in-cluster agent alone: `trainyard agent`
// without the manager (controllers, webhook, bridge) linked in, so that it
// maps less than half the binary (docs/performance.md). `trainyard-agent
// agent <flags>` is accepted too, so that either binary takes the chart's
// arguments.
package main

import (
	"fmt"
	"os"
	"runtime/debug"

	"github.com/trainyard-dev/trainyard/agent/cli"
	"github.com/trainyard-dev/trainyard/internal/memlimit"
	"github.com/trainyard-dev/trainyard/internal/version"
)

func main() {
	// As the manager's binary does for both: a GC headroom of half the
	// live heap (GOGC overrides it).
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(50)
	}
	memlimit.Apply()
	args := os.Args[1:]
	if len(args) > 0 && args[0] == "agent" {
		args = args[1:]
	}
	if len(args) > 0 && args[0] == "version" {
		fmt.Println("trainyard-agent", version.Get())
		return
	}
	if err := cli.Run(args); err != nil {
		fmt.Fprintln(os.Stderr, "trainyard-agent:", err)
		os.Exit(1)
	}
}
