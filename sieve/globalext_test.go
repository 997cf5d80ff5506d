package sieve

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

func TestParseGlobalExtensions(t *testing.T) {
	for _, c := range []struct {
		setting, want string
	}{
		{"", ""},
		{"editheader spamtest", "spamtest editheader"},
		// relative to the empty global set, not to the default one
		{"+editheader", "editheader"},
		{"-fileinto +editheader", "editheader"},
		{"-editheader editheader", "editheader"},
		// vacation-seconds does not mark vacation global
		{"vacation-seconds", "vacation-seconds"},
	} {
		g, warns := ParseGlobalExtensions(c.setting)
		if len(warns) > 0 {
			t.Fatalf("%q: %v", c.setting, warns)
		}
		if g.String() != c.want {
			t.Errorf("%q: %q, want %q", c.setting, g, c.want)
		}
	}
	// Names courriel does not know are ignored with a warning each, as
	// Pigeonhole's (TestGlobalExtensionsOracle).
	for _, c := range []struct {
		setting, want string
		warned        []string
	}{
		{"+x-nope", "", []string{"x-nope"}},
		{"notify", "", []string{"notify"}},
		{"+editheader special-use -x-nope", "editheader", []string{"special-use", "x-nope"}},
	} {
		g, warns := ParseGlobalExtensions(c.setting)
		if g.String() != c.want || len(warns) != len(c.warned) {
			t.Errorf("%q: %q, warnings %q; want %q and one warning for each of %q", c.setting, g, warns, c.want, c.warned)
			continue
		}
		for i, n := range c.warned {
			if !strings.Contains(warns[i], "extension '"+n+"' while configuring available extensions") {
				t.Errorf("%q: warning %q, want one of %s", c.setting, warns[i], n)
			}
		}
	}
}

func TestGlobalExtensionsSets(t *testing.T) {
	x, _ := ParseExtensions("+editheader -vacation")
	g, _ := ParseGlobalExtensions("editheader spamtest vacation-seconds")
	personal, global := x.ForPersonal(g), x.ForGlobal(g)
	for _, c := range []struct {
		name               string
		personal, inGlobal bool
	}{
		{"editheader", false, true}, // in both settings: the admin's only
		{"spamtest", false, true},
		{"vacation-seconds", false, true},
		{"vacation", true, true}, // brought by vacation-seconds, unmarked
		{"fileinto", true, true},
		{"virustest", false, false},
	} {
		if personal.Enabled(c.name) != c.personal || global.Enabled(c.name) != c.inGlobal {
			t.Errorf("%s: personal %v global %v, want %v %v", c.name, personal.Enabled(c.name), global.Enabled(c.name), c.personal, c.inGlobal)
		}
	}
	if strings.Contains(strings.Join(personal.Capability(), " "), "editheader") {
		t.Errorf("personal capability %v", personal.Capability())
	}
	var none GlobalExtensions
	if x.ForPersonal(none) != x || x.ForGlobal(none) != x {
		t.Error("no global extensions changes the set")
	}
}

