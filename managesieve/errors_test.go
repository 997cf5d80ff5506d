package managesieve

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"courriel/sieve/scripts"
)

// step is one command and what its reply must hold.
type step struct {
	send string // without the final CRLF
	want []string
}

func (c *client) run(steps []step) {
	c.t.Helper()
	for _, s := range steps {
		got := c.cmd(s.send)
		for _, w := range s.want {
			if !strings.Contains(got, w) {
				c.t.Errorf("%q:\n got %q\nwant %q", trim(s.send), got, w)
			}
		}
	}
}

func trim(s string) string {
	if len(s) > 80 {
		return s[:80] + "…"
	}
	return s
}

// Before login on a plain connection: nothing to log in with, and the
// commands of the other state are unknown.
func TestBeforeTLS(t *testing.T) {
	e := newEnv(t, nil)
	c, err := dialRaw(e)
	if err != nil {
		t.Fatal(err)
	}
	c.t = t
	greeting := c.response()
	for _, w := range []string{`"IMPLEMENTATION" "courriel"`, `"SIEVE" "fileinto `, `"SASL" ""`, "\"STARTTLS\"\n", `"VERSION" "1.0"`, `"MAXREDIRECTS" "4"`, `OK "courriel ManageSieve ready."`,
		`"NOTIFY" "mailto"`, ` date index ihave duplicate mime foreverypart extracttext"`} {
		if !strings.Contains(greeting, w) {
			t.Errorf("greeting %q lacks %q", greeting, w)
		}
	}
	u := e.user(t, "alice")
	c.run([]step{
		{`AUTHENTICATE "PLAIN" "` + plain("", u.Login, u.Password) + `"`, []string{`NO (ENCRYPT-NEEDED)`}},
		{`LISTSCRIPTS`, []string{`NO "Error in MANAGESIEVE command LISTSCRIPTS: Unknown command."`}},
		{`PUTSCRIPT "a" "keep;"`, []string{`NO "Error in MANAGESIEVE command PUTSCRIPT: Unknown command."`}},
		{`CAPABILITY extra`, []string{`NO "Error in MANAGESIEVE command CAPABILITY: Too many arguments."`}},
		{`FOO`, []string{`Unknown command.`}},
		{`NOOP "x\"y"`, []string{`OK (TAG "x\"y") "Done"`}},
		{`NOOP "bad`, []string{`NO "Error in MANAGESIEVE command NOOP: String contains invalid character."`}},
		{`NOOP {abc}`, []string{`Invalid literal.`}},
	})
	// A large literal before login is not read: the connection ends.
	if r := c.cmd(`PUTSCRIPT "a" {100000+}`); !strings.HasPrefix(r, `BYE "Too long argument."`) {
		t.Fatalf("large literal before login: %q", r)
	}
	// Before login, a connection gets 50 commands and 20 invalid ones.
	c3 := e.dial(t)
	for i := range 51 {
		r := c3.cmd("NOOP")
		if i < 50 && r != `OK "NOOP Completed"` || i == 50 && r != `BYE "Too many commands."` {
			t.Fatalf("command %d: %q", i+1, r)
		}
	}
	c4 := e.dial(t)
	for i := range 20 {
		r := c4.cmd("GETSCRIPT \"x\"")
		if i < 19 && !strings.Contains(r, "Unknown command.") || i == 19 && r != `BYE "Too many invalid commands."` {
			t.Fatalf("invalid command %d: %q", i+1, r)
		}
	}
	// STARTTLS with a command pipelined behind it (a STARTTLS injection).
	c2 := e.dial(t)
	c2.send("STARTTLS\r\nAUTHENTICATE \"PLAIN\" \"x\"\r\n")
	if r := c2.response(); !strings.HasPrefix(r, `BYE "Data after STARTTLS."`) {
		t.Fatalf("pipelined STARTTLS: %q", r)
	}
}

