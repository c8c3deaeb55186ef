package main

import "runtime/debug"

// version is set at build time (-ldflags "-X main.version=1.2.3", as
// `make dist` does); otherwise Go's recorded module version and commit.
var version = ""

func versionString() string {
	v, rev := version, ""
	bi, ok := debug.ReadBuildInfo()
	if ok {
		if v == "" {
			v = bi.Main.Version
		}
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" {
				rev = s.Value
			}
		}
	}
	if v == "" {
		v = "(devel)"
	}
	out := "sigil-conformance " + v
	if rev != "" {
		out += " commit " + rev[:min(12, len(rev))]
	}
	if ok {
		out += " " + bi.GoVersion
	}
	return out
}
