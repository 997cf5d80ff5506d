package imap

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"io"
	"math/rand/v2"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"courriel/imap/wire"
)

// largeMessage is a message of some MiB (well over maxKeptBuf, so that
// FETCH streams its sections): a quoted-printable text, a base64
// attachment of binary bytes (NULs included), a message/rfc822 holding a
// multipart, and an 8-bit part; LF line ends, as a maildir has them.
// It returns the message and the attachment's bytes.
func largeMessage(attach int) (msg string, bin []byte) {
	r := rand.New(rand.NewPCG(3, 4))
	bin = make([]byte, attach)
	for i := range bin {
		bin[i] = byte(r.IntN(256))
	}
	var b strings.Builder
	b.WriteString("From: a@example.org\nTo: b@example.org\nSubject: large\nMIME-Version: 1.0\n" +
		"Content-Type: multipart/mixed; boundary=\"outer\"\n\npreamble\n--outer\n" +
		"Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: quoted-printable\n\n")
	for i := range 2000 {
		fmt.Fprintf(&b, "line %d caf=C3=A9 =\nsoft break\n", i)
	}
	b.WriteString("--outer\nContent-Type: application/octet-stream\nContent-Transfer-Encoding: base64\n\n")
	enc := base64.StdEncoding.EncodeToString(bin)
	for len(enc) > 76 {
		b.WriteString(enc[:76] + "\n")
		enc = enc[76:]
	}
	b.WriteString(enc + "\n--outer\nContent-Type: message/rfc822\n\n" +
		"Subject: inner\nContent-Type: multipart/alternative; boundary=in\n\n--in\n\ninner text\n--in\n" +
		"Content-Type: text/html\n\n<p>inner</p>\n--in--\n" +
		"--outer\nContent-Type: text/plain; charset=iso-8859-1\nContent-Transfer-Encoding: 8bit\n\ncaf\xe9\x00\n--outer--\nepilogue\n")
	return b.String(), bin
}

// fetchLiteral sends "FETCH 1 (item)" and returns the item's value as
// the client reads it: a literal's bytes, or the atom after the name.
func fetchLiteral(t *testing.T, r *rawConn, item string) string {
	t.Helper()
	r.send("f FETCH 1 (" + item + ")\r\n")
	l := r.line()
	var val string
	if i := strings.LastIndexByte(l, '{'); i >= 0 && strings.HasSuffix(l, "}") {
		n, err := strconv.Atoi(l[i+1 : len(l)-1])
		if err != nil {
			t.Fatalf("%s: %q", item, l)
		}
		buf := make([]byte, n)
		if _, err := io.ReadFull(r.br, buf); err != nil {
			t.Fatal(err)
		}
		val = l[:i] + "{}" + string(buf)
		l = r.line()
	} else {
		val = l
	}
	if got := last(r.until("f")); !strings.HasPrefix(got, "f OK") && !strings.HasPrefix(got, "f NO") {
		t.Fatalf("%s: %q", item, got)
	}
	return val
}

