package main

import (
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
)

// The help lists every queue command.
func TestHelpQueue(t *testing.T) {
	t.Parallel()
	if _, _, help := runCmd(t, "", "help"); !strings.Contains(help, "list, show, flush, delete, hold or release queued mail") {
		t.Errorf("help:\n%s", help)
	}
}

// courriel version, -version and --version print the build's version.
func TestVersionCommand(t *testing.T) {
	t.Parallel()
	for _, arg := range []string{"version", "-version", "--version"} {
		code, out, errOut := runCmd(t, "", arg)
		if code != 0 || !strings.HasPrefix(out, "courriel ") || !strings.HasSuffix(out, " "+runtime.Version()+"\n") {
			t.Errorf("courriel %s: %d %q %q", arg, code, out, errOut)
		}
	}
	if code, _, _ := runCmd(t, "", "version", "extra"); code != 2 {
		t.Errorf("version extra: exit %d, want 2", code)
	}
	if _, _, help := runCmd(t, "", "help"); !strings.Contains(help, "\n  version ") {
		t.Errorf("help without version:\n%s", help)
	}
}

func TestFormatVersion(t *testing.T) {
	t.Parallel()
	bi := &debug.BuildInfo{GoVersion: "go1.25.1", Main: debug.Module{Path: "courriel", Version: "(devel)"}, Settings: []debug.BuildSetting{
		{Key: "vcs", Value: "git"}, {Key: "vcs.revision", Value: "45b0020abc"},
		{Key: "vcs.time", Value: "2026-12-07T17:29:26Z"}, {Key: "vcs.modified", Value: "true"},
	}}
	if got, want := formatVersion(bi), "courriel (devel) git 45b0020abc (2026-12-07T17:29:26Z, modified) go1.25.1"; got != want {
		t.Errorf("formatVersion = %q, want %q", got, want)
	}
	bi = &debug.BuildInfo{GoVersion: "go1.25.1", Main: debug.Module{Path: "courriel", Version: "v1.2.3"}}
	if got, want := formatVersion(bi), "courriel v1.2.3 go1.25.1"; got != want {
		t.Errorf("formatVersion = %q, want %q", got, want)
	}
}
