package imap

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// binaryCases are literal8 messages with binary parts.
var binaryCases = map[string]string{
	"single part":  "Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: binary\r\n\r\n\x00-\xe4\n\r\n\n",
	"second part":  "Content-Type: multipart/mixed; boundary=z\r\n\r\n--z\r\nContent-Type: text/plain\r\n\r\ntext\r\n--z\r\nContent-Transfer-Encoding: binary\r\n\r\n\x00-\xe4\n\r\n\n\r\n--z--\r\n",
	"NUL, 8bit":    "Content-Type: multipart/mixed; boundary=z\r\n\r\n--z\r\nContent-Transfer-Encoding: 8bit\r\n\r\na\x00b\r\n--z\r\nContent-Transfer-Encoding: base64\r\n\r\nAA\x00==\r\n--z--\r\n",
	"encapsulated": "Content-Type: message/rfc822\r\n\r\nSubject: in\r\nContent-Transfer-Encoding: binary\r\n\r\n" + strings.Repeat("\x00\x01\x02", 100) + "\r\n",
	"long part":    "Content-Type: multipart/mixed; boundary=z\r\n\r\n--z\r\nContent-Transfer-Encoding: binary\r\n\r\n" + strings.Repeat("\x00bin\r\nary\n", 30000) + "\r\n--z\r\nContent-Transfer-Encoding: binary\r\n\r\n\r\n--z--\r\n",
}

// TestBinaryEncodedAsInMemory: a literal8 spooled to a file and encoded
// on the way out gives the very bytes encodeBinaryParts gives in memory.
func TestBinaryEncodedAsInMemory(t *testing.T) {
	for name, msg := range binaryCases {
		t.Run(name, func(t *testing.T) { checkBinaryEncoded(t, []byte(msg)) })
	}
	for name, msg := range scanCases {
		t.Run(name, func(t *testing.T) { checkBinaryEncoded(t, []byte(msg)) })
	}
}

func FuzzBinaryEncoded(f *testing.F) {
	for _, msg := range binaryCases {
		f.Add([]byte(msg))
	}
	for _, msg := range scanCases {
		f.Add([]byte(msg))
	}
	f.Fuzz(func(t *testing.T, msg []byte) { checkBinaryEncoded(t, msg) })
}

func checkBinaryEncoded(t *testing.T, msg []byte) {
	t.Helper()
	f, err := os.CreateTemp(t.TempDir(), "spool")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	f.Write(msg)
	held := int64(0)
	r, err := binaryEncoded(f, int64(len(msg)), func(n int64) error { held = n; return nil })
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	if want := encodeBinaryParts(msg); !bytes.Equal(got, want) {
		t.Errorf("%.80q: encoded from the file\n%.200q\nwant\n%.200q", msg, got, want)
	}
	if held != 0 && len(msg) < maxScanHeader {
		t.Errorf("memory held (%d) for a message within the scanner's bounds", held)
	}
}

// TestAppendLiteral8Memory: ten literal8 APPENDs of a 4 MiB message with
// a binary part at once go to the folder through a spool file, not
// memory (QA: ten of 60 MB held 1.2 GiB), the spool leaves nothing in
// tmp/, and BINARY gives the very bytes back. Not parallel: it counts the
// bytes the process allocates.
func TestAppendLiteral8Memory(t *testing.T) {
	e := newEnv(t)
	bin := bytes.Repeat([]byte("\x00\x01binary\r\n\xff"), 400000)
	msg := []byte("Subject: literal8\r\nContent-Type: multipart/mixed; boundary=z\r\n\r\n--z\r\nContent-Type: text/plain\r\n\r\ntext\r\n" +
		"--z\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: binary\r\n\r\n" + string(bin) + "\r\n--z--\r\n")
	const sessions = 10
	conns := make([]*rawConn, sessions)
	for i := range conns {
		conns[i] = loggedIn(t, e)
	}
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	var wg sync.WaitGroup
	replies := make([]string, sessions)
	for i, r := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.c.SetDeadline(time.Now().Add(3 * time.Minute))
			fmt.Fprintf(r.c, "a APPEND INBOX ~{%d+}\r\n", len(msg))
			r.c.Write(msg)
			r.c.Write([]byte("\r\n"))
			l, _ := r.br.ReadString('\n')
			replies[i] = strings.TrimRight(l, "\r\n")
		}()
	}
	wg.Wait()
	runtime.ReadMemStats(&after)
	for i, l := range replies {
		if !strings.HasPrefix(l, "a OK [APPENDUID ") {
			t.Errorf("APPEND %d: %q", i, l)
		}
	}
	alloc := after.TotalAlloc - before.TotalAlloc
	t.Logf("%d literal8 APPENDs of %d KiB: %d KiB allocated", sessions, len(msg)>>10, alloc>>10)
	// A copy of the literal per session alone is 45 MiB, its encoded
	// form 60 more.
	if alloc > 40<<20 {
		t.Errorf("%d literal8 APPENDs of %d MiB allocated %d MiB", sessions, len(msg)>>20, alloc>>20)
	}
	if left, _ := os.ReadDir(filepath.Join(e.maildir, "tmp")); len(left) > 0 {
		t.Errorf("left in tmp/: %v", left)
	}
	r := conns[0]
	r.cmd("s", "SELECT INBOX")
	want := sha256.Sum256(bin)
	if err := fetchBinaryDigest(r, want); err != "" {
		t.Error(err)
	}
}