// TestFetchLargeSections: the sections of a large message, which FETCH
// streams from the file, are those the whole message in memory gives,
// byte for byte: BODY sections of every kind, partial ones, BINARY of
// base64, quoted-printable and 8-bit parts (a NUL makes a literal8),
// BINARY.SIZE, and parts that do not exist.
func TestFetchLargeSections(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	msg, _ := largeMessage(1 << 20)
	e.deliver("1700000001.M1P1.test", msg)
	crlf := toCRLF([]byte(msg))
	r := loggedIn(t, e)
	r.cmd("s", "SELECT INBOX")
	lit := func(name string, b []byte, binary bool) string {
		if binary {
			return fmt.Sprintf("* 1 FETCH (%s ~{}%s", name, b)
		}
		// A literal carries no NUL: 0x80 instead (wire.NULInLiteral).
		return fmt.Sprintf("* 1 FETCH (%s {}%s", name, bytes.ReplaceAll(b, []byte{0}, []byte{wire.NULInLiteral}))
	}
	body := func(path []int, sec sectionKind, fields []string, not bool) []byte {
		return extractBody(crlf, path, sec, fields, not)
	}
	binary := func(path ...int) []byte {
		b, ok := extractBinary(crlf, path)
		if !ok {
			t.Fatalf("extractBinary(%v) failed", path)
		}
		return b
	}
	hasNUL := func(b []byte) bool { return bytes.IndexByte(b, 0) >= 0 }
	for _, c := range []struct{ item, want string }{
		{"BODY.PEEK[1]", lit("BODY[1]", body([]int{1}, secAll, nil, false), false)},
		{"BODY.PEEK[2]", lit("BODY[2]", body([]int{2}, secAll, nil, false), false)},
		{"BODY.PEEK[3]", lit("BODY[3]", body([]int{3}, secAll, nil, false), false)},
		{"BODY.PEEK[3.1]", lit("BODY[3.1]", body([]int{3, 1}, secAll, nil, false), false)},
		{"BODY.PEEK[3.2.MIME]", lit("BODY[3.2.MIME]", body([]int{3, 2}, secMIME, nil, false), false)},
		{"BODY.PEEK[3.HEADER]", lit("BODY[3.HEADER]", body([]int{3}, secHeader, nil, false), false)},
		{"BODY.PEEK[3.TEXT]", lit("BODY[3.TEXT]", body([]int{3}, secText, nil, false), false)},
		{"BODY.PEEK[2.MIME]", lit("BODY[2.MIME]", body([]int{2}, secMIME, nil, false), false)},
		{"BODY.PEEK[HEADER]", lit("BODY[HEADER]", body(nil, secHeader, nil, false), false)},
		{"BODY.PEEK[HEADER.FIELDS (SUBJECT TO)]", lit("BODY[HEADER.FIELDS (SUBJECT TO)]", body(nil, secHeader, []string{"SUBJECT", "TO"}, false), false)},
		{"BODY.PEEK[3.HEADER.FIELDS.NOT (SUBJECT)]", lit("BODY[3.HEADER.FIELDS.NOT (SUBJECT)]", body([]int{3}, secHeader, []string{"SUBJECT"}, true), false)},
		{"BODY.PEEK[TEXT]", lit("BODY[TEXT]", body(nil, secText, nil, false), false)},
		{"BODY.PEEK[]<1000.5000>", lit("BODY[]<1000>", crlf[1000:6000], false)},
		{"BODY.PEEK[2]<10.100>", lit("BODY[2]<10>", body([]int{2}, secAll, nil, false)[10:110], false)},
		{"BODY.PEEK[1]<99999999.10>", lit("BODY[1]<99999999>", nil, false)},
		{"BODY.PEEK[9]", lit("BODY[9]", nil, false)},
		{"BODY.PEEK[1.TEXT]", lit("BODY[1.TEXT]", nil, false)},
		{"RFC822.HEADER", lit("RFC822.HEADER", crlf[:headerEnd(crlf)], false)},
		{"RFC822.TEXT", lit("RFC822.TEXT", crlf[headerEnd(crlf):], false)},
		{"BINARY.PEEK[1]", lit("BINARY[1]", binary(1), hasNUL(binary(1)))},
		{"BINARY.PEEK[2]", lit("BINARY[2]", binary(2), true)},
		{"BINARY.PEEK[2]<100.1000>", lit("BINARY[2]<100>", binary(2)[100:1100], hasNUL(binary(2)[100:1100]))},
		{"BINARY.PEEK[2]<1048000.9000>", lit("BINARY[2]<1048000>", binary(2)[1048000:], hasNUL(binary(2)[1048000:]))},
		{"BINARY.PEEK[3]", lit("BINARY[3]", binary(3), false)},
		{"BINARY.PEEK[4]", lit("BINARY[4]", binary(4), true)},
		{"BINARY.PEEK[9]", lit("BINARY[9]", nil, false)},
		{"BINARY.PEEK[]", lit("BINARY[]", crlf, true)},
		{"BINARY.SIZE[2]", fmt.Sprintf("* 1 FETCH (BINARY.SIZE[2] %d)", len(binary(2)))},
		{"BINARY.SIZE[1]", fmt.Sprintf("* 1 FETCH (BINARY.SIZE[1] %d)", len(binary(1)))},
		{"BINARY.SIZE[4]", fmt.Sprintf("* 1 FETCH (BINARY.SIZE[4] %d)", len(binary(4)))},
		// One decoding pass for the size, kept for the part's items.
		{"BINARY.SIZE[2] BINARY.PEEK[2]<100.1000>", fmt.Sprintf("* 1 FETCH (BINARY.SIZE[2] %d %s", len(binary(2)),
			strings.TrimPrefix(lit("BINARY[2]<100>", binary(2)[100:1100], hasNUL(binary(2)[100:1100])), "* 1 FETCH ("))},
		{"BINARY.SIZE[1] BINARY.PEEK[1]<3.40>", fmt.Sprintf("* 1 FETCH (BINARY.SIZE[1] %d %s", len(binary(1)),
			strings.TrimPrefix(lit("BINARY[1]<3>", binary(1)[3:43], false), "* 1 FETCH ("))},
		{"BINARY.SIZE[4] BINARY.PEEK[4]<0.3>", fmt.Sprintf("* 1 FETCH (BINARY.SIZE[4] %d %s", len(binary(4)),
			strings.TrimPrefix(lit("BINARY[4]<0>", binary(4)[0:3], false), "* 1 FETCH ("))},
		{"BINARY.SIZE[4] BINARY.PEEK[4]", fmt.Sprintf("* 1 FETCH (BINARY.SIZE[4] %d %s", len(binary(4)),
			strings.TrimPrefix(lit("BINARY[4]", binary(4), true), "* 1 FETCH ("))},
	} {
		if got := fetchLiteral(t, r, c.item); got != c.want {
			t.Errorf("%s: got %d bytes %.80q, want %d bytes %.80q", c.item, len(got), got, len(c.want), c.want)
		}
	}
}

