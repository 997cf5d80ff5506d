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

	"courriel/sieve/scripts"
)

// pigeonholeManageSieve is Debian's Pigeonhole ManageSieve server
// (package dovecot-managesieved), run pre-authenticated on stdin.
const pigeonholeManageSieve = "/usr/lib/dovecot/managesieve"

// differential is one session's commands (after login), with the
// quota both servers run with.
var differential = []string{
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
	lim := scripts.Limits{MaxScripts: 3, MaxStorage: 1000, MaxScriptSize: 1000}

	// Pigeonhole.
	dir, err := os.MkdirTemp("", "pigeonhole")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)
	home := filepath.Join(dir, "home")
	os.Mkdir(home, 0o755)
	// An installation from before ManageSieve: a regular ~/.dovecot.sieve,
	// which activation must keep as sieve/dovecot.orig.sieve.
	legacy := "require \"fileinto\";\nfileinto \"Old\";\n"
	os.WriteFile(filepath.Join(home, ".dovecot.sieve"), []byte(legacy), 0o600)
	exec.Command("chown", "-R", "65534:65534", home).Run()
	conf := filepath.Join(dir, "dovecot.conf")
	os.WriteFile(conf, []byte(fmt.Sprintf("ssl = no\nmail_location = maildir:%s/Maildir\nlog_path = /dev/null\n"+
		"mail_uid = 65534\nmail_gid = 65534\nfirst_valid_uid = 0\nfirst_valid_gid = 0\n"+
		"plugin {\n  sieve = file:~/sieve;active=~/.dovecot.sieve\n  sieve_quota_max_scripts = %d\n  sieve_quota_max_storage = %d\n  sieve_max_script_size = %d\n}\n",
		home, lim.MaxScripts, lim.MaxStorage, lim.MaxScriptSize)), 0o644)
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
		for _, c := range differential {
			io.WriteString(stdin, c+"\r\n")
		}
	}()
	theirs := make([]string, len(differential))
	for i := range differential {
		theirs[i] = ph.response()
	}

	// Ours.
	e := newEnv(t, func(o *Options) { o.Limits = lim })
	bob := e.user(t, "bob")
	os.MkdirAll(bob.Home, 0o700)
	os.WriteFile(filepath.Join(bob.Home, ".dovecot.sieve"), []byte(legacy), 0o600)
	exec.Command("chown", "-R", fmt.Sprintf("%d:%d", bob.UID, bob.GID), bob.Home).Run()
	c := e.login(t, "bob")
	ours := make([]string, len(differential))
	for i, cmd := range differential {
		ours[i] = c.cmd(cmd)
	}
	same := 0
	for i := range differential {
		if ours[i] == theirs[i] {
			same++
		} else {
			t.Logf("worded differently: %q\n ours:       %q\n Pigeonhole: %q", trim(differential[i]), trim(ours[i]), trim(theirs[i]))
		}
		g, w := gist(ours[i]), gist(theirs[i])
		t.Logf("%-40.40q %s", differential[i], w)
		if g != w {
			t.Errorf("%s\n ours:       %q\n Pigeonhole: %q", trim(differential[i]), ours[i], theirs[i])
		}
	}
	t.Logf("%d of %d replies are word for word Pigeonhole's", same, len(differential))
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
}
