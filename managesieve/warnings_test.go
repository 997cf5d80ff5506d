package managesieve

import (
	"os"
	"path/filepath"
	"testing"

	"courriel/sieve"
)

// Warnings, in Pigeonhole's words and form (the replies are those of
// Pigeonhole 2.3.19's managesieve, word for word): OK (WARNINGS) with the
// warnings, each line prefixed by the script's name (none for CHECKSCRIPT's
// own script). An upload may include a personal or global script that does
// not exist yet, a warning; SETACTIVE refuses it until it does.
func TestWarnings(t *testing.T) {
	global := t.TempDir()
	os.WriteFile(filepath.Join(global, "gx.sieve"), []byte("require [\"editheader\"]; addheader \"X-Sieve-Redirected-From\" \"x\";\r\n"), 0o644)
	// editheader enabled, as the differential's Pigeonhole
	exts, warns := sieve.ParseExtensions("+editheader")
	if len(warns) > 0 {
		t.Fatal(warns)
	}
	e := newEnv(t, func(o *Options) { o.GlobalScripts, o.Extensions = global, exts })
	c := e.login(t, "bob")
	for _, s := range []struct{ send, want string }{
		{`PUTSCRIPT "ca" ` + lit(`require "include"; include "cb";`),
			"OK (WARNINGS) ca: line 1: warning: included personal script 'cb' does not exist (ignored during upload).\r\n"},
		{`CHECKSCRIPT ` + lit(`require "include"; include "cb";`),
			"OK (WARNINGS) line 1: warning: included personal script 'cb' does not exist (ignored during upload).\r\n"},
		{`SETACTIVE "ca"`,
			"NO ca: line 1: error: included personal script 'cb' does not exist.\r\nca: error: validation failed.\r\n"},
		{`CHECKSCRIPT ` + lit(`require "include"; include :global "nope";`),
			"OK (WARNINGS) line 1: warning: included global script 'nope' does not exist (ignored during upload).\r\n"},
		{`PUTSCRIPT "cg" ` + lit(`require "include"; include :global "nope";`),
			"OK (WARNINGS) cg: line 1: warning: included global script 'nope' does not exist (ignored during upload).\r\n"},
		{`SETACTIVE "cg"`,
			"NO cg: line 1: error: included global script 'nope' does not exist.\r\ncg: error: validation failed.\r\n"},
		{`CHECKSCRIPT ` + lit(`require "include"; include :optional "nope";`), `OK "Script checked successfully."`},
		{`CHECKSCRIPT ` + lit(`require ["editheader"]; deleteheader "Received";`),
			"OK (WARNINGS) line 1: warning: deleteheader command: deleting specified header field `Received' is forbidden; modification will be denied.\r\n"},
		{`CHECKSCRIPT ` + lit("require [\"editheader\"];\r\naddheader \"X-Sieve-Redirected-From\" \"x\";\r\ndeleteheader \"auto-submitted\";\r\ndeleteheader \"X-a\";\r\n"),
			"OK (WARNINGS) line 2: warning: addheader command: adding specified header field `X-Sieve-Redirected-From' is forbidden; modification will be denied.\r\n" +
				"line 3: warning: deleteheader command: deleting specified header field `auto-submitted' is forbidden; modification will be denied.\r\n"},
		// The included script's warnings carry its name; a missing
		// include of an included script is ignored during upload too.
		{`PUTSCRIPT "cb" ` + lit(`require ["editheader","include"]; deleteheader "Received"; include "cc";`),
			"OK (WARNINGS) cb: line 1: warning: deleteheader command: deleting specified header field `Received' is forbidden; modification will be denied.\r\n" +
				"cb: line 1: warning: included personal script 'cc' does not exist (ignored during upload).\r\n"},
		{`CHECKSCRIPT ` + lit(`require "include"; include "cb"; include :global "gx";`),
			"OK (WARNINGS) cb: line 1: warning: deleteheader command: deleting specified header field `Received' is forbidden; modification will be denied.\r\n" +
				"cb: line 1: warning: included personal script 'cc' does not exist (ignored during upload).\r\n" +
				"gx: line 1: warning: addheader command: adding specified header field `X-Sieve-Redirected-From' is forbidden; modification will be denied.\r\n"},
		{`PUTSCRIPT "cc" "keep;"`, `OK "PUTSCRIPT completed."`},
		// Compiled again to be activated: its warnings, and cb's.
		{`SETACTIVE "ca"`,
			"OK (WARNINGS) cb: line 1: warning: deleteheader command: deleting specified header field `Received' is forbidden; modification will be denied.\r\n"},
		{`SETACTIVE "ca"`, `OK "Script is already active."`},
		{`PUTSCRIPT "w" "# x"`, "OK (WARNINGS) w: line 1: warning: no newline (CRLF) at end of hash comment at end of file.\r\n"},
		{`CHECKSCRIPT "keep; # x"`, "OK (WARNINGS) line 1: warning: no newline (CRLF) at end of hash comment at end of file.\r\n"},
		{`CHECKSCRIPT ` + lit("keep; # x\r\n"), `OK "Script checked successfully."`},
		// Warnings found before the error come before it.
		{`CHECKSCRIPT ` + lit("require [\"editheader\"];\r\ndeleteheader \"Received\";\r\nfoo;\r\n"),
			"NO line 2: warning: deleteheader command: deleting specified header field `Received' is forbidden; modification will be denied.\r\n" +
				"line 3: error: unknown command foo.\r\nerror: validation failed.\r\n"},
	} {
		if got := c.cmd(s.send); got != s.want {
			t.Errorf("%q:\n got %q\nwant %q", trim(s.send), got, s.want)
		}
	}
}
