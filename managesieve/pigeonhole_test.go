package managesieve

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"courriel/sieve"
	"courriel/sieve/scripts"
)

// pigeonholeManageSieve is Debian's Pigeonhole ManageSieve server
// (package dovecot-managesieved), run pre-authenticated on stdin.
const pigeonholeManageSieve = "/usr/lib/dovecot/managesieve"

// quotaSession is one session's commands (after login), run with a
// quota of 3 scripts, 1000 bytes, 1000 bytes a script.
var quotaSession = []string{
	`PUTSCRIPT "main" ` + lit("require \"fileinto\";\r\nif header :contains \"subject\" \"x\" { fileinto \"X\"; }\r\n"),
	`PUTSCRIPT "a/b" "keep;"`,
	`PUTSCRIPT "" "keep;"`,
	`PUTSCRIPT "bad" ` + lit("keep;\r\nfileintoo \"x\";\r\n"),
	`PUTSCRIPT "bad" ` + lit("if true {\r\n"),
	`PUTSCRIPT "big" ` + lit(strings.Repeat("#", 1001)),
	`CHECKSCRIPT "keep;"`,
	`CHECKSCRIPT ` + lit("require \"nope\";\r\n"),
	`HAVESPACE "x" 10`,
	`HAVESPACE "x" 1001`,
	`HAVESPACE "x/y" 10`,
	`PUTSCRIPT "b" "keep;"`,
	`PUTSCRIPT "c" "discard;"`,
	`PUTSCRIPT "d" "keep;"`,
	`HAVESPACE "d" 1`,
	`HAVESPACE "c" 1`,
	`PUTSCRIPT "c" ` + lit(strings.Repeat("#", 800)+"\r\n"),
	`PUTSCRIPT "b" ` + lit(strings.Repeat("#", 800)+"\r\n"),
	`LISTSCRIPTS`,
	`SETACTIVE "zz"`,
	`SETACTIVE "main"`,
	`LISTSCRIPTS`,
	`DELETESCRIPT "main"`,
	`DELETESCRIPT "zz"`,
	`GETSCRIPT "zz"`,
	`GETSCRIPT "main"`,
	`RENAMESCRIPT "zz" "y"`,
	`RENAMESCRIPT "b" "c"`,
	`RENAMESCRIPT "main" "renamed"`,
	`LISTSCRIPTS`,
	`GETSCRIPT "renamed"`,
	`NOOP "tag1"`,
	`NOOP`,
	`GETSCRIPT`,
	`LISTSCRIPTS "x"`,
	`CAPABILITY x`,
	`FOO`,
	`PUTSCRIPT "s" {5}` + "\r\nkeep;",
	`SETACTIVE ""`,
	`LISTSCRIPTS`,
	`DELETESCRIPT "renamed"`,
	`LISTSCRIPTS`,
	`LOGOUT`,
}

// gist is what must agree: OK/NO/BYE, the response code, and the data
// lines (LISTSCRIPTS, GETSCRIPT); messages may be worded differently.
var gistRe = regexp.MustCompile(`^(OK|NO|BYE)( \(([^)]*)\))?`)

func gist(resp string) string {
	lines := strings.Split(resp, "\n")
	last := lines[len(lines)-1]
	for i, l := range lines {
		if gistRe.MatchString(l) {
			last, lines = strings.Join(lines[i:], "\n"), lines[:i]
			break
		}
	}
	m := gistRe.FindStringSubmatch(last)
	g := m[1]
	if m[3] != "" {
		g += " (" + m[3] + ")"
	}
	if len(lines) > 0 {
		sorted := append([]string(nil), lines...)
		sort.Strings(sorted) // LISTSCRIPTS order is the directory's in Pigeonhole
		g += " [" + strings.Join(sorted, "|") + "]"
	}
	return g
}

