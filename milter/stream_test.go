package milter

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"hash"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	gomilter "github.com/d--j/go-milter"
)

// bodyMilter hashes the body it is sent and, when replacement is set,
// replaces it at the end of the message.
type bodyMilter struct {
	gomilter.NoOpMilter
	rec  *bodyRecord
	h    hash.Hash
	n    int64
	maxc int
}

type bodyRecord struct {
	replacement func() io.Reader // nil: the body is left alone

	mu       sync.Mutex
	sum      [sha256.Size]byte // of the last body seen
	size     int64
	maxChunk int
}

func (m *bodyMilter) BodyChunk(chunk []byte, _ gomilter.Modifier) (*gomilter.Response, error) {
	if m.h == nil {
		m.h = sha256.New()
	}
	m.h.Write(chunk)
	m.n += int64(len(chunk))
	m.maxc = max(m.maxc, len(chunk))
	return gomilter.RespContinue, nil
}

func (m *bodyMilter) EndOfMessage(mod gomilter.Modifier) (*gomilter.Response, error) {
	if m.h == nil {
		m.h = sha256.New()
	}
	m.rec.mu.Lock()
	copy(m.rec.sum[:], m.h.Sum(nil))
	m.rec.size, m.rec.maxChunk = m.n, m.maxc
	m.rec.mu.Unlock()
	m.h, m.n, m.maxc = nil, 0, 0
	if m.rec.replacement != nil {
		if err := mod.ReplaceBody(m.rec.replacement()); err != nil {
			return nil, err
		}
	}
	return gomilter.RespContinue, nil
}

func serveBodyMilter(t *testing.T, replacement func() io.Reader) (string, *bodyRecord) {
	t.Helper()
	rec := &bodyRecord{replacement: replacement}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := gomilter.NewServer(gomilter.WithMilter(func() gomilter.Milter { return &bodyMilter{rec: rec} }),
		gomilter.WithActions(gomilter.AllClientSupportedActionMasks))
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return "inet:" + ln.Addr().String(), rec
}

// lines is a body of n octets of numbered lines ending in nl.
func lines(n int, nl string) []byte {
	var b bytes.Buffer
	for i := 0; b.Len() < n; i++ {
		fmt.Fprintf(&b, "line %08d of a large body%s", i, nl)
	}
	return b.Bytes()[:n]
}

