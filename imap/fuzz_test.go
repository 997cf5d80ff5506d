package imap

import (
	"bytes"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// syncBuffer is a log sink shared by the server's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// FuzzSession feeds arbitrary command bytes to a logged-in session with a
// selected mailbox: whatever they are, the session must not panic (the
// connection's recover would hide it: the log is checked) and must end.
func FuzzSession(f *testing.F) {
	for _, s := range []string{
		"c FETCH 1:* (FLAGS BODY.PEEK[1.2.HEADER.FIELDS (TO)]<0.10> BINARY[2] ENVELOPE BODYSTRUCTURE)\r\n",
		"c UID SEARCH RETURN (MIN MAX SAVE) OR (FROM x NOT SEEN) UID 1:*,$ HEADER to \"\"\r\n",
		"c STORE 1:* +FLAGS.SILENT (\\Seen $kw)\r\nd EXPUNGE\r\n",
		"c APPEND INBOX (\\Seen) \"01-Jan-2020 00:00:00 +0000\" ~{5+}\r\na\x00b\r\n\r\n",
		"c LIST (SUBSCRIBED RECURSIVEMATCH) \"\" (% *) RETURN (STATUS (MESSAGES SIZE) CHILDREN)\r\n",
		"c IDLE\r\nDONE\r\nd MOVE 1 Trash\r\n",
		"c ID (\"a\" \"b\")\r\nd ENABLE UTF8=ACCEPT IMAP4rev2\r\ne SELECT \"&AOQ-\"\r\n",
	} {
		f.Add([]byte(s))
	}
	var logs syncBuffer
	e := newEnv(f, func(o *Options) {
		o.Logger = slog.New(slog.NewTextHandler(&logs, nil))
		o.MaxUserIPConns = 1 << 20
	})
	writeMaildirMsg(f, e.maildir, "cur", "1.M1P1.fuzz:2,S", "From: a@b\nContent-Type: multipart/mixed; boundary=x\n\n--x\n\none\n--x\nContent-Type: message/rfc822\n\nTo: c@d\n\ntwo\n--x--\n")
	var n atomic.Uint32
	f.Fuzz(func(t *testing.T, data []byte) {
		client, server := net.Pipe()
		// An address of its own per run: failed logins in one input must
		// not get the next ones' LOGIN refused.
		i := n.Add(1)
		ip := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}).String()
		se, err := e.srv.conns.Admit(ip, func() *session { return newSession(e.srv, server, ip, true) })
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan struct{})
		go func() { se.serve(); close(done) }()
		go io.Copy(io.Discard, client)
		client.SetDeadline(time.Now().Add(5 * time.Second))
		client.Write([]byte("a LOGIN alice secret\r\nb SELECT INBOX\r\n"))
		client.Write(data)
		client.Write([]byte("\r\nz LOGOUT\r\n"))
		client.Close()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("session did not end")
		}
		if l := logs.String(); strings.Contains(l, "panic") {
			t.Fatalf("panic in session:\n%s", l)
		}
	})
}
