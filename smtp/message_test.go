package smtp

import (
	"bufio"
	"bytes"
	"courriel/delivery/queue"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"

	"courriel/delivery"
)

// TestTextFilter: the filter gives the same result however the input is
// cut into pieces (every split point of each input is tried).
func TestTextFilter(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		reject bool
		in     string
		out    string
		err    error
	}{
		{"CRLF", false, "a\r\nb\r\n", "a\r\nb\r\n", nil},
		{"bare LF normalized", false, "a\nb\n", "a\r\nb\r\n", nil},
		{"LF LF", false, "\n\n", "\r\n\r\n", nil},
		{"CR LF LF", false, "a\r\n\nb", "a\r\n\r\nb", nil},
		{"bare LF refused", true, "a\r\nb\nc", "", errBareNewline},
		{"bare CR", false, "a\rb", "", errBareNewline},
		{"CR CR LF", false, "a\r\r\n", "", errBareNewline},
		{"CR at the end", false, "a\r", "", errBareNewline},
		{"NUL", false, "a\x00b\r\n", "", errNUL},
		{"no final CRLF", false, "abc", "abc", nil},
		{"empty", false, "", "", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for cut := 0; cut <= len(tc.in); cut++ {
				f := textFilter{reject: tc.reject}
				var out bytes.Buffer
				w := func(p []byte) error { out.Write(p); return nil }
				err := f.write([]byte(tc.in[:cut]), w)
				if err == nil {
					err = f.write([]byte(tc.in[cut:]), w)
				}
				if err == nil {
					err = f.end()
				}
				if !errors.Is(err, tc.err) || (err == nil) != (tc.err == nil) {
					t.Fatalf("cut %d: %v, want %v", cut, err, tc.err)
				}
				if err == nil && out.String() != tc.out {
					t.Fatalf("cut %d: %q, want %q", cut, out.String(), tc.out)
				}
			}
		})
	}
}

// TestSpoolBuf: in memory up to the threshold, then in a file that has no
// name in the spool directory; never over the limit.
func TestSpoolBuf(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		writes  []int
		spooled bool
		err     error
	}{
		{"small", []int{10, 20}, false, nil},
		{"exactly the threshold", []int{50, 50}, false, nil},
		{"one over the threshold", []int{100, 1}, true, nil},
		{"one big write", []int{500}, true, nil},
		{"exactly the limit", []int{600, 400}, true, nil},
		{"over the limit", []int{600, 401}, true, errTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			b := newSpoolBuf(dir, 100, 1000)
			defer b.close()
			var want []byte
			var err error
			for i, n := range tc.writes {
				p := bytes.Repeat([]byte{byte('a' + i)}, n)
				if err = b.write(p); err != nil {
					break
				}
				want = append(want, p...)
			}
			if !errors.Is(err, tc.err) || (err == nil) != (tc.err == nil) {
				t.Fatalf("write: %v, want %v", err, tc.err)
			}
			if b.spooled() != tc.spooled {
				t.Errorf("spooled %v, want %v", b.spooled(), tc.spooled)
			}
			if got := contentBytes(b.content()); !bytes.Equal(got, want) {
				t.Errorf("content %d bytes, want %d", len(got), len(want))
			}
			if ents, _ := os.ReadDir(dir); len(ents) != 0 {
				t.Errorf("the spool directory shows %d names", len(ents))
			}
		})
	}
}

func TestJoined(t *testing.T) {
	t.Parallel()
	j := joined{[]byte("Head: 1\r\n"), strings.NewReader("Subject: x\r\n\r\nbody\r\n")}
	want := "Head: 1\r\nSubject: x\r\n\r\nbody\r\n"
	if j.Size() != int64(len(want)) {
		t.Fatalf("size %d", j.Size())
	}
	for off := 0; off <= len(want); off++ {
		for n := 0; n <= len(want)-off; n++ {
			p := make([]byte, n)
			k, err := j.ReadAt(p, int64(off))
			if k != n || (err != nil && !errors.Is(err, io.EOF)) || string(p) != want[off:off+n] {
				t.Fatalf("ReadAt(%d, %d) = %d, %v, %q", n, off, k, err, p[:k])
			}
		}
	}
}