// A 10 MB message in a file goes to a milter that reads its body and to a
// second one after it that replaces it with 10 MB of LF lines, then to a
// third that reads the replacement: each sees the whole body in chunks of
// at most 64 KiB, the replacement is in a spool file with CRLF line ends,
// and the Result's body is that file.
func TestLargeMessageStreams(t *testing.T) {
	const size = 10_000_000
	header := "Received: from x\r\nSubject: large\r\n\r\n"
	body := lines(size-len(header), "\r\n")
	spoolDir := t.TempDir()
	msgFile, err := os.Create(filepath.Join(t.TempDir(), "msg"))
	if err != nil {
		t.Fatal(err)
	}
	defer msgFile.Close()
	if _, err := msgFile.Write(append([]byte(header), body...)); err != nil {
		t.Fatal(err)
	}
	newBody := lines(size, "\n")
	wantBody := bytes.ReplaceAll(newBody, []byte("\n"), []byte("\r\n"))

	reader, seenFirst := serveBodyMilter(t, nil)
	replacer, _ := serveBodyMilter(t, func() io.Reader { return bytes.NewReader(newBody) })
	after, seenAfter := serveBodyMilter(t, nil)
	c, err := NewChain([]Config{{Address: reader}, {Address: replacer}, {Address: after}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	s := c.NewSession(testInfo, nil)
	defer s.Close()
	s.Mail("a@example.net", "Q")
	s.Rcpt("b@example.org")
	var spooled []string
	sp := Spool{Create: func() (*os.File, error) {
		f, err := os.CreateTemp(spoolDir, "body-")
		if err == nil {
			spooled = append(spooled, f.Name())
		}
		return f, err
	}}
	res := s.Message(io.NewSectionReader(msgFile, 0, size), sp)
	defer res.Close()
	if res.Reply != nil || !res.Modified || !res.BodyReplaced || !res.BodySpooled {
		t.Fatalf("Result %+v", res)
	}
	for name, tc := range map[string]struct {
		rec  *bodyRecord
		want []byte
	}{"first milter": {seenFirst, body}, "milter after the replacement": {seenAfter, wantBody}} {
		tc.rec.mu.Lock()
		if tc.rec.sum != sha256.Sum256(tc.want) || tc.rec.size != int64(len(tc.want)) || tc.rec.maxChunk > int(gomilter.DataSize64K) {
			t.Errorf("%s saw %d octets in chunks of up to %d, want %d in chunks of up to %d", name, tc.rec.size, tc.rec.maxChunk, len(tc.want), gomilter.DataSize64K)
		}
		tc.rec.mu.Unlock()
	}
	if string(res.Header) != header {
		t.Errorf("header %q", res.Header)
	}
	if len(spooled) != 1 {
		t.Fatalf("%d spool files, want 1", len(spooled))
	}
	onDisk, err := os.ReadFile(spooled[0])
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(onDisk, wantBody) {
		t.Errorf("spool file: %d octets, want the %d of the replacement with CRLF", len(onDisk), len(wantBody))
	}
	got, err := io.ReadAll(io.NewSectionReader(res.Body, 0, res.Body.Size()))
	if err != nil || !bytes.Equal(got, wantBody) {
		t.Errorf("Result body: %d octets (%v), want %d", len(got), err, len(wantBody))
	}
}

// A replacement larger than Spool.Limit is the milter's failure: its
// default action answers, and nothing is left in the spool.
func TestReplacedBodyLimit(t *testing.T) {
	addr, _ := serveBodyMilter(t, func() io.Reader { return strings.NewReader(strings.Repeat("x", 200<<10)) })
	c, err := NewChain([]Config{{Address: addr}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	s := c.NewSession(testInfo, nil)
	defer s.Close()
	s.Mail("a@example.net", "Q")
	s.Rcpt("b@example.org")
	var files []*os.File
	sp := Spool{Limit: 100 << 10, Threshold: 1 << 10, Create: func() (*os.File, error) {
		f, err := os.CreateTemp(t.TempDir(), "body-")
		files = append(files, f)
		return f, err
	}}
	res := s.Message(strings.NewReader("Subject: x\r\n\r\nbody\r\n"), sp)
	defer res.Close()
	if res.Reply == nil || res.Reply.Code != 451 {
		t.Fatalf("Result %+v", res)
	}
	for _, f := range files {
		if _, err := f.Stat(); err == nil {
			t.Error("the spool file of the refused body is still open")
		}
	}
}

// A spool that cannot take a replaced body is our failure, not the
// milter's: 451 4.3.0 even with the accept policy.
func TestReplacedBodySpoolFailure(t *testing.T) {
	addr, _ := serveBodyMilter(t, func() io.Reader { return strings.NewReader(strings.Repeat("x", 4<<10)) })
	c, err := NewChain([]Config{{Address: addr, DefaultAction: Accept}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	s := c.NewSession(testInfo, nil)
	defer s.Close()
	s.Mail("a@example.net", "Q")
	s.Rcpt("b@example.org")
	sp := Spool{Threshold: 1 << 10, Create: func() (*os.File, error) { return nil, os.ErrPermission }}
	res := s.Message(strings.NewReader("Subject: x\r\n\r\nbody\r\n"), sp)
	defer res.Close()
	if res.Reply == nil || *res.Reply != (Reply{451, "4.3.0", "Local error in processing"}) {
		t.Fatalf("Result %+v", res)
	}
	// The session goes on with a new connection to the milter.
	if v := s.Mail("a@example.net", "Q2"); v.Reply != nil {
		t.Errorf("next Mail: %v", v.Reply)
	}
}

// The library would allocate any packet up to 512 MiB, and panics on one
// of length 0: packetConn refuses both before it reads them.
func TestPacketBounds(t *testing.T) {
	for _, tc := range []struct {
		name   string
		length uint32
		ok     bool
	}{{"empty", 0, false}, {"too large", maxPacket + 1, false}, {"largest", maxPacket, true}} {
		t.Run(tc.name, func(t *testing.T) {
			a, b := net.Pipe()
			defer a.Close()
			defer b.Close()
			go func() {
				b.Write([]byte{byte(tc.length >> 24), byte(tc.length >> 16), byte(tc.length >> 8), byte(tc.length), 'c'})
				if tc.ok {
					b.Write(make([]byte, tc.length-1))
				}
			}()
			c := &packetConn{Conn: a}
			got, err := io.ReadAll(io.LimitReader(c, int64(tc.length)+4))
			if tc.ok != (err == nil) || (tc.ok && len(got) != int(tc.length)+4) {
				t.Errorf("read %d octets, %v", len(got), err)
			}
		})
	}
}

// A message without a body (or without even a blank line) goes through
// a milter as any other: the library wants a body event before the end.
func TestEmptyBody(t *testing.T) {
	addr, events := serveRecorder(t, nil, func(m gomilter.Modifier) { m.AddHeader("X-Seen", "yes") })
	c, err := NewChain([]Config{{Address: addr}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	s := c.NewSession(testInfo, nil)
	defer s.Close()
	for _, msg := range []string{"Subject: x\r\n\r\n", "Subject: x\r\n", ""} {
		s.Mail("a@example.net", "Q")
		s.Rcpt("b@example.org")
		res := s.Message(strings.NewReader(msg), Spool{})
		if res.Reply != nil || !res.Modified {
			t.Errorf("%q: %+v", msg, res)
			continue
		}
		if !strings.Contains(stored(t, res), "X-Seen: yes\r\n") {
			t.Errorf("%q: stored %q", msg, stored(t, res))
		}
	}
	if n := strings.Count(strings.Join(events(), "\n"), "eom"); n != 3 {
		t.Errorf("%d ends of message, want 3:\n%s", n, strings.Join(events(), "\n"))
	}
}