// TestCatenateLargeParts: CATENATE builds its message in a spool file:
// ten sessions at once with a TEXT part of 4 MiB, then ten with URLs to
// parts of a large message (streamed from its file, sections and
// ranges), get the bytes they named, and the server allocates a few
// buffers for them, not the message per session (QA: ten CATENATEs of
// 60 MB held 595 MiB). Not parallel: it counts the bytes the process
// allocates.
func TestCatenateLargeParts(t *testing.T) {
	e := newEnv(t)
	src, _ := largeMessage(4 << 20)
	e.deliver("1700000001.M1P1.test", src)
	crlf := toCRLF([]byte(src))
	text := []byte("Subject: catenated\r\n\r\n" + strings.Repeat("0123456789abcdef\r\n", 4<<20/18))
	const sessions = 10
	conns := make([]*rawConn, sessions)
	for i := range conns {
		conns[i] = loggedIn(t, e)
		conns[i].cmd("s", "SELECT INBOX")
	}
	part2 := extractBody(crlf, []int{2}, secAll, nil, false)
	for _, c := range []struct {
		name  string
		send  func(r *rawConn)
		want  []byte
		bound uint64
	}{
		{"a TEXT part", func(r *rawConn) {
			fmt.Fprintf(r.c, "a APPEND Drafts CATENATE (TEXT {%d+}\r\n", len(text))
			r.c.Write(text)
			r.c.Write([]byte(")\r\n"))
		}, text, 24 << 20},
		{"URL parts of a large message", func(r *rawConn) {
			fmt.Fprintf(r.c, "a APPEND Drafts CATENATE (URL \";UID=1/;SECTION=HEADER\" URL \";UID=1/;SECTION=2\" URL \";UID=1/;SECTION=2/;PARTIAL=100.50\" URL \"/INBOX/;UID=1/;SECTION=3.HEADER.FIELDS%%20(SUBJECT)\")\r\n")
		}, bytes.Join([][]byte{crlf[:headerEnd(crlf)], part2, part2[100:150],
			extractBody(crlf, []int{3}, secHeader, []string{"SUBJECT"}, false)}, nil), 24 << 20},
	} {
		t.Run(c.name, func(t *testing.T) {
			runtime.GC()
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			var wg sync.WaitGroup
			replies := make([]string, sessions)
			for i, r := range conns {
				wg.Add(1)
				go func() {
					defer wg.Done()
					r.c.SetDeadline(time.Now().Add(3 * time.Minute))
					c.send(r)
					l, _ := r.br.ReadString('\n')
					replies[i] = strings.TrimRight(l, "\r\n")
				}()
			}
			wg.Wait()
			runtime.ReadMemStats(&after)
			for i, l := range replies {
				if !strings.HasPrefix(l, "a OK [APPENDUID ") {
					t.Errorf("CATENATE %d: %q", i, l)
				}
			}
			alloc := after.TotalAlloc - before.TotalAlloc
			t.Logf("%d CATENATEs of %d KiB: %d KiB allocated", sessions, len(c.want)>>10, alloc>>10)
			if alloc > c.bound {
				t.Errorf("%d CATENATEs of %d MiB allocated %d MiB", sessions, len(c.want)>>20, alloc>>20)
			}
			r := conns[0]
			r.cmd("d", "SELECT Drafts")
			got := fetchLiteral(t, r, "BODY.PEEK[]")
			if want := "* 1 FETCH (BODY[] {}" + string(c.want); got != want {
				t.Errorf("stored %d bytes %.100q, want %d bytes %.100q", len(got), got, len(want), want)
			}
			if got := last(r.cmd("x", "STATUS Drafts (MESSAGES)")); !strings.HasPrefix(got, "x OK") {
				t.Fatal(got)
			}
			r.cmd("e", "STORE 1:* +FLAGS.SILENT (\\Deleted)")
			r.cmd("e", "EXPUNGE")
			r.cmd("s", "SELECT INBOX")
		})
	}
	if left, _ := os.ReadDir(filepath.Join(e.maildir, "tmp")); len(left) > 0 {
		t.Errorf("left in tmp/: %v", left)
	}
}
