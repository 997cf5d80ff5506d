package managesieve

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"courriel/sieve"
	"courriel/sieve/scripts"
)

// extensionsSession: scripts requiring the extensions Pigeonhole leaves
// off by default, and ihave of them.
var extensionsSession = []string{
	`CHECKSCRIPT ` + lit("require \"spamtest\";\r\n"),
	`PUTSCRIPT "eh" ` + lit("require [\"fileinto\", \"editheader\"];\r\naddheader \"X-A\" \"b\";\r\n"),
	`CHECKSCRIPT ` + lit("require [\"vacation-seconds\"];\r\nvacation :seconds 86400 \"away\";\r\n"),
	`CHECKSCRIPT ` + lit("require [\"spamtestplus\", \"relational\", \"comparator-i;ascii-numeric\"];\r\nif spamtest :percent :value \"gt\" :comparator \"i;ascii-numeric\" \"50\" { discard; }\r\n"),
	`CHECKSCRIPT ` + lit("require \"ihave\";\r\nif ihave \"editheader\" { addheader \"X-A\" \"b\"; }\r\n"),
	`CHECKSCRIPT ` + lit("require \"virustest\";\r\n"),
	`CHECKSCRIPT ` + lit("require \"ereject\";\r\n"),
	`CHECKSCRIPT ` + lit("require \"enotify\";\r\n"),
	`PUTSCRIPT "vac" ` + lit("require \"vacation\";\r\nvacation \"away\";\r\n"),
	`SETACTIVE "vac"`,
	`LOGOUT`,
}

// TestPigeonholeExtensions: with the same sieve_extensions setting (none,
// the extra extensions, an absolute list, removals), our SIEVE and NOTIFY
// capabilities are word for word those of Pigeonhole's managesieve, and
// scripts requiring an extension are taken or refused alike, in the same
// words.
func TestPigeonholeExtensions(t *testing.T) {
	if _, err := os.Stat(pigeonholeManageSieve); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("Pigeonhole's managesieve (dovecot-managesieved) is not installed")
		}
		t.Skip("Pigeonhole's managesieve (dovecot-managesieved) is not installed")
	}
	if os.Getuid() != 0 {
		t.Skip("running Pigeonhole as another user needs root")
	}
	settings := []*string{nil, ptr("+vacation-seconds +spamtest +spamtestplus +virustest +editheader"),
		ptr("fileinto editheader spamtestplus"), ptr("-enotify -vacation +vacation-seconds"), ptr("")}
	for _, setting := range settings {
		name := "default"
		var exts sieve.Extensions
		if setting != nil {
			name = "setting " + *setting
			var warns []string
			if exts, warns = sieve.ParseExtensions(*setting); len(warns) > 0 {
				t.Fatal(warns)
			}
		}
		t.Run(name, func(t *testing.T) {
			cmds := append([]string{`CAPABILITY`}, extensionsSession...)
			theirs, _ := runPigeonhole(t, scripts.Limits{}, setting, cmds)
			e := newEnv(t, func(o *Options) { o.Extensions = exts })
			c := e.login(t, "bob")
			compareSession(t, c, cmds, theirs, "unknown Sieve capability")
		})
	}
}

// capLine is the capability line of key in a CAPABILITY reply, "" if none.
func capLine(resp, key string) string {
	for _, l := range strings.Split(resp, "\n") {
		if l = strings.TrimRight(l, "\r"); strings.HasPrefix(l, key) {
			return l
		}
	}
	return ""
}

// firstError is the first line of a NO reply (a script's first error).
func firstError(resp string) string {
	if !strings.HasPrefix(resp, "NO ") {
		return ""
	}
	first, _, _ := strings.Cut(resp, "\r\n")
	return first
}

func ptr(s string) *string { return &s }