// TestScanHeader: what the policy reads from a header section.
func TestScanHeader(t *testing.T) {
	t.Parallel()
	own := "Received: from a.example (unknown [192.0.2.1])\r\n\tby mx.test (courriel) with ESMTP id ABC\r\n\tfor <Loop@Hosted.example>;\r\n\tWed, 25 Nov 2026 10:00:00 +0000 (UTC)\r\n"
	other := "Received: from b by other.example (courriel) with ESMTP id X\r\n\tfor <x@hosted.example>; date\r\n"
	for _, tc := range []struct {
		name     string
		msg      string
		received int
		msgID    bool
		date     bool
		from     bool
		seen     []string
		notSeen  []string
	}{
		{"plain", "From: a@b\r\nDate: x\r\nMessage-ID: <1@b>\r\n\r\nbody\r\n", 0, true, true, true, nil, nil},
		{"nothing", "Subject: x\r\n\r\nFrom: in the body\r\n", 0, false, false, false, nil, nil},
		{"case and spacing", "message-id : <1@b>\r\nDATE:x\r\nfrom:\r\n a@b\r\n\r\n", 0, true, true, true, nil, nil},
		{"no body", "Received: x\r\nReceived: y", 2, false, false, false, nil, nil},
		{"LF only", "Received: x\nDelivered-To: a@b.example\n\nReceived: in body\n", 1, false, false, false, []string{"a@b.example"}, nil},
		{"own Received for", own + "\r\nb\r\n", 1, false, false, false, []string{"loop@hosted.example"}, nil},
		{"another host's Received", other + "\r\n", 1, false, false, false, nil, []string{"x@hosted.example"}},
		{"Delivered-To", "Delivered-To: <Fwd@Hosted.example>\r\nDelivered-To: b@c\r\n\r\n", 0, false, false, false, []string{"fwd@hosted.example", "b@c"}, nil},
		{"body without a blank line", "Received: x\r\nnot a field\r\nReceived: y\r\nDate: z\r\n", 1, false, false, false, nil, nil},
		{"name and spaces only", "Date: z\r\nName   \r\nFrom: a\r\n\r\n", 0, false, true, false, nil, nil},
		{"continuation first", " Received: x\r\nDate: z\r\n\r\n", 0, false, false, false, nil, nil},
		{"51 Received", strings.Repeat("Received: hop\r\n", 51) + "\r\n", 51, false, false, false, nil, nil},
		{"long folded field", "Received: " + strings.Repeat("x", 10000) + "\r\n\t" + strings.Repeat("y ", 5000) + "\r\nDate: d\r\n\r\n", 1, false, true, false, nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := scanHeader(strings.NewReader(tc.msg), "mx.test")
			if h.received != tc.received || h.messageID != tc.msgID || h.date != tc.date || h.from != tc.from {
				t.Errorf("got %+v", h)
			}
			for _, a := range tc.seen {
				if !h.seen[a] {
					t.Errorf("%s not seen: %v", a, h.seen)
				}
			}
			for _, a := range tc.notSeen {
				if h.seen[a] {
					t.Errorf("%s seen: %v", a, h.seen)
				}
			}
		})
	}
}