func TestLogin(t *testing.T) {
	e := newEnv(t, nil)
	u := e.user(t, "alice")
	c := e.dial(t)
	c.startTLS(e)
	c.run([]step{
		{`AUTHENTICATE "LOGIN"`, []string{`NO "Unsupported authentication mechanism."`}},
		{`AUTHENTICATE "PLAIN" "` + plain("bob", u.Login, u.Password) + `"`, []string{`NO "Authentication failed."`}},
		{`AUTHENTICATE "PLAIN" "` + plain("", u.Login, "wrong") + `"`, []string{`NO "Authentication failed."`}},
	})
	// Continuation: an empty challenge, the response as a literal.
	c.send(`AUTHENTICATE "PLAIN"` + "\r\n")
	if l, _ := c.r.ReadString('\n'); l != "\"\"\r\n" {
		t.Fatalf("challenge %q", l)
	}
	resp := plain(u.Login, u.Login, u.Password)
	c.send(lit(resp) + "\r\n")
	if r := c.response(); r != `OK "Logged in."` {
		t.Fatalf("continued login: %q", r)
	}
	caps := c.cmd("CAPABILITY")
	if strings.Contains(caps, "SASL") || strings.Contains(caps, "STARTTLS") || !strings.Contains(caps, `"UNAUTHENTICATE"`) {
		t.Errorf("capabilities after login: %q", caps)
	}
	c.run([]step{
		{`UNAUTHENTICATE`, []string{`OK`}},
		{`LISTSCRIPTS`, []string{`Unknown command.`}},
		{`AUTHENTICATE "PLAIN"` + "\r\n" + `"*"`, []string{`NO "Authentication aborted by client."`}},
		{`AUTHENTICATE "PLAIN" "` + plain("", u.Login, u.Password) + `"`, []string{`OK "Logged in."`}},
		{`LISTSCRIPTS`, []string{`OK "Listscripts completed."`}},
	})
	// The third failure closes the connection.
	c3 := e.dial(t)
	c3.startTLS(e)
	for i := range 3 {
		r := c3.cmd(`AUTHENTICATE "PLAIN" "` + plain("", u.Login, "wrong") + `"`)
		if i < 2 && r != `NO "Authentication failed."` || i == 2 && r != `BYE "Too many failed logins."` {
			t.Fatalf("failure %d: %q", i+1, r)
		}
	}
	// The directory away: try later, never "failed".
	e.slapd.Stop(t)
	c4 := e.dial(t)
	c4.startTLS(e)
	if r := c4.cmd(`AUTHENTICATE "PLAIN" "` + plain("", "bob", "x") + `"`); !strings.HasPrefix(r, "NO (TRYLATER)") {
		t.Fatalf("directory down: %q", r)
	}
	e.slapd.Start(t)
}