// TestFetchBinaryMemory: ten sessions FETCHing BINARY[2] and
// BINARY.SIZE[2] of the same large message (an attachment of 4 MiB,
// base64) at once get it right, and the server allocates a few buffers
// for it, not a copy of the message per session and item (QA: one
// session 235 MiB for a 59 MB message, ten 2.5 GiB). Not parallel: it
// counts the bytes the process allocates.
func TestFetchBinaryMemory(t *testing.T) {
	e := newEnv(t)
	msg, bin := largeMessage(4 << 20)
	e.deliver("1700000001.M1P1.test", msg)
	want := sha256.Sum256(bin)
	const sessions = 10
	conns := make([]*rawConn, sessions)
	for i := range conns {
		conns[i] = loggedIn(t, e)
		conns[i].cmd("s", "SELECT INBOX")
	}
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	var wg sync.WaitGroup
	errs := make(chan string, sessions)
	for _, r := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := fetchBinaryDigest(r, want); err != "" {
				errs <- err
			}
		}()
	}
	wg.Wait()
	runtime.ReadMemStats(&after)
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	alloc := after.TotalAlloc - before.TotalAlloc
	t.Logf("%d sessions, BINARY[2] of %d MiB: %d KiB allocated", sessions, len(bin)>>20, alloc>>10)
	// Each session: the scanner's and the decoder's buffers, some
	// hundred KiB (a few MiB in all, three times that with -race); the
	// message is 5.5 MiB, its copies in each session 150 MiB in all.
	if alloc > 40<<20 {
		t.Errorf("%d sessions allocated %d MiB for BINARY of an %d MiB attachment", sessions, alloc>>20, len(bin)>>20)
	}
	if n := e.srv.mem.inUse(); n != 0 {
		t.Errorf("%d bytes of the memory budget still held", n)
	}
}

// fetchBinaryDigest FETCHes BINARY.SIZE[2] and BINARY[2] of message 1
// and checks them against the attachment's digest, reading the literal
// through a small buffer so that the client allocates little.
func fetchBinaryDigest(r *rawConn, want [32]byte) string {
	r.c.SetDeadline(time.Now().Add(3 * time.Minute)) // ten at once, with -race
	if _, err := r.c.Write([]byte("f FETCH 1 (BINARY.SIZE[2] BINARY.PEEK[2])\r\n")); err != nil {
		return err.Error()
	}
	l, err := r.br.ReadString('\n')
	if err != nil {
		return err.Error()
	}
	i := strings.LastIndex(l, "~{")
	var size int
	fmt.Sscanf(l[strings.Index(l, "BINARY.SIZE[2] ")+len("BINARY.SIZE[2] "):], "%d", &size)
	if i < 0 || size == 0 {
		return fmt.Sprintf("FETCH: %q", l)
	}
	n, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(l[i+2:]), "}"))
	h := sha256.New()
	if _, err := io.CopyN(h, r.br, int64(n)); err != nil {
		return err.Error()
	}
	if n != size || !bytes.Equal(h.Sum(nil), want[:]) {
		return fmt.Sprintf("BINARY[2]: %d bytes (BINARY.SIZE %d), not the attachment", n, size)
	}
	br := bufio.NewReader(r.br)
	for {
		l, err := br.ReadString('\n')
		if err != nil {
			return err.Error()
		}
		if strings.HasPrefix(l, "f ") {
			if !strings.HasPrefix(l, "f OK") {
				return l
			}
			return ""
		}
	}
}