// TestHopsAndLoops: more than hopLimit Received: fields, or a message that
// already reached a recipient here, gets 554 5.4.6 and nothing is stored.
func TestHopsAndLoops(t *testing.T) {
	t.Parallel()
	hops := func(n int) string { return strings.Repeat("Received: from x by y; date\r\n", n) }
	for _, tc := range []struct {
		name  string
		rcpt  string
		head  string
		reply string
	}{
		{"50 hops", "alice@mailbox.example", hops(50), "250 "},
		{"51 hops", "alice@mailbox.example", hops(51), "554 5.4.6"},
		{"Delivered-To of the recipient", "fwd@hosted.example", "Delivered-To: fwd@hosted.example\r\n", "554 5.4.6"},
		{"Delivered-To of another", "fwd@hosted.example", "Delivered-To: other@hosted.example\r\n", "250 "},
		{"our Received for the recipient", "ALICE@mailbox.example",
			"Received: from a (b [192.0.2.1])\r\n\tby mx.test (courriel) with ESMTP id X\r\n\tfor <alice@mailbox.example>;\r\n\tdate\r\n", "554 5.4.6"},
		{"Delivered-To of a relayed recipient", "someone@foreign.example", "Delivered-To: someone@foreign.example\r\n", "250 "},
		{"our Received for another", "bob@mailbox.example",
			"Received: from a (b [192.0.2.1])\r\n\tby mx.test (courriel) with ESMTP id X\r\n\tfor <alice@mailbox.example>;\r\n\tdate\r\n", "250 "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, Inbound, func(o *Options) { o.MyNetworks = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")} })
			c := e.dialRaw(t)
			c.cmd("EHLO client.example", "250 ")
			c.cmd("MAIL FROM:<s@foreign.example>", "250 ")
			c.cmd("RCPT TO:<"+tc.rcpt+">", "250 ")
			c.cmd("DATA", "354 ")
			c.cmd(tc.head+"Subject: x\r\n\r\nbody\r\n.", tc.reply)
			stored := len(e.deliv.all()) + len(e.queue.all())
			if (stored > 0) != (tc.reply == "250 ") {
				t.Errorf("%d stored or queued after %s", stored, tc.reply)
			}
		})
	}
}

// A loop for one recipient bounces that one (a failed recipient in the
// queue, which sends the DSN) while the others get the message, as Postfix
// does: refusing the whole message lost bob's copy for alice's loop.
func TestLoopForOneRecipient(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Inbound, nil)
	c := e.dialRaw(t)
	c.cmd("EHLO client.example", "250 ")
	c.cmd("MAIL FROM:<s@foreign.example>", "250 ")
	c.cmd("RCPT TO:<alice@mailbox.example>", "250 ")
	c.cmd("RCPT TO:<bob@mailbox.example>", "250 ")
	c.cmd("RCPT TO:<fwd@hosted.example>", "250 ")
	c.cmd("DATA", "354 ")
	c.cmd("Delivered-To: fwd@hosted.example\r\nDelivered-To: Alice@mailbox.example\r\nSubject: x\r\n\r\nbody\r\n.", "250 ")
	q := e.queue.all()
	if len(q) != 1 {
		t.Fatalf("%d messages queued", len(q))
	}
	if len(q[0].local) != 1 || q[0].local[0].Address != "bob@mailbox.example" || len(q[0].rcpts) != 0 {
		t.Errorf("copies queued: local %v remote %v, want bob's only", q[0].local, q[0].rcpts)
	}
	var failed []string
	for _, r := range q[0].env.Recipients {
		if r.State == queue.StateFailed && r.Status == "5.4.6" {
			failed = append(failed, r.Addr)
		}
	}
	if strings.Join(failed, ",") != "alice@mailbox.example,fwd@hosted.example" {
		t.Errorf("bounced: %v, want alice and fwd", failed)
	}
	if d := e.deliv.copies(); d["bob@mailbox.example"] != 1 || d["alice@mailbox.example"] != 0 {
		t.Errorf("stored copies: %v", d)
	}
}

