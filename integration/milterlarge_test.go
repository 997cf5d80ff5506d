package integration

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"hash"
	"net"
	"net/smtp"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	gomilter "github.com/d--j/go-milter"
)

// bodyMilter is a milter that reads every body chunk (it hashes the body)
// and, for a replacer, replaces the body of a message whose Subject says
// "replace" with replacement.
type bodyMilter struct {
	gomilter.NoOpMilter
	rec     *bodyRecord
	h       hash.Hash
	n       int64
	replace bool
}

type bodyRecord struct {
	replacement []byte // nil: never replaces
	bodyBytes   atomic.Int64

	mu   sync.Mutex
	sums map[string]int64 // sha256 of each body seen: its size
}

func (m *bodyMilter) Header(name, value string, _ gomilter.Modifier) (*gomilter.Response, error) {
	if strings.EqualFold(name, "Subject") {
		m.replace = strings.Contains(value, "replace")
	}
	return gomilter.RespContinue, nil
}

func (m *bodyMilter) BodyChunk(chunk []byte, _ gomilter.Modifier) (*gomilter.Response, error) {
	if m.h == nil {
		m.h = sha256.New()
	}
	m.h.Write(chunk)
	m.n += int64(len(chunk))
	m.rec.bodyBytes.Add(int64(len(chunk)))
	return gomilter.RespContinue, nil
}

func (m *bodyMilter) EndOfMessage(mod gomilter.Modifier) (*gomilter.Response, error) {
	if m.h == nil {
		m.h = sha256.New()
	}
	m.rec.mu.Lock()
	m.rec.sums[fmt.Sprintf("%x", m.h.Sum(nil))] = m.n
	m.rec.mu.Unlock()
	m.h, m.n = nil, 0
	if m.replace && m.rec.replacement != nil {
		if err := mod.ReplaceBody(bytes.NewReader(m.rec.replacement)); err != nil {
			return nil, err
		}
	}
	m.replace = false
	return gomilter.RespContinue, nil
}

// saw says whether the milter was sent body, whole.
func (r *bodyRecord) saw(body []byte) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	n, ok := r.sums[fmt.Sprintf("%x", sha256.Sum256(body))]
	return ok && n == int64(len(body))
}

// startBodyMilter serves a bodyMilter on a kernel-chosen loopback port.
func startBodyMilter(t testing.TB, replacement []byte) (string, *bodyRecord) {
	t.Helper()
	rec := &bodyRecord{replacement: replacement, sums: map[string]int64{}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := gomilter.NewServer(gomilter.WithMilter(func() gomilter.Milter { return &bodyMilter{rec: rec} }),
		gomilter.WithActions(gomilter.AllClientSupportedActionMasks))
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String(), rec
}

// numberedLines is about n octets of whole numbered lines ending in nl.
func numberedLines(n int, nl string) []byte {
	var b bytes.Buffer
	for i := 0; b.Len() < n; i++ {
		fmt.Fprintf(&b, "line %08d of a large body%s", i, nl)
	}
	return b.Bytes()
}

// TestMilterLargeMessage: 10 MB messages through two milters on port 25
// (the server spools them), the first replacing the body of one with 10 MB
// of LF lines: each milter sees the whole body it should (the second the
// replacement, with CRLF), and the maildir holds exactly that body.
func TestMilterLargeMessage(t *testing.T) {
	const size = 10_000_000
	replacement := numberedLines(size, "\n")
	replacer, first := startBodyMilter(t, replacement)
	reader, second := startBodyMilter(t, nil)
	s := startServer(t, withTopTOML("message_size_limit = 12000000\n"),
		withTOML(milterTOML(replacer, quoteList("smtp"), "tempfail")+milterTOML(reader, quoteList("smtp"), "tempfail")))
	body := numberedLines(size, "\r\n")
	crlfReplacement := bytes.ReplaceAll(replacement, []byte("\n"), []byte("\r\n"))
	for _, tc := range []struct {
		subject          string
		sawFirst, stored []byte
	}{
		{"large read", body, body},
		{"large replace", body, crlfReplacement},
	} {
		t.Run(tc.subject, func(t *testing.T) {
			msg := append([]byte("From: <big@example.net>\r\nSubject: "+tc.subject+"\r\n\r\n"), body...)
			if err := sendPlain(s.SMTP, "big@example.net", "test0@hosted-domain.com", msg); err != nil {
				t.Fatal(err)
			}
			if !first.saw(tc.sawFirst) {
				t.Error("the first milter was not sent the body whole")
			}
			if !second.saw(tc.stored) {
				t.Error("the second milter was not sent the body the first left")
			}
			// The maildir holds LF line ends, as Dovecot's does.
			stored := []byte(findMessage(t, s, "xomail", "new", "Subject: "+tc.subject+"\n"))
			_, got, _ := bytes.Cut(stored, []byte("\n\n"))
			if want := bytes.ReplaceAll(tc.stored, []byte("\r\n"), []byte("\n")); !bytes.Equal(got, want) {
				t.Errorf("stored body of %d octets, want %d", len(got), len(want))
			}
		})
	}
	if !waitLog(s, `msg="body replaced by milter"`) || !regexp.MustCompile(`msg="body replaced by milter".* spooled=true`).MatchString(s.logs()) {
		t.Errorf("no log of a spooled replaced body:\n%s", lastLines(s.logs(), 20))
	}
	// Every spool file is closed once its message is stored: the
	// received message's and the replaced body's (they have no name, so
	// an open descriptor is all there is of them).
	if open := incomingFDs(s); len(open) != 0 {
		t.Errorf("spool files still open: %v", open)
	}
}

// sendPlain sends one message without STARTTLS (net/smtp's SendMail
// would want the test CA).
func sendPlain(addr, from, to string, msg []byte) error {
	c, err := smtp.Dial(addr)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.Hello("big.example.net"); err != nil {
		return err
	}
	if err := c.Mail(from); err != nil {
		return err
	}
	if err := c.Rcpt(to); err != nil {
		return err
	}
	w, err := c.Data()
	if err != nil {
		return err
	}
	if _, err := w.Write(msg); err != nil {
		return err
	}
	if err := w.Close(); err != nil {
		return err
	}
	return c.Quit()
}

func lastLines(s string, n int) string {
	l := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(l[max(0, len(l)-n):], "\n")
}

// incomingFDs lists the server's open descriptors of files in its SMTP
// spool directory.
func incomingFDs(s *server) []string {
	dir := filepath.Join(s.dir, "queue", "incoming")
	fds, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", s.cmd.Process.Pid))
	var out []string
	for _, fd := range fds {
		l, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", s.cmd.Process.Pid, fd.Name()))
		if err == nil && strings.HasPrefix(l, dir+"/") {
			out = append(out, l)
		}
	}
	return out
}
