// Package version is what a trainyard binary knows of its own build: the
// release version and commit stamped by the build (-ldflags -X, as the
// Makefile and the Dockerfile do), else what Go recorded from the checkout.
package version

import (
	"runtime"
	"runtime/debug"
)

// Stamped by the build:
//
//	-ldflags "-X github.com/trainyard-dev/trainyard/internal/version.version=v0.3.0
//	          -X github.com/trainyard-dev/trainyard/internal/version.commit=<sha>"
var (
	version = ""
	commit  = ""
)

// Info describes one build.
type Info struct {
	Version   string `json:"version"`
	Commit    string `json:"commit"`
	GoVersion string `json:"goVersion"`
	Platform  string `json:"platform"`
}

// Get returns the build's Info. Without a stamp the version is "(devel)" and
// the commit is the VCS revision Go recorded ("-dirty" when the checkout had
// changes), or "unknown".
func Get() Info {
	i := Info{Version: version, Commit: commit, GoVersion: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	if i.Version == "" {
		i.Version = "(devel)"
	}
	if i.Commit == "" {
		i.Commit = "unknown"
		if bi, ok := debug.ReadBuildInfo(); ok {
			var rev, dirty string
			for _, s := range bi.Settings {
				switch s.Key {
				case "vcs.revision":
					rev = s.Value
				case "vcs.modified":
					if s.Value == "true" {
						dirty = "-dirty"
					}
				}
			}
			if rev != "" {
				i.Commit = rev + dirty
			}
		}
	}
	return i
}

// String is the one-line form `version` commands print.
func (i Info) String() string {
	return i.Version + " (commit " + i.Commit + ", " + i.GoVersion + ", " + i.Platform + ")"
}
