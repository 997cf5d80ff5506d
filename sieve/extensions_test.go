package sieve

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// pigeonholeDefault is the SIEVE capability of Debian's managesieved
// (Pigeonhole 0.5.19) without sieve_extensions, as it prints it.
const pigeonholeDefault = "fileinto reject envelope encoded-character vacation subaddress comparator-i;ascii-numeric relational regex imap4flags copy include variables body enotify environment mailbox date index ihave duplicate mime foreverypart extracttext"

func TestDefaultExtensionsArePigeonholes(t *testing.T) {
	var def Extensions
	if got := strings.Join(def.Capability(), " "); got != pigeonholeDefault {
		t.Errorf("default capability\n got  %s\n want %s", got, pigeonholeDefault)
	}
	for _, e := range []string{"spamtest", "spamtestplus", "virustest", "editheader", "vacation-seconds", "ereject"} {
		if def.Enabled(e) {
			t.Errorf("%s is enabled by default; Pigeonhole needs sieve_extensions = +%s", e, e)
		}
		_, err := Compile([]byte(`require "`+e+`";`), Limits{})
		var serr *Error
		if !errors.As(err, &serr) || serr.Reason != "require command: unknown Sieve capability `"+e+"'" {
			t.Errorf("require %s by default: %v, want Pigeonhole's unknown Sieve capability", e, err)
		}
		if _, err := CompileWith([]byte(`require "`+e+`";`), CompileOptions{Extensions: AllExtensions()}); err != nil {
			t.Errorf("require %s with every extension: %v", e, err)
		}
	}
	for _, e := range []string{"comparator-i;octet", "comparator-i;ascii-casemap", "enotify", "environment", "ihave"} {
		if _, err := Compile([]byte(`require "`+e+`";`), Limits{}); err != nil {
			t.Errorf("require %s by default: %v", e, err)
		}
	}
}

func TestParseExtensions(t *testing.T) {
	tests := []struct {
		setting, capability string
		warned              []string // the names ignored, one warning each
	}{
		{"+editheader +spamtest", pigeonholeDefault + " spamtest editheader", nil},
		{"-fileinto -enotify +ereject", strings.Replace(strings.Replace(pigeonholeDefault, "fileinto ", "", 1), " enotify", "", 1) + " ereject", nil},
		{"fileinto\tspamtestplus  editheader", "fileinto spamtestplus editheader", nil},
		{"-editheader +editheader", pigeonholeDefault + " editheader", nil},
		{"vacation-seconds", "vacation vacation-seconds", nil},
		{"", "", nil},
		// Ignored, as Pigeonhole ignores a name it does not know; the
		// prefix still makes the setting relative.
		{"+notify", pigeonholeDefault, []string{"notify"}},
		{"+spamtets", pigeonholeDefault, []string{"spamtets"}},
		{"-spamtets", pigeonholeDefault, []string{"spamtets"}},
		{"spamtets editheader", "editheader", []string{"spamtets"}},
		{"+editheadr +imapflags +spamtest", pigeonholeDefault + " spamtest", []string{"editheadr", "imapflags"}},
		{"@dummy", "", []string{"@dummy"}},
	}
	for _, tc := range tests {
		x, warns := ParseExtensions(tc.setting)
		if len(warns) != len(tc.warned) {
			t.Errorf("%q: warnings %q, want one for each of %q", tc.setting, warns, tc.warned)
		} else {
			for i, n := range tc.warned {
				w := "ignored unknown extension '" + n + "' while configuring available extensions"
				if slices.Contains(pigeonholeOnly, n) {
					w = "ignored extension '" + n + "' while configuring available extensions: Pigeonhole implements it, courriel does not (scripts requiring it do not compile)"
				}
				if warns[i] != w {
					t.Errorf("%q: warning %q, want %q", tc.setting, warns[i], w)
				}
			}
		}
		if got := strings.Join(x.Capability(), " "); got != tc.capability {
			t.Errorf("%q:\n got  %s\n want %s", tc.setting, got, tc.capability)
		}
		if y, warns := ParseExtensions(x.String()); len(warns) > 0 || y != x {
			t.Errorf("%q: String %q reads back as %v, %v", tc.setting, x.String(), y, warns)
		}
	}
	if x, _ := ParseExtensions("-spamtest"); x != (Extensions{}) {
		t.Error("removing an extension the default lacks changed the set")
	}
}

// extensionNamesAsked are the names the require oracle tries: courriel's
// catalogue, Pigeonhole's extensions courriel lacks and names nobody has.
// vnd.dovecot.debug is left out: sievec enables it for itself.
func extensionNamesAsked() []string {
	var names []string
	for _, e := range extensionCatalogue {
		names = append(names, e.name)
	}
	for _, n := range pigeonholeOnly {
		if n != "vnd.dovecot.debug" {
			names = append(names, n)
		}
	}
	return append(names, "comparator-i;unicode-casemap", "x-nope", "Fileinto")
}