// A copy that a looping RCPT and another RCPT both reach stays for the
// other: team (alice, bob, carol outside) loops, bob was named too, so
// bob gets the message, addressed as bob, while team bounces and alice's
// and carol's copies, which only team reached, go. The order of the RCPTs
// does not matter.
func TestLoopKeepsCopiesOthersReach(t *testing.T) {
	t.Parallel()
	for _, first := range []string{"team@hosted.example", "bob@mailbox.example"} {
		t.Run(first, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, Inbound, nil)
			c := e.dialRaw(t)
			c.cmd("EHLO client.example", "250 ")
			c.cmd("MAIL FROM:<s@foreign.example>", "250 ")
			for _, r := range []string{first, map[string]string{"team@hosted.example": "bob@mailbox.example", "bob@mailbox.example": "team@hosted.example"}[first]} {
				c.cmd("RCPT TO:<"+r+">", "250 ")
			}
			c.cmd("DATA", "354 ")
			c.cmd("Delivered-To: team@hosted.example\r\nSubject: x\r\n\r\nbody\r\n.", "250 ")
			q := e.queue.all()
			if len(q) != 1 {
				t.Fatalf("%d messages queued", len(q))
			}
			if len(q[0].local) != 1 || q[0].local[0].Address != "bob@mailbox.example" || q[0].local[0].OrigTo != "bob@mailbox.example" || len(q[0].rcpts) != 0 {
				t.Errorf("copies queued: local %+v remote %v, want bob's only, as bob", q[0].local, q[0].rcpts)
			}
			var failed []string
			for _, r := range q[0].env.Recipients {
				if r.State == queue.StateFailed && r.Status == "5.4.6" {
					failed = append(failed, r.Addr)
				}
			}
			if strings.Join(failed, ",") != "team@hosted.example" {
				t.Errorf("bounced: %v, want team", failed)
			}
		})
	}
}

// TestForwardTrace: a recipient of ours whose copy leaves gets a
// Delivered-To: line, on every listener, so the copy is known when it
// comes back; a local one and a relayed foreign one do not. The line goes
// on the copies that leave only: alice, here, must not learn of the
// forward (a Bcc, maybe), as Postfix adds it to the forwarded copy alone.
func TestForwardTrace(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Inbound, nil)
	c := e.dialRaw(t)
	c.cmd("EHLO client.example", "250 ")
	c.cmd("MAIL FROM:<s@foreign.example>", "250 ")
	c.cmd("RCPT TO:<fwd@hosted.example>", "250 ")
	c.cmd("RCPT TO:<alice@mailbox.example>", "250 ")
	c.cmd("RCPT TO:<FWD@hosted.example>", "250 ")
	c.cmd("DATA", "354 ")
	c.cmd("Subject: x\r\n\r\nbody\r\n.", "250 ")
	q := e.queue.all()
	if len(q) != 1 {
		t.Fatalf("queued %d", len(q))
	}
	if head, _, _ := strings.Cut(string(q[0].data), "\r\n\r\n"); strings.Contains(strings.ToLower(head), "delivered-to:") {
		t.Errorf("the copies stored here carry a forward's trace:\n%s", head)
	}
	if q[0].env.RemoteHeader != "Delivered-To: fwd@hosted.example\r\n" {
		t.Errorf("trace of the copies that leave: %q", q[0].env.RemoteHeader)
	}
	// It comes back: refused.
	sent := q[0].env.RemoteHeader + string(q[0].data)
	c.cmd("MAIL FROM:<s@foreign.example>", "250 ")
	c.cmd("RCPT TO:<fwd@hosted.example>", "250 ")
	c.cmd("DATA", "354 ")
	c.cmd("Received: from outside by elsewhere; date\r\n"+strings.TrimSuffix(sent, "\r\n")+"\r\n.", "554 5.4.6")
}