// namesSession, without limits: names, empty and odd scripts, repeats.
var namesSession = []string{
	`PUTSCRIPT "empty" ""`,
	`GETSCRIPT "empty"`,
	`PUTSCRIPT "Café filtres" "keep;"`,
	`PUTSCRIPT "with \"quotes\" and \\" "keep;"`,
	`PUTSCRIPT ".hidden" "keep;"`,
	`PUTSCRIPT "." "keep;"`,
	`PUTSCRIPT ".." "keep;"`,
	`PUTSCRIPT "dovecot" "keep;"`,
	// 200 bytes: longer names make Pigeonhole's temporary file name (the
	// script's name, a time, a pid and the host name) too long for the
	// file system, an internal error there; courriel takes up to 249.
	`PUTSCRIPT "` + strings.Repeat("é", 100) + `" "keep;"`,
	`PUTSCRIPT "` + strings.Repeat("x", 257) + `" "keep;"`,
	`PUTSCRIPT "a` + "\t" + `b" "keep;"`,
	`PUTSCRIPT ` + lit("lit name") + ` ` + lit("keep;"),
	`LISTSCRIPTS`,
	`SETACTIVE "Café filtres"`,
	`SETACTIVE "Café filtres"`,
	`RENAMESCRIPT "Café filtres" "Café filtres"`,
	`RENAMESCRIPT "empty" "a/b"`,
	`DELETESCRIPT "a/b"`,
	`GETSCRIPT "a/b"`,
	`SETACTIVE "a/b"`,
	`HAVESPACE "n" 0`,
	`HAVESPACE "n" 4294967296`,
	`PUTSCRIPT "crlf" ` + lit("keep;\r\n\r\n# comment\r\n"),
	`GETSCRIPT "crlf"`,
	`PUTSCRIPT "lf" ` + lit("keep;\n# comment\n"),
	`GETSCRIPT "lf"`,
	`PUTSCRIPT "nul" ` + lit("keep;\x00"),
	`PUTSCRIPT "latin1" ` + lit("# caf\xe9\r\nkeep;\r\n"),
	`CHECKSCRIPT ""`,
	`PUTSCRIPT "n"`,
	`PUTSCRIPT "n" 5`,
	`DELETESCRIPT "Café filtres"`,
	`SETACTIVE ""`,
	`SETACTIVE ""`,
	`DELETESCRIPT "Café filtres"`,
	`LISTSCRIPTS`,
	`LOGOUT`,
}

// Our replies and Pigeonhole's to the same commands: the same outcome,
// response code and data, and the same files on disk.
func TestPigeonholeDifferential(t *testing.T) {
	if _, err := os.Stat(pigeonholeManageSieve); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("Pigeonhole's managesieve (dovecot-managesieved) is not installed")
		}
		t.Skip("Pigeonhole's managesieve (dovecot-managesieved) is not installed")
	}
	if os.Getuid() != 0 {
		t.Skip("running Pigeonhole as another user needs root")
	}
	t.Run("quota", func(t *testing.T) {
		differential(t, scripts.Limits{MaxScripts: 3, MaxStorage: 1000, MaxScriptSize: 1000}, quotaSession)
	})
	t.Run("names", func(t *testing.T) {
		differential(t, scripts.Limits{}, namesSession)
	})
	t.Run("warnings", func(t *testing.T) {
		// Word for word, but for the wording of the errors: each error
		// and warning on its line, in Pigeonhole's order, as many errors
		// (managesieve_max_compile_errors).
		ours, theirs := differential(t, scripts.Limits{}, warningsSession)
		for i := range ours {
			if o, p := errorWording.ReplaceAllString(ours[i], "error: …"), errorWording.ReplaceAllString(theirs[i], "error: …"); o != p {
				t.Errorf("%s\n ours:       %q\n Pigeonhole: %q", trim(warningsSession[i]), ours[i], theirs[i])
			}
		}
	})
}