// TestGlobalExtensionsOracle: with Pigeonhole's sieve_extensions and
// sieve_global_extensions in dovecot.conf, each script compiles (and
// files into the same folder, for ihave) here as a global script exactly
// when sieve-test takes it as its main script (sieve-test compiles
// without SIEVE_COMPILE_FLAG_NOGLOBAL: a global script), and as a
// personal one exactly when it takes it included :personal (compiled
// with the flag, as dovecot-lda compiles the user's script); a refusal
// has Pigeonhole's words.
func TestGlobalExtensionsOracle(t *testing.T) {
	bin := sieveTestPath(t)
	scripts := []string{
		`require "editheader"; addheader "X-A" "b";`,
		`require ["spamtest", "relational", "comparator-i;ascii-numeric", "fileinto"]; if spamtest :value "ge" :comparator "i;ascii-numeric" "5" { fileinto "Junk"; }`,
		`require "vacation";`,
		`require "vacation-seconds";`,
		`require "fileinto";`,
		`require "comparator-i;octet";`,
		`require "virustest";`,
		`require ["ihave", "fileinto"]; if ihave "editheader" { fileinto "Yes"; } else { fileinto "No"; }`,
		`require ["ihave", "fileinto"]; if ihave ["spamtest", "fileinto"] { fileinto "Yes"; } else { fileinto "No"; }`,
		`require ["ihave", "fileinto"]; if ihave "editheader" { addheader "X-A" "b"; fileinto "Yes"; }`,
		// whatever the includer, a script included :global is global and
		// one included :personal is not (edit.sieve requires editheader)
		`require "include"; include :global "edit";`,
		`require "include"; include :personal "edit";`,
	}
	type setting struct{ exts, global *string }
	for _, s := range []setting{
		{nil, ptr("editheader spamtest")},
		{ptr("+editheader"), ptr("editheader")},
		{ptr("-vacation"), ptr("+vacation-seconds")},
		{ptr("+spamtest +relational"), ptr("-spamtest +editheader")},
		{nil, ptr("+comparator-i;octet")},
		{ptr("fileinto ihave include"), ptr("editheader")},
		{nil, ptr("")},
		{nil, nil},
		// names neither knows: ignored (Pigeonhole's warning,
		// TestParseGlobalExtensions), the others as without them
		{ptr("+editheader +x-nope"), ptr("+x-nope spamtest")},
		{nil, ptr("x-nope editheader")},
	} {
		var x Extensions
		var g GlobalExtensions
		name, plugin := "", ""
		if s.exts != nil {
			x, _ = ParseExtensions(*s.exts)
			name += "extensions=" + *s.exts + " "
			plugin += "  sieve_extensions = " + *s.exts + "\n"
		}
		if s.global != nil {
			g, _ = ParseGlobalExtensions(*s.global)
			name += "global=" + *s.global
			plugin += "  sieve_global_extensions = " + *s.global + "\n"
		}
		if name == "" {
			name = "default"
		}
		t.Run(name, func(t *testing.T) {
			dir := globalOracleDir(t, plugin)
			for i, src := range scripts {
				for _, global := range []bool{true, false} {
					theirs := globalOracleRun(t, bin, dir, src, global)
					script, err := CompileWith([]byte(src), CompileOptions{Extensions: x, GlobalExtensions: g, Global: global,
						Include: DirLoader{Personal: filepath.Join(dir, "personal"), Global: filepath.Join(dir, "global")}})
					ours := ""
					if err != nil {
						ours = "error: " + err.(*Error).Reason
						if strings.HasPrefix(err.(*Error).Reason, "include: in script") {
							ours = "error in an included script"
						}
					} else {
						m, _ := ReadMessage(strings.NewReader("Subject: x\r\nX-Spam-Score: 1\r\n\r\nb\r\n"))
						for _, a := range script.Run(m, Envelope{From: "a@b.c", To: "d@e.f"}).Actions {
							if a.Kind == Store && a.Folder != "" {
								ours = a.Folder
							}
						}
					}
					if ours != theirs {
						t.Errorf("script %d global=%v %s: ours %q, Pigeonhole's %q", i, global, src, ours, theirs)
					}
				}
			}
		})
	}
}

// globalOracleDir is a sieve-test directory with those plugin settings,
// its personal and global script directories.
func globalOracleDir(t *testing.T, plugin string) string {
	dir, err := os.MkdirTemp("", "sieve-globalext")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	uid, gid := os.Getuid(), os.Getgid()
	if uid == 0 {
		uid, gid = 65534, 65534
	}
	for _, d := range []string{dir, filepath.Join(dir, "personal"), filepath.Join(dir, "global")} {
		if err := os.MkdirAll(d, 0o777); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(d, 0o777); err != nil {
			t.Fatal(err)
		}
	}
	writePublic(t, filepath.Join(dir, "dovecot.conf"), fmt.Sprintf("mail_uid = %d\nmail_gid = %d\nfirst_valid_uid = 0\nfirst_valid_gid = 0\n"+
		"mail_location = maildir:%s/mail\npostmaster_address = postmaster@example.org\n"+
		"plugin {\n  sieve = file:%s/personal\n  sieve_global = %s/global\n%s}\n", uid, gid, dir, dir, dir, plugin))
	writePublic(t, filepath.Join(dir, "m.eml"), "Subject: x\nX-Spam-Score: 1\n\nb\n")
	// the personal script is included by a global main script
	writePublic(t, filepath.Join(dir, "wrap.sieve"), "require \"include\";\ninclude :personal \"u\";\n")
	for _, loc := range []string{"personal", "global"} {
		writePublic(t, filepath.Join(dir, loc, "edit.sieve"), "require \"editheader\";\naddheader \"X-A\" \"b\";\n")
	}
	return dir
}

var globalOracleLine = regexp.MustCompile(`(?m)^u: line \d+: (error: .*)\.$`)
var globalOracleFolder = regexp.MustCompile(`(?m)^ \* store message in folder: (.*)$`)

// globalOracleRun runs sieve-test on src as its main script (global) or
// included :personal (not), and gives the first error of src, or the
// folder it filed into ("" for none).
func globalOracleRun(t *testing.T, bin, dir, src string, global bool) string {
	t.Helper()
	main := filepath.Join(dir, "u.sieve")
	writePublic(t, main, src+"\n")
	writePublic(t, filepath.Join(dir, "personal", "u.sieve"), src+"\n")
	if !global {
		main = filepath.Join(dir, "wrap.sieve")
	}
	out, _ := exec.Command(bin, "-c", filepath.Join(dir, "dovecot.conf"), main, filepath.Join(dir, "m.eml")).CombinedOutput()
	if regexp.MustCompile(`(?m)^edit: line \d+: error: `).Match(out) {
		return "error in an included script"
	}
	if m := globalOracleLine.FindSubmatch(out); m != nil {
		return string(m[1])
	}
	if strings.Contains(string(out), "failed to compile") || !strings.Contains(string(out), "final result: success") {
		t.Fatalf("sieve-test: %s", out)
	}
	if m := globalOracleFolder.FindSubmatch(out); m != nil {
		return string(m[1])
	}
	return ""
}