// TestSubmissionAddsFields: from an authenticated client (587, 465, port
// 25 after AUTH) a message without Message-ID, Date or From gets them
// (From from the envelope sender the login owns); fields the client wrote
// are left alone; port 25 adds nothing for a client that did not log in.
func TestSubmissionAddsFields(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		kind    Kind
		msg     string
		added   []string
		notAdds []string
		login   bool // on port 25
	}{
		{"bare message", Submission, "Subject: x\r\n\r\nb\r\n",
			[]string{"Message-ID: <20261125100000.", "@mx.test>\r\n", "Date: Wed, 25 Nov 2026 10:00:00 +0000 (UTC)\r\n", "From: <alice@mailbox.example>\r\n"}, nil, false},
		{"complete message", Submission, "From: A <alice@mailbox.example>\r\nDate: x\r\nMessage-Id: <a@b>\r\n\r\nb\r\n",
			nil, []string{"Message-ID:", "Date:", "From:"}, false},
		{"only From missing", Submissions, "Date: x\r\nMessage-ID: <a@b>\r\n\r\nb\r\n",
			[]string{"From: <alice@mailbox.example>\r\n"}, []string{"Message-ID:", "Date:"}, false},
		{"port 25", Inbound, "Subject: x\r\n\r\nb\r\n", nil, []string{"Message-ID:", "Date:", "From:"}, false},
		{"port 25 after AUTH", Inbound, "Subject: x\r\n\r\nb\r\n",
			[]string{"Message-ID: <20261125100000.", "@mx.test>\r\n", "Date: Wed, 25 Nov 2026 10:00:00 +0000 (UTC)\r\n", "From: <alice@mailbox.example>\r\n"}, nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, tc.kind, nil)
			c := e.dialRaw(t)
			c.cmd("EHLO client.example", "250 ")
			if tc.kind == Submission || tc.login {
				c.startTLS(e.ctls)
				c.cmd("EHLO client.example", "250 ")
			}
			from := "s@foreign.example"
			if tc.kind != Inbound || tc.login {
				c.cmd("AUTH PLAIN "+plainAuth("alice", "secret"), "235 ")
				from = "alice@mailbox.example"
			}
			c.cmd("MAIL FROM:<"+from+">", "250 ")
			c.cmd("RCPT TO:<bob@mailbox.example>", "250 ")
			c.cmd("DATA", "354 ")
			c.cmd(tc.msg+".", "250 ")
			d := e.deliv.all()
			if len(d) != 1 {
				t.Fatalf("stored %d", len(d))
			}
			h := string(d[0].msg.Header)
			for _, w := range tc.added {
				if !strings.Contains(h, w) {
					t.Errorf("no %q in the added header:\n%s", w, h)
				}
			}
			for _, w := range tc.notAdds {
				if strings.Contains(h, w) {
					t.Errorf("%q added:\n%s", w, h)
				}
			}
			if string(d[0].body) != tc.msg {
				t.Errorf("the message itself changed: %q", d[0].body)
			}
		})
	}
}

// TestPostmasterWithoutDomain: RCPT TO:<postmaster> in any case is the
// postmaster of the host name's domain (RFC 5321 §4.5.1), and any bare
// local part is qualified with it.
func TestPostmasterWithoutDomain(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var asked []string
	e := newEnv(t, Inbound, nil)
	e.dir.resolveHook = func(addr string) error {
		mu.Lock()
		defer mu.Unlock()
		asked = append(asked, addr)
		return nil
	}
	c := e.dialRaw(t)
	c.cmd("EHLO client.example", "250 ")
	c.cmd("MAIL FROM:<s@foreign.example>", "250 ")
	for _, rcpt := range []string{"<postmaster>", "<PostMaster>"} {
		c.cmd("RCPT TO:"+rcpt, "550 5.1.1") // the fake directory has no postmaster
	}
	// Any bare local part is qualified with the host name, as Postfix
	// appends $myorigin; what is no local part is still refused.
	c.cmd("RCPT TO:<alice>", "550 5.1.1")
	c.cmd("RCPT TO:<al ice>", "501 ")
	c.cmd("RCPT TO:<alice..x>", "501 ")
	mu.Lock()
	defer mu.Unlock()
	if fmt.Sprint(asked) != "[postmaster@mx.test postmaster@mx.test alice@mx.test]" {
		t.Errorf("asked the directory for %v", asked)
	}
}

// TestConnLimitTotal: past MaxConns, a new connection to the listener gets
// 421 4.7.0 whatever its address; one slot freed lets the next one in.
func TestConnLimitTotal(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Inbound, func(o *Options) { o.MaxConns = 2 })
	a := e.dialRaw(t)
	b := e.dialRawFrom(t, "127.0.0.2")
	c := e.dialRawNoGreetFrom(t, "127.0.0.3")
	if r := c.reply(); !strings.HasPrefix(r, "421 4.7.0 mx.test Too many connections, try again later") {
		t.Fatalf("third connection: %q", r)
	}
	if !c.closed() {
		t.Fatal("third connection left open")
	}
	a.cmd("QUIT", "221 ")
	a.closed()
	waitFor(t, "the closed connection's slot to be freed", slotFreed, func() bool {
		return strings.HasPrefix(e.dialRawNoGreetFrom(t, "127.0.0.3").reply(), "220 ")
	})
	b.cmd("NOOP", "250 ")
}

