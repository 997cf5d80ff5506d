package smtp

import (
	"bufio"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestDialogs runs every testdata/dialogs/*.txt transcript (STYLE habit 9).
// Adding a case is adding a file. Lines:
//
//	# comment
//	@kind inbound|submission|submissions   (first, before any C:)
//	C: text         send text + CRLF
//	C! "go string"  send the Go-quoted bytes as they are (no CRLF added)
//	S: prefix       read one reply; its last line must start with prefix
//	S~ text         some line of the last reply contains text
//	S! text         no line of the last reply contains text
//	@starttls       STARTTLS, 220, TLS handshake
//	@closed         the server closes the connection
//	@copies ADDR N  ADDR has N stored copies at the end
//	@queued N       N messages were queued at the end
func TestDialogs(t *testing.T) {
	t.Parallel()
	files, err := filepath.Glob("testdata/dialogs/*.txt")
	if err != nil || len(files) == 0 {
		t.Fatalf("no dialogs: %v", err)
	}
	for _, f := range files {
		t.Run(strings.TrimSuffix(filepath.Base(f), ".txt"), func(t *testing.T) {
			t.Parallel()
			runDialog(t, f)
		})
	}
}

func runDialog(t *testing.T, path string) {
	fh, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	var (
		e      *env
		c      *raw
		checks []func()
	)
	kind := Inbound
	start := func() {
		if c == nil {
			e = newEnv(t, kind, nil)
			c = e.dialRaw(t)
		}
	}
	sc := bufio.NewScanner(fh)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		where := path + ":" + strconv.Itoa(n)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		op, arg, _ := strings.Cut(line, " ")
		switch op {
		case "@kind":
			kind = map[string]Kind{"inbound": Inbound, "submission": Submission, "submissions": Submissions}[arg]
		case "C:":
			start()
			c.send(arg + "\r\n")
		case "C!":
			start()
			s, err := strconv.Unquote(arg)
			if err != nil {
				t.Fatalf("%s: %v", where, err)
			}
			c.send(s)
		case "S:":
			start()
			if got := c.reply(); !strings.HasPrefix(got, arg) {
				t.Fatalf("%s: want %q..., got %q", where, arg, got)
			}
		case "S~", "S!":
			found := false
			for _, l := range c.last {
				found = found || strings.Contains(l, arg)
			}
			if found != (op == "S~") {
				t.Fatalf("%s: %s %q in %q", where, op, arg, c.last)
			}
		case "@starttls":
			start()
			c.startTLS(e.ctls)
		case "@closed":
			if !c.closed() {
				t.Fatalf("%s: connection still open", where)
			}
		case "@copies":
			addr, ns, _ := strings.Cut(arg, " ")
			want, _ := strconv.Atoi(ns)
			checks = append(checks, func() {
				if got := e.deliv.copies()[addr]; got != want {
					t.Errorf("%s: %s has %d copies, want %d", where, addr, got, want)
				}
			})
		case "@queued":
			want, _ := strconv.Atoi(arg)
			checks = append(checks, func() {
				if got := len(e.queue.all()); got != want {
					t.Errorf("%s: %d queued, want %d", where, got, want)
				}
			})
		default:
			t.Fatalf("%s: unknown line %q", where, line)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	for _, check := range checks {
		check()
	}
}
