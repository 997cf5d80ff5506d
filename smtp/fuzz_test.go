package smtp

import (
	"bytes"
	"io"
	"testing"
	"time"
)

// FuzzSession feeds arbitrary client input after a valid envelope to a real
// server. Whatever arrives, the server must not crash or hang, and every
// message it stores must be clean text (CRLF only, no NUL) with a
// well-formed Received header.
func FuzzSession(f *testing.F) {
	for _, s := range []string{
		"DATA\r\nSubject: x\r\n\r\nhi\r\n.\r\n",
		"DATA\r\nhi\n.\nMAIL FROM:<e@x.y>\r\nRCPT TO:<bob@mailbox.example>\r\nDATA\r\nz\r\n.\r\n",
		"BDAT 4 LAST\r\nab\r\n",
		"BDAT 2\r\nabBDAT 0 LAST\r\nRSET\r\n",
		"RCPT TO:<x%y@mailbox.example>\r\nDATA\r\n.\r\n",
		"DATA\r\n\x00\r\n.\r\nQUIT\r\n",
		"AUTH PLAIN\r\n*\r\nDATA\r\n..\r\n.\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		e := newEnv(t, Inbound, func(o *Options) {
			o.ReadTimeout = 500 * time.Millisecond
			o.MaxMessageBytes = 1 << 16
		})
		c := e.dialRaw(t)
		c.cmd("EHLO fuzz.example", "250 ")
		c.cmd("MAIL FROM:<s@foreign.example>", "250 ")
		c.cmd("RCPT TO:<alice@mailbox.example>", "250 ")
		go func() {
			c.conn.Write(in)
			c.conn.Write([]byte("\r\n.\r\nQUIT\r\n"))
		}()
		c.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.Copy(io.Discard, c.conn); err != nil && !isReset(err) {
			t.Fatalf("server did not finish the session: %v", err)
		}
		for _, d := range e.deliv.all() {
			if err := checkText(d.body); err != nil {
				t.Fatalf("stored body: %v: %q", err, d.body)
			}
			// Through the queue (two local copies), the trace fields are the
			// start of what was queued.
			h := d.msg.Header
			if len(h) == 0 {
				h = d.body
			} else if !bytes.HasSuffix(h, []byte("\r\n")) || bytes.Contains(h, []byte("\r\n\r\n")) {
				t.Fatalf("bad trace fields: %q", h)
			}
			if !bytes.HasPrefix(h, []byte("Received: from fuzz.example (")) || checkText(h) != nil {
				t.Fatalf("bad Received: %q", h)
			}
		}
	})
}

// checkText is what every stored message must be: CRLF line endings only,
// no NUL.
func checkText(b []byte) error {
	var f textFilter
	f.reject = true
	if err := f.write(b, func([]byte) error { return nil }); err != nil {
		return err
	}
	return f.end()
}

// FuzzScanHeader: any bytes as a header section, never a panic, and the
// addresses it keeps are bounded.
func FuzzScanHeader(f *testing.F) {
	f.Add([]byte("Received: from a (b [192.0.2.1])\r\n\tby mx.test (courriel) with ESMTP id X\r\n\tfor <a@b>;\r\n\td\r\n\r\nbody"))
	f.Add([]byte("Delivered-To: <x@y>\nName \n :\n\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		h := scanHeader(bytes.NewReader(b), "mx.test")
		if len(h.seen) > maxLoopAddrs {
			t.Fatalf("%d addresses kept", len(h.seen))
		}
	})
}