// TestRequireOracle: for each extension name and each sieve_extensions
// setting, `require "X";` compiles here exactly when it compiles in
// Pigeonhole's sievec with that setting, and a refusal has Pigeonhole's
// words; so do a few ihave scripts, whose blocks are checked only when
// the extension is there.
func TestRequireOracle(t *testing.T) {
	sievec, err := exec.LookPath("sievec")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("sievec (Debian package dovecot-sieve) is missing; CI must have it")
		}
		t.Skip("sievec (Debian package dovecot-sieve) is not installed")
	}
	dir := t.TempDir()
	conf := filepath.Join(dir, "dovecot.conf")
	if err := os.WriteFile(conf, []byte("mail_location = maildir:"+dir+"/mail\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var scripts []string
	for _, n := range extensionNamesAsked() {
		scripts = append(scripts, `require "`+n+`";`)
	}
	scripts = append(scripts,
		`require "ihave"; if ihave "editheader" { addheader "X-A" "b"; }`,
		`require "ihave"; if ihave ["editheader", "spamtest"] { keep; } addheader "X-A" "b";`,
		`require "ihave"; if ihave "editheader" { keep; } addheader "X-A" "b";`,
		`require "ihave"; if ihave "comparator-i;octet" { keep; }`,
		`require ["spamtestplus"]; if spamtest :percent :value "gt" :comparator "i;ascii-numeric" "50" { discard; }`,
		`require ["vacation-seconds"]; vacation :seconds 60 "away";`,
	)
	errLine := regexp.MustCompile(`(?m)^[^:]*: line \d+: error: (.*)\.$`)
	warnLine := regexp.MustCompile(`(?m)^sievec: Warning: sieve: (.*)$`)
	// Pigeonhole's default (no setting), the extra ones, absolute lists,
	// removals, and vacation-seconds bringing vacation back.
	for _, setting := range []*string{nil, ptr("+vacation-seconds +spamtest +spamtestplus +virustest +editheader"),
		ptr("fileinto editheader spamtestplus"), ptr("-vacation +vacation-seconds"), ptr("vacation-seconds"),
		ptr("-include -enotify -extracttext -variables -comparator-i;octet"), ptr("fileinto"), ptr(""),
		ptr("+editheader -editheader -ihave"),
		// Names Pigeonhole does not know, ignored (the prefix still
		// makes the setting relative), and one it knows but courriel
		// does not implement.
		ptr("+x-nope +editheader"), ptr("x-nope editheader"), ptr("-x-nope"), ptr("@x +spamtest"),
		ptr("fileinto\tx-nope -Fileinto"), ptr("+imapflags +editheader")} {
		name := "default"
		var x Extensions
		var warns []string
		args := []string{"-c", conf}
		if setting != nil {
			name = *setting
			x, warns = ParseExtensions(*setting)
			args = append(args, "-x", *setting)
		}
		t.Run(name, func(t *testing.T) {
			// The warnings of names neither knows: Pigeonhole's, word
			// for word, in its order.
			keep := filepath.Join(dir, "keep.sieve")
			if err := os.WriteFile(keep, []byte("keep;\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			out, _ := exec.Command(sievec, append(args, keep, keep+".svbin")...).CombinedOutput()
			var theirs, ours []string
			for _, m := range warnLine.FindAllSubmatch(out, -1) {
				theirs = append(theirs, string(m[1]))
			}
			for _, w := range warns {
				if strings.HasPrefix(w, "ignored unknown extension") {
					ours = append(ours, w)
				}
			}
			if !slices.Equal(ours, theirs) {
				t.Errorf("warnings:\n ours %q\n sievec's %q", ours, theirs)
			}
			for i, src := range scripts {
				if setting != nil && slices.ContainsFunc(pigeonholeOnly, func(n string) bool {
					return src == `require "`+n+`";` && slices.ContainsFunc(strings.Fields(*setting), func(w string) bool { return strings.TrimLeft(w, "+") == n })
				}) {
					// Named in the setting, Pigeonhole enables it and
					// courriel, which lacks it, ignores it (with its own
					// warning): the one way they differ.
					continue
				}
				path := filepath.Join(dir, "t.sieve")
				if err := os.WriteFile(path, []byte(src+"\n"), 0o644); err != nil {
					t.Fatal(err)
				}
				out, runErr := exec.Command(sievec, append(args, path, filepath.Join(dir, "t.svbin"))...).CombinedOutput()
				var exit *exec.ExitError
				if runErr != nil && !errors.As(runErr, &exit) {
					t.Fatalf("sievec: %v", runErr)
				}
				_, err := CompileWith([]byte(src), CompileOptions{Extensions: x})
				if (err == nil) != (runErr == nil) {
					t.Errorf("script %d %s: ours %v; sievec: %s", i, src, err, out)
					continue
				}
				var serr *Error
				if m := errLine.FindSubmatch(out); m != nil && errors.As(err, &serr) &&
					strings.Contains(string(m[1]), "unknown Sieve capability") && serr.Reason != string(m[1]) {
					t.Errorf("%s: ours %q, Pigeonhole's %q", src, serr.Reason, m[1])
				}
			}
		})
	}
}

func ptr(s string) *string { return &s }

func TestIhaveSeesEnabledOnly(t *testing.T) {
	src := `require ["ihave", "fileinto"]; if ihave "editheader" { fileinto "Edit"; } elsif ihave "vacation" { fileinto "Vac"; }`
	folder := func(x Extensions) string {
		s, err := CompileWith([]byte(src), CompileOptions{Extensions: x})
		if err != nil {
			t.Fatal(err)
		}
		m, _ := ReadMessage(strings.NewReader("Subject: x\r\n\r\nbody\r\n"))
		res := s.Run(m, Envelope{From: "a@b.c", To: "d@e.f"})
		if len(res.Actions) != 1 {
			t.Fatalf("actions %v", res.Actions)
		}
		return res.Actions[0].Folder
	}
	if got := folder(Extensions{}); got != "Vac" {
		t.Errorf("default set: ihave editheader took %q", got)
	}
	if got := folder(AllExtensions()); got != "Edit" {
		t.Errorf("every extension: %q", got)
	}
	if !slices.Contains(AllExtensions().Capability(), "ereject") {
		t.Error("AllExtensions lacks ereject")
	}
}

// compileAll compiles with every extension courriel implements, for the
// tests of the extensions themselves.
func compileAll(src []byte, lim Limits) (*Script, error) {
	return CompileWith(src, CompileOptions{Limits: lim, Extensions: AllExtensions()})
}