// warningsSession: the warnings of uploads and activations, and the
// includes missing at upload; :global "gx" is in both servers' global
// scripts.
var warningsSession = []string{
	`PUTSCRIPT "ca" ` + lit(`require "include"; include "cb";`),
	`CHECKSCRIPT ` + lit(`require "include"; include "cb";`),
	`SETACTIVE "ca"`,
	`CHECKSCRIPT ` + lit(`require "include"; include :global "nope";`),
	`PUTSCRIPT "cg" ` + lit(`require "include"; include :global "nope";`),
	`SETACTIVE "cg"`,
	`CHECKSCRIPT ` + lit(`require "include"; include :optional "nope";`),
	`CHECKSCRIPT ` + lit(`require ["editheader"]; deleteheader "Received";`),
	`CHECKSCRIPT ` + lit("require [\"editheader\"];\r\naddheader \"X-Sieve-Redirected-From\" \"x\";\r\ndeleteheader \"auto-submitted\";\r\ndeleteheader \"X-a\";\r\n"),
	`PUTSCRIPT "cb" ` + lit(`require ["editheader","include"]; deleteheader "Received"; include "cc";`),
	`CHECKSCRIPT ` + lit(`require "include"; include "cb"; include :global "gx";`),
	`PUTSCRIPT "lib" ` + lit("require [\"editheader\", \"include\"];\r\ndeleteheader \"received\";\r\ninclude :global \"gone\";"),
	`CHECKSCRIPT ` + lit("require [\"include\", \"editheader\"];\r\ninclude \"lib\";\r\naddheader \"x-sieve-redirected-from\" \"x\";\r\n# end"),
	`PUTSCRIPT "cc" "keep;"`,
	`SETACTIVE "ca"`,
	`SETACTIVE "ca"`,
	`PUTSCRIPT "w" "# x"`,
	`SETACTIVE "w"`,
	`CHECKSCRIPT "keep; # x"`,
	`CHECKSCRIPT ` + lit("keep; # x\r\n"),
	`CHECKSCRIPT ` + lit("require [\"editheader\"];\r\ndeleteheader \"Received\";\r\nfoo;\r\n"),
	`PUTSCRIPT "e" ` + lit("require [\"editheader\"];\r\ndeleteheader \"Received\";\r\nif true {\r\n"),
	// Several errors, a warning among them; more than five (the first
	// five listed, as Pigeonhole's managesieve_max_compile_errors).
	`CHECKSCRIPT ` + lit("require [\"editheader\"];\r\nfoo;\r\nkeep 1;\r\ndeleteheader \"Received\";\r\nbar;\r\n"),
	`PUTSCRIPT "m" ` + lit("foo;\r\nbar 1;\r\nkeep 1;\r\ndiscard 2;\r\nstop 3;\r\nredirect;\r\nredirect 4;\r\nkeep 5;\r\n"),
	`CHECKSCRIPT ` + lit("foo;\r\nbar 1;\r\nkeep 1;\r\ndiscard 2;\r\nstop 3;\r\nredirect;\r\nredirect 4;\r\nkeep 5;\r\n"),
	`LOGOUT`,
}

// errorWording is an error's words in a reply, which Pigeonhole's and
// courriel's do not share: its place and kind are compared.
var errorWording = regexp.MustCompile(`(line \d+: )?error: [^\r\n]*`)

// gxScript is the global script "gx" of the differential: a warning.
const gxScript = "require [\"editheader\"]; addheader \"X-Sieve-Redirected-From\" \"x\";\r\n"

// differential runs cmds on Pigeonhole and on courriel, both with
// sieve_extensions = +editheader, checks that they agree, and returns the
// replies, ours and Pigeonhole's.
func differential(t *testing.T, lim scripts.Limits, cmds []string) (ours, theirs []string) {
	setting := "+editheader"
	exts, warns := sieve.ParseExtensions(setting)
	if len(warns) > 0 {
		t.Fatal(warns)
	}
	theirs, home := runPigeonhole(t, lim, &setting, cmds)

	// Ours.
	e := newEnv(t, func(o *Options) {
		o.Limits, o.GlobalScripts, o.Extensions = lim, filepath.Join(filepath.Dir(home), "global"), exts
	})
	bob := e.user(t, "bob")
	os.MkdirAll(bob.Home, 0o700)
	os.WriteFile(filepath.Join(bob.Home, ".dovecot.sieve"), []byte(legacyScript), 0o600)
	exec.Command("chown", "-R", fmt.Sprintf("%d:%d", bob.UID, bob.GID), bob.Home).Run()
	c := e.login(t, "bob")
	ours = make([]string, len(cmds))
	for i, cmd := range cmds {
		ours[i] = c.cmd(cmd)
	}
	same := 0
	for i := range cmds {
		if ours[i] == theirs[i] {
			same++
		} else {
			t.Logf("worded differently: %q\n ours:       %q\n Pigeonhole: %q", trim(cmds[i]), trim(ours[i]), trim(theirs[i]))
		}
		g, w := gist(ours[i]), gist(theirs[i])
		t.Logf("%-40.40q %s", cmds[i], w)
		if g != w {
			t.Errorf("%s\n ours:       %q\n Pigeonhole: %q", trim(cmds[i]), ours[i], theirs[i])
		}
	}
	t.Logf("%d of %d replies are word for word Pigeonhole's", same, len(cmds))
	// The files left, and the link.
	files := func(h string) string {
		var out []string
		filepath.Walk(filepath.Join(h, "sieve"), func(p string, fi os.FileInfo, err error) error {
			if err == nil && !strings.Contains(p, "/tmp") {
				rel, _ := filepath.Rel(h, p)
				out = append(out, fmt.Sprintf("%s %v %d", rel, fi.Mode(), fi.Size()))
			}
			return nil
		})
		l, _ := os.Readlink(filepath.Join(h, ".dovecot.sieve"))
		return strings.Join(out, "\n") + "\nlink " + l
	}
	if o, p := files(bob.Home), files(home); o != p {
		t.Errorf("files differ:\n ours:\n%s\n Pigeonhole:\n%s", o, p)
	}
	return ours, theirs
}

