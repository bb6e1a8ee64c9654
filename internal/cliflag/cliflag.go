// Package cliflag holds what the commands' flag parsing shares.
package cliflag

import "strings"

// List splits a comma-separated flag value, dropping blanks.
func List(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