// TestScanHeaderAllocationsDoNotGrowWithFields: the fields a message has
// (a handful each) are looked at without a string each.
func TestScanHeaderAllocationsDoNotGrowWithFields(t *testing.T) {
	allocs := func(fields int) float64 {
		var b strings.Builder
		for i := range fields {
			fmt.Fprintf(&b, "X-Field-%d: some value\r\n", i)
		}
		b.WriteString("Subject: s\r\n\r\nbody\r\n")
		body := delivery.MemContent([]byte(b.String()))
		br := bufio.NewReaderSize(nil, headerBuffer)
		return testing.AllocsPerRun(50, func() { scanHeaderWith(body, "mx.test", br) })
	}
	if few, many := allocs(2), allocs(40); many > few {
		t.Errorf("%v allocations for 40 fields, %v for 2", many, few)
	}
}

// A message without the empty line between header and body gets one where
// the body starts (Postfix's cleanup does the same): otherwise what follows
// is read as part of the last field, or signing fails on a header with no
// end (a header-only submission got 451 on every try). The fields Postfix
// drops by default go.
func TestHeaderEdits(t *testing.T) {
	for _, c := range []struct{ name, in, want string }{
		{"complete", "Subject: a\r\n\r\nbody\r\n", "Subject: a\r\n\r\nbody\r\n"},
		{"header only", "Subject: only\r\n", "Subject: only\r\n\r\n"},
		{"folded header only", "Subject: a\r\n b\r\n", "Subject: a\r\n b\r\n\r\n"},
		{"no header", "hello, no header\r\n", "\r\nhello, no header\r\n"},
		{"leading space", " indented first line\r\n", "\r\n indented first line\r\n"},
		{"body without separator", "Subject: a\r\nnot a field\r\nmore\r\n", "Subject: a\r\n\r\nnot a field\r\nmore\r\n"},
		{"empty", "", "\r\n"},
		// Postfix's message_drop_headers: bcc, content-length, resent-bcc,
		// return-path, folded lines included, whatever the case.
		{"bcc", "To: a@x\r\nBcc: secret@y,\r\n other@z\r\nSubject: s\r\n\r\nBcc: in the body\r\n", "To: a@x\r\nSubject: s\r\n\r\nBcc: in the body\r\n"},
		{"all four", "return-path: <f@x>\r\nCONTENT-LENGTH: 5\r\nSubject: s\r\nResent-Bcc: r@y\r\nbcc:\r\n\r\nx\r\n", "Subject: s\r\n\r\nx\r\n"},
		{"last field, no body", "Subject: s\r\nBcc: b@y\r\n", "Subject: s\r\n\r\n"},
		{"dropped, then no separator", "Bcc: b@y\r\nbody line\r\n", "\r\nbody line\r\n"},
		{"look-alikes stay", "Bccx: 1\r\nX-Bcc: 2\r\n\r\n", "Bccx: 1\r\nX-Bcc: 2\r\n\r\n"},
	} {
		hi := scanHeader(delivery.MemContent(c.in), "mx.test")
		body := edit(delivery.MemContent(c.in), hi.drops, hi.bodyAt, crlf)
		for _, chunk := range []int{1, 2, 3, 7, 64} { // every split of the insert
			var got []byte
			buf := make([]byte, chunk)
			for off := int64(0); ; {
				n, err := body.ReadAt(buf, off)
				got = append(got, buf[:n]...)
				off += int64(n)
				if err != nil || n == 0 {
					break
				}
			}
			if string(got) != c.want || body.Size() != int64(len(c.want)) {
				t.Errorf("%s, reads of %d: %q (size %d), want %q", c.name, chunk, got, body.Size(), c.want)
			}
		}
	}
}