// legacyScript is an installation's ~/.dovecot.sieve from before
// ManageSieve: a regular file, which activation must keep as
// sieve/dovecot.orig.sieve.
const legacyScript = "require \"fileinto\";\nfileinto \"Old\";\n"

// runPigeonhole runs cmds on Pigeonhole's managesieve, logged in, with
// the limits and sieve_extensions = *extensions (nil: not set), and
// returns its replies and the user's home.
func runPigeonhole(t *testing.T, lim scripts.Limits, extensions *string, cmds []string) (theirs []string, home string) {
	return runPigeonholeGlobal(t, lim, extensions, nil, cmds)
}

// runPigeonholeGlobal is runPigeonhole with sieve_global_extensions too
// (nil: unset).
func runPigeonholeGlobal(t *testing.T, lim scripts.Limits, extensions, globalExtensions *string, cmds []string) (theirs []string, home string) {
	maxSize := lim.MaxScriptSize
	if maxSize == 0 {
		maxSize = scripts.DefaultMaxScriptSize
	}
	dir, err := os.MkdirTemp("", "pigeonhole")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)
	home = filepath.Join(dir, "home")
	os.Mkdir(home, 0o755)
	global := filepath.Join(dir, "global")
	os.Mkdir(global, 0o755)
	os.WriteFile(filepath.Join(global, "gx.sieve"), []byte(gxScript), 0o644)
	os.WriteFile(filepath.Join(home, ".dovecot.sieve"), []byte(legacyScript), 0o600)
	exec.Command("chown", "-R", "65534:65534", home).Run()
	extSetting := ""
	if extensions != nil {
		extSetting = "  sieve_extensions = " + *extensions + "\n"
	}
	if globalExtensions != nil {
		extSetting += "  sieve_global_extensions = " + *globalExtensions + "\n"
	}
	conf := filepath.Join(dir, "dovecot.conf")
	os.WriteFile(conf, []byte(fmt.Sprintf("ssl = no\nmail_location = maildir:%s/Maildir\nlog_path = /dev/null\n"+
		"mail_uid = 65534\nmail_gid = 65534\nfirst_valid_uid = 0\nfirst_valid_gid = 0\n"+
		"plugin {\n  sieve = file:~/sieve;active=~/.dovecot.sieve\n  sieve_global = %s\n%s  sieve_quota_max_scripts = %d\n  sieve_quota_max_storage = %d\n  sieve_max_script_size = %d\n}\n",
		home, global, extSetting, lim.MaxScripts, lim.MaxStorage, maxSize)), 0o644)
	cmd := exec.Command(pigeonholeManageSieve, "-c", conf)
	cmd.Env = []string{"USER=alice", "HOME=" + home}
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	defer stdin.Close()
	ph := &client{t: t, r: bufio.NewReader(stdout)} // pre-authenticated: no greeting
	go func() {
		// Pigeonhole reads as the replies go; it needs no pacing.
		for _, c := range cmds {
			io.WriteString(stdin, c+"\r\n")
		}
	}()
	theirs = make([]string, len(cmds))
	for i := range cmds {
		theirs[i] = ph.response()
	}

	return theirs, home
}