func TestScriptErrors(t *testing.T) {
	e := newEnv(t, func(o *Options) {
		o.Limits = scripts.Limits{MaxScripts: 3, MaxStorage: 1500, MaxScriptSize: 1000}
		o.MaxLineLength = 4096
	})
	c := e.login(t, "bob")
	big := strings.Repeat("#", 1001)
	c.run([]step{
		{`PUTSCRIPT "main" ` + lit("keep;\r\n"), []string{`OK "PUTSCRIPT completed."`}},
		{`PUTSCRIPT "a/b" "keep;"`, []string{"NO \"Invalid Sieve script name `a/b'.\""}},
		{`PUTSCRIPT "a` + "\x01" + `b" "keep;"`, []string{"NO \"Invalid Sieve script name `a?b'.\""}},
		{`PUTSCRIPT "bad" ` + lit("keep;\r\nfileintoo \"x\";\r\n"), []string{"NO bad: line 2: error: ", "\r\nbad: error: validation failed.\r\n"}},
		{`PUTSCRIPT "bad" ` + lit("if true {\r\n"), []string{"bad: line ", "bad: error: parse failed."}},
		{`CHECKSCRIPT ` + lit("require \"nope\";\r\n"), []string{"NO line 1: error: ", "\r\nerror: validation failed.\r\n"}},
		{`CHECKSCRIPT "keep;"`, []string{`OK "Script checked successfully."`}},
		// Too large: refused from the literal's size, its octets thrown
		// away, the session goes on.
		{`PUTSCRIPT "big" ` + lit(big), []string{`NO (QUOTA/MAXSIZE) "Script is too large (max 1000 bytes)."`}},
		{`CHECKSCRIPT ` + lit(big), []string{`NO (QUOTA/MAXSIZE)`}},
		{`HAVESPACE "big" 1001`, []string{`NO (QUOTA/MAXSIZE)`}},
		{`HAVESPACE "x" 10`, []string{`OK "Putscript would succeed."`}},
		{`HAVESPACE "x/y" 10`, []string{`NO "Invalid script name."`}},
		{`HAVESPACE "x" "10"`, []string{`NO "Error in MANAGESIEVE command HAVESPACE: Invalid arguments."`}},
		{`PUTSCRIPT "b" "keep;"`, []string{`OK`}},
		{`PUTSCRIPT "c" "keep;"`, []string{`OK`}},
		{`PUTSCRIPT "d" "keep;"`, []string{`NO (QUOTA/MAXSCRIPTS) "Script count quota exceeded (max 3 scripts)."`}},
		{`HAVESPACE "d" 1`, []string{`NO (QUOTA/MAXSCRIPTS)`}},
		{`PUTSCRIPT "c" ` + lit(strings.Repeat("#", 990)+"\r\n"), []string{`OK`}},
		{`PUTSCRIPT "b" ` + lit(strings.Repeat("#", 990)+"\r\n"), []string{`NO (QUOTA/MAXSTORAGE)`}},
		{`SETACTIVE "main"`, []string{`OK "Setactive completed."`}},
		{`DELETESCRIPT "main"`, []string{`NO (ACTIVE) "Cannot delete the active Sieve script."`}},
		{`DELETESCRIPT "zz"`, []string{"NO (NONEXISTENT) \"Sieve script `zz' not found\""}},
		{`GETSCRIPT "zz"`, []string{`NO (NONEXISTENT)`}},
		{`SETACTIVE "zz"`, []string{`NO (NONEXISTENT)`}},
		{`RENAMESCRIPT "zz" "y"`, []string{`NO (NONEXISTENT)`}},
		{`RENAMESCRIPT "b" "c"`, []string{`NO (ALREADYEXISTS) "A sieve script with that name already exists."`}},
		{`RENAMESCRIPT "main" "renamed"`, []string{`OK "Renamescript completed."`}},
		{`LISTSCRIPTS`, []string{`"renamed" ACTIVE`, `"b"` + "\n", `"c"` + "\n"}},
		{`GETSCRIPT "renamed"`, []string{"keep;\r\n\nOK \"Getscript completed.\""}},
		{`GETSCRIPT`, []string{`NO "Error in MANAGESIEVE command GETSCRIPT: Missing arguments."`}},
		{`PUTSCRIPT "b" {12}` + "\r\nkeep;\r\nstop;", []string{`OK "PUTSCRIPT completed."`}}, // a synchronizing literal, no continuation
		{`PUTSCRIPT "y" {1x}`, []string{`Invalid literal.`}},
		{`SETACTIVE ""`, []string{`OK "Active script is now deactivated."`}},
		{`DELETESCRIPT "renamed"`, []string{`OK "Deletescript completed."`}},
	})
	// A line longer than MaxLineLength ends the session.
	if r := c.cmd(`NOOP "` + strings.Repeat("x", 5000) + `"`); !strings.HasPrefix(r, `BYE "Too long command line."`) {
		t.Fatalf("long line: %q", r)
	}
	// A script literal far beyond what may be thrown away ends it too.
	c2 := e.login(t, "bob")
	if r := c2.cmd(`PUTSCRIPT "huge" {999999999+}`); !strings.HasPrefix(r, `BYE (QUOTA/MAXSIZE)`) {
		t.Fatalf("huge literal: %q", r)
	}
}