// TestPigeonholeGlobalExtensions: with sieve_global_extensions, the
// extensions it names are not in the SIEVE capability and a user's
// script may not require them (in Pigeonhole's words), even when
// sieve_extensions enables them too, nor does ihave see them; a global
// script the user's includes may. As Pigeonhole's managesieve does.
func TestPigeonholeGlobalExtensions(t *testing.T) {
	if _, err := os.Stat(pigeonholeManageSieve); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("Pigeonhole's managesieve (dovecot-managesieved) is not installed")
		}
		t.Skip("Pigeonhole's managesieve (dovecot-managesieved) is not installed")
	}
	if os.Getuid() != 0 {
		t.Skip("running Pigeonhole as another user needs root")
	}
	cmds := []string{
		`CAPABILITY`,
		`CHECKSCRIPT ` + lit("require \"spamtest\";\r\n"),
		`CHECKSCRIPT ` + lit("require [\"editheader\"];\r\naddheader \"X-A\" \"b\";\r\n"),
		`PUTSCRIPT "eh" ` + lit("require [\"fileinto\", \"editheader\"];\r\naddheader \"X-A\" \"b\";\r\n"),
		`CHECKSCRIPT ` + lit("require \"ihave\";\r\nif ihave \"editheader\" { addheader \"X-A\" \"b\"; }\r\n"),
		`CHECKSCRIPT ` + lit("require [\"ihave\", \"editheader\"];\r\nif ihave \"editheader\" { keep; }\r\n"),
		`PUTSCRIPT "inc" ` + lit("require \"include\";\r\ninclude :global \"gx\";\r\n"),
		`SETACTIVE "inc"`,
		`CHECKSCRIPT ` + lit("require \"virustest\";\r\n"),
		`LOGOUT`,
	}
	for _, s := range []struct{ exts, global *string }{
		{nil, ptr("editheader spamtest")},
		{ptr("+editheader +virustest"), ptr("+editheader")},
	} {
		name := "global " + *s.global
		var exts sieve.Extensions
		if s.exts != nil {
			name = "extensions " + *s.exts + " " + name
			var warns []string
			if exts, warns = sieve.ParseExtensions(*s.exts); len(warns) > 0 {
				t.Fatal(warns)
			}
		}
		g, warns := sieve.ParseGlobalExtensions(*s.global)
		if len(warns) > 0 {
			t.Fatal(warns)
		}
		t.Run(name, func(t *testing.T) {
			theirs, home := runPigeonholeGlobal(t, scripts.Limits{}, s.exts, s.global, cmds)
			e := newEnv(t, func(o *Options) {
				o.Extensions, o.GlobalExtensions = exts, g
				o.GlobalScripts = filepath.Join(filepath.Dir(home), "global")
			})
			c := e.login(t, "bob")
			compareSession(t, c, cmds, theirs, "Sieve capability")
		})
	}
}

// compareSession sends cmds (the first a CAPABILITY) on c and compares
// each reply with Pigeonhole's (theirs): the SIEVE and NOTIFY capability
// lines, then each reply's gist, and the words of a first error that
// mentions errWord. Pigeonhole goes on after an error and reports the
// next ones too; courriel stops at the first.
func compareSession(t *testing.T, c *client, cmds, theirs []string, errWord string) {
	t.Helper()
	for i, cmd := range cmds {
		ours := c.cmd(cmd)
		if i == 0 {
			for _, key := range []string{`"SIEVE"`, `"NOTIFY"`} {
				if o, p := capLine(ours, key), capLine(theirs[0], key); o != p {
					t.Errorf("%s\n ours:       %q\n Pigeonhole: %q", key, o, p)
				}
			}
			continue
		}
		if gist(ours) != gist(theirs[i]) {
			t.Errorf("%s\n ours:       %q\n Pigeonhole: %q", trim(cmd), ours, theirs[i])
		} else if o, p := firstError(ours), firstError(theirs[i]); strings.Contains(p, errWord) && o != p {
			t.Errorf("%s: worded differently\n ours:       %q\n Pigeonhole: %q", trim(cmd), o, p)
		}
	}
}