// include is checked as delivery will run it: a :personal include names
// one of the user's scripts, a :global one a file of GlobalScripts; one
// missing is only a warning on upload (TestWarnings).
func TestCheckInclude(t *testing.T) {
	global := t.TempDir()
	os.WriteFile(filepath.Join(global, "spam.sieve"), []byte("keep;\r\n"), 0o644)
	e := newEnv(t, func(o *Options) { o.GlobalScripts = global })
	c := e.login(t, "bob")
	c.run([]step{
		{`CHECKSCRIPT ` + lit("require \"include\";\r\ninclude :personal \"lib\";\r\n"), []string{"OK (WARNINGS) ", "'lib' does not exist"}},
		{`PUTSCRIPT "lib" "keep;"`, []string{`OK`}},
		{`CHECKSCRIPT ` + lit("require \"include\";\r\ninclude :personal \"lib\";\r\n"), []string{`OK "Script checked successfully."`}},
		{`CHECKSCRIPT ` + lit("require \"include\";\r\ninclude :global \"spam\";\r\n"), []string{`OK "Script checked successfully."`}},
		{`CHECKSCRIPT ` + lit("require \"include\";\r\ninclude :global \"nope\";\r\n"), []string{"OK (WARNINGS) ", "'nope' does not exist"}},
		{`CHECKSCRIPT ` + lit("require \"include\";\r\ninclude :optional :global \"nope\";\r\n"), []string{`OK`}},
	})
}

func TestConnectionLimits(t *testing.T) {
	e := newEnv(t, func(o *Options) {
		o.MaxConnsPerIP = 2
		// Long enough that the first two are still connected, however
		// slow the run, when the third is refused; it then frees c1's
		// slot.
		o.PreAuthTimeout = 5 * time.Second
	})
	c1 := e.dial(t)
	e.dial(t)
	c, err := dialRaw(e)
	if err != nil {
		t.Fatal(err)
	}
	c.t = t
	if r := c.response(); !strings.HasPrefix(r, `BYE (TRYLATER) "Too many connections from your address."`) {
		t.Fatalf("third connection: %q", r)
	}
	// Silent before login: closed with a BYE, and the slot is free again.
	if r := c1.response(); r != `BYE "Disconnected for inactivity."` {
		t.Fatalf("idle: %q", r)
	}
	// The slot is freed just after the BYE: only a slot never freed
	// takes the minute.
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(50 * time.Millisecond) {
		c, err := dialRaw(e)
		if err != nil {
			t.Fatal(err)
		}
		c.t = t
		r := c.response()
		c.conn.Close()
		if strings.HasPrefix(r, "\"IMPLEMENTATION\"") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no slot freed a minute after the BYE: %q", r)
		}
	}
}

// A home outside the allowed base (a directory entry gone wrong) is
// refused at login: try later, and the admin reads why in the log.
func TestHomeOutsideBase(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.AllowedBase = t.TempDir() })
	c := e.dial(t)
	c.startTLS(e)
	u := e.user(t, "alice")
	if r := c.cmd(`AUTHENTICATE "PLAIN" "` + plain("", u.Login, u.Password) + `"`); !strings.HasPrefix(r, "NO (TRYLATER)") {
		t.Fatalf("home outside the base: %q", r)
	}
}

// TestPreAuthTimeoutFromConnect: PreAuthTimeout counts from connect, not
// from the last command or byte: a client sending a command at a time,
// or one byte of a command at a time, has no more than PreAuthTimeout in
// all to log in (the per-command deadline let 50 commands a minute apart
// hold a connection for 50 minutes).
func TestPreAuthTimeoutFromConnect(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.PreAuthTimeout = time.Second })
	const tick = 100 * time.Millisecond
	for _, c := range []struct {
		name string
		next func(i int) string
	}{
		{"a command at a time", func(int) string { return "NOOP\r\n" }},
		{"a byte at a time", func(i int) string { return string(`AUTHENTICATE "PLAIN" "`[min(i, 21)]) }},
	} {
		t.Run(c.name, func(t *testing.T) {
			cl := e.dial(t)
			var lines []string
			done := make(chan struct{})
			go func() {
				defer close(done)
				for {
					l, err := cl.r.ReadString('\n')
					if err != nil {
						return
					}
					lines = append(lines, strings.TrimSuffix(l, "\r\n"))
				}
			}()
			// 100 ticks are ten PreAuthTimeouts.
			for i := 0; i < 100; i++ {
				if _, err := io.WriteString(cl.conn, c.next(i)); err != nil {
					break // closed
				}
				time.Sleep(tick)
			}
			cl.conn.Close()
			<-done
			if len(lines) == 0 || lines[len(lines)-1] != `BYE "Disconnected for inactivity."` {
				t.Errorf("lines %q, want the last a BYE for inactivity", lines)
			}
		})
	}
}
