package smtp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"courriel/delivery"
	"courriel/delivery/queue"
	"courriel/internal/logwriter"
)

// startData opens a transaction for alice and sends DATA.
func startData(t *testing.T, e *env) *raw {
	t.Helper()
	c := e.dialRaw(t)
	c.cmd("EHLO client.example", "250 ")
	c.cmd("MAIL FROM:<sender@foreign.example>", "250 ")
	c.cmd("RCPT TO:<alice@mailbox.example>", "250 ")
	c.cmd("DATA", "354 ")
	return c
}

// message returns a message of exactly n octets (RFC 1870 counting: CRLF
// included, no end-of-data line).
func message(n int) string {
	head := "Subject: size\r\n\r\n"
	var b strings.Builder
	b.WriteString(head)
	for b.Len() < n {
		line := strings.Repeat("x", min(78, n-b.Len()))
		if b.Len()+len(line)+2 > n {
			line = line[:max(0, n-b.Len()-2)]
		}
		b.WriteString(line + "\r\n")
	}
	s := b.String()
	if len(s) != n {
		panic(fmt.Sprintf("message(%d) made %d", n, len(s)))
	}
	return s
}

// TestSizeLimit: SIZE advertises the limit; MAIL SIZE= and DATA/BDAT over it
// get 552 5.3.4; a message of exactly the limit fits, by DATA and by BDAT.
func TestSizeLimit(t *testing.T) {
	t.Parallel()
	const limit = 4000
	e := newEnv(t, Inbound, func(o *Options) { o.MaxMessageBytes = limit })
	c := e.dialRaw(t)
	c.cmd("EHLO client.example", "250 ")
	if !hasLine(c.last, fmt.Sprintf("SIZE %d", limit)) {
		t.Errorf("SIZE not advertised: %q", c.last)
	}
	c.cmd(fmt.Sprintf("MAIL FROM:<s@foreign.example> SIZE=%d", limit+1), "552 5.3.4")
	c.cmd(fmt.Sprintf("MAIL FROM:<s@foreign.example> SIZE=%d", limit), "250 ")
	c.cmd("RSET", "250 ")

	for _, tc := range []struct {
		size   int
		want   string
		closed bool
	}{
		{limit - 1, "250 ", false},
		{limit, "250 ", false},
		{limit + 1, "552 5.3.4", false},
		// The rest is skipped to stay in step, up to as much again as
		// the limit; a client still sending past that is cut off after
		// the 552.
		{2*limit - 100, "552 5.3.4", false},
		{3 * limit, "552 5.3.4", true},
		{100 * limit, "552 5.3.4", true},
	} {
		c := startData(t, e)
		if !tc.closed {
			c.cmd(message(tc.size)+".", tc.want)
			c.cmd("NOOP", "250 ") // the stream is still in step
			continue
		}
		// The server stops reading: the client's write may fail.
		go io.WriteString(c.conn, message(tc.size)+".\r\nNOOP\r\n")
		c.expect(tc.want)
		if !c.closed() {
			t.Errorf("%d octets: the connection goes on after the 552", tc.size)
		}
	}
	// BDAT counts chunks exactly: the limit itself fits.
	for _, tc := range []struct {
		size int
		want string
	}{{limit, "250 "}, {limit + 1, "552 5.3.4"}} {
		c := e.dialRaw(t)
		c.cmd("EHLO client.example", "250 ")
		c.cmd("MAIL FROM:<s@foreign.example>", "250 ")
		c.cmd("RCPT TO:<alice@mailbox.example>", "250 ")
		m := message(tc.size)
		c.send(fmt.Sprintf("BDAT %d\r\n%s", 1000, m[:1000]))
		c.expect("250 ")
		c.send(fmt.Sprintf("BDAT %d LAST\r\n%s", len(m)-1000, m[1000:]))
		c.expect(tc.want)
		c.cmd("NOOP", "250 ")
	}
	// A chunk that would pass the limit is refused at its BDAT, as by
	// Postfix, the first or a later one; the chunks after it are
	// discarded until the LAST, and the stream stays in step.
	for _, first := range []int{limit + 1, 1000} {
		c = e.dialRaw(t)
		c.cmd("EHLO client.example", "250 ")
		c.cmd("MAIL FROM:<s@foreign.example>", "250 ")
		c.cmd("RCPT TO:<alice@mailbox.example>", "250 ")
		if first < limit {
			c.send(fmt.Sprintf("BDAT %d\r\n%s", first, message(first)))
			c.expect("250 ")
		}
		c.send(fmt.Sprintf("BDAT %d\r\n%s", limit+1, message(limit+1)))
		c.expect("552 5.3.4 Chunk exceeds message size limit")
		c.cmd("BDAT 2 LAST\r\n", "551 5.0.0 Discarded 2 bytes after earlier error") // the chunk is the CRLF cmd adds
		c.cmd("NOOP", "250 ")
		c.cmd("MAIL FROM:<s@foreign.example>", "250 ")
	}
	if got := len(e.deliv.all()); got != 3 {
		t.Errorf("%d messages stored, want 3 (limit-1 and limit by DATA, limit by BDAT)", got)
	}
}

// TestBDAT: chunks are joined, checked like DATA, and a chunk that follows
// a refused command is skipped whole, never read as commands (go-smtp
// issue #315).
func TestBDAT(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Inbound, nil)
	c := e.dialRaw(t)
	c.cmd("EHLO client.example", "250 ")
	c.cmd("MAIL FROM:<s@foreign.example>", "250 ")
	c.cmd("RCPT TO:<alice@mailbox.example>", "250 ")
	c.send("BDAT 10\r\nSubject: a")
	c.expect("250 ")
	c.send("BDAT 10 LAST\r\n\r\n\r\nbody\r\n")
	c.expect("250 ")
	if d := e.deliv.all(); len(d) != 1 || string(d[0].body) != "Subject: a\r\n\r\nbody\r\n" {
		t.Fatalf("delivered %+v", d)
	}

	// Pipelined: a refused MAIL, a refused RCPT, then BDAT whose chunk holds
	// commands. The chunk must be skipped.
	inner := "RSET\r\nMAIL FROM:<s@foreign.example>\r\nRCPT TO:<bob@mailbox.example>\r\nDATA\r\n"
	c.send("MAIL FROM:<bad address>\r\nRCPT TO:<bob@mailbox.example>\r\n" +
		fmt.Sprintf("BDAT %d LAST\r\n%s", len(inner), inner) + "NOOP\r\n")
	c.expect("5")
	c.expect("503 ")
	c.expect("503 ")
	c.expect("250 ") // NOOP: nothing in the chunk ran
	// A chunk refused by our checks (bare CR) in the middle of a pipeline.
	c.send("MAIL FROM:<s@foreign.example>\r\nRCPT TO:<bob@mailbox.example>\r\n" +
		"BDAT 6 LAST\r\nab\rcd\r" + "NOOP\r\n")
	c.expect("250 ")
	c.expect("250 ")
	c.expect("554 5.6.0")
	c.expect("250 ")
	if n := e.deliv.copies(); n["bob@mailbox.example"] != 0 {
		t.Fatalf("smuggled delivery: %v", n)
	}
}

// TestSmuggling: only <CRLF>.<CRLF> ends DATA; the other "ends" never start
// a new command. A bare LF that the DATA reader leaves in the message is
// stored as CRLF (normalize) or refused (reject); a bare CR is refused
// either way; "<CRLF>.<CR>x" loses its ".<CR>" to dot-unstuffing
// and stays one clean message. Either way the smuggled transaction for bob
// never happens, and what is stored has CRLF line endings only.
func TestSmuggling(t *testing.T) {
	t.Parallel()
	smuggled := "MAIL FROM:<evil@foreign.example>\r\nRCPT TO:<bob@mailbox.example>\r\nDATA\r\nSmuggled\r\n.\r\n"
	for _, tc := range []struct{ end, normalize, reject string }{
		{"\n.\r\n", "250 ", "554 5.6.0"}, {"\n.\n", "250 ", "554 5.6.0"}, {"\r.\r", "554 5.6.0", "554 5.6.0"},
		{"\r\n.\n", "250 ", "554 5.6.0"}, {"\r.\r\n", "554 5.6.0", "554 5.6.0"}, {"\n.\r", "554 5.6.0", "554 5.6.0"},
		{"\r\n.\r", "250 ", "250 "},
	} {
		for _, mode := range []BareNewline{BareNewlineNormalize, BareNewlineReject} {
			want := tc.normalize
			if mode == BareNewlineReject {
				want = tc.reject
			}
			t.Run(fmt.Sprintf("%q/%d", tc.end, mode), func(t *testing.T) {
				t.Parallel()
				e := newEnv(t, Inbound, func(o *Options) { o.BareNewline = mode })
				c := startData(t, e)
				c.send("Subject: x\r\n\r\nhello" + tc.end + smuggled + "NOOP\r\n")
				c.expect(want) // one reply for the whole thing
				c.expect("250 2.0.0 I have successfully done nothing")
				c.cmd("QUIT", "221 ")
				if n := e.deliv.copies(); n["bob@mailbox.example"] != 0 {
					t.Fatalf("smuggled message delivered: %v", n)
				}
				for _, d := range e.deliv.all() {
					if !strings.Contains(string(d.body), "MAIL FROM:<evil@foreign.example>\r\n") {
						t.Errorf("stored message is not the whole input: %q", d.body)
					}
					if err := checkText(d.body); err != nil {
						t.Errorf("stored message: %v: %q", err, d.body)
					}
				}
			})
		}
	}
}

// TestBareLF: what a bare LF becomes, byte for byte, in each mode; a bare
// CR and a NUL are refused in both.
func TestBareLF(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		mode   BareNewline
		in     string // sent before the end of data
		reply  string
		stored string
	}{
		{"LF lines normalized", BareNewlineNormalize, "Subject: a\n\nline 1\nline 2\n", "250 ", "Subject: a\r\n\r\nline 1\r\nline 2\r\n"},
		{"mixed endings", BareNewlineNormalize, "Subject: a\r\n\nb\r\nc\n", "250 ", "Subject: a\r\n\r\nb\r\nc\r\n"},
		{"CRLF untouched", BareNewlineNormalize, "Subject: a\r\n\r\nb\r\n", "250 ", "Subject: a\r\n\r\nb\r\n"},
		{"LF refused", BareNewlineReject, "Subject: a\n\nb\n", "554 5.6.0", ""},
		{"bare CR refused", BareNewlineNormalize, "Subject: a\r\n\r\nb\rc\r\n", "554 5.6.0", ""},
		{"NUL refused", BareNewlineNormalize, "Subject: a\n\nb\x00c\n", "554 5.6.0", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, Inbound, func(o *Options) { o.BareNewline = tc.mode })
			c := startData(t, e)
			c.send(tc.in + "\r\n.\r\n")
			c.expect(tc.reply)
			d := e.deliv.all()
			if tc.stored == "" {
				if len(d) != 0 {
					t.Fatalf("stored %q", d[0].body)
				}
				return
			}
			// The CRLF before the end of data belongs to the message.
			if len(d) != 1 || string(d[0].body) != tc.stored+"\r\n" {
				t.Fatalf("stored %+v, want %q", d, tc.stored+"\r\n")
			}
		})
	}
}

func TestNULRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Inbound, nil)
	c := startData(t, e)
	c.cmd("Subject: x\r\n\r\na\x00b\r\n.", "554 5.6.0")
	if len(e.deliv.all()) != 0 {
		t.Fatal("delivered")
	}
}

// TestLongLines: a command line over the limit gets 500 5.5.2 and the
// connection closes, without the server holding the line; a 1 MiB line
// inside DATA is text like any other, accepted and stored intact.
func TestLongLines(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Inbound, nil)
	huge := strings.Repeat("a", 1<<20)
	c := e.dialRaw(t)
	go io.WriteString(c.conn, "EHLO "+huge+"\r\n") // the server stops reading
	// The reply may be lost to the RST of a close with unread input.
	if r := c.reply(); r != "" && !strings.HasPrefix(r, "500 5.5.2") {
		t.Errorf("1 MB command line: %q", r)
	}
	if !c.closed() {
		t.Error("open after a 1 MB command line")
	}
	// Just over the limit: the same; just under: a command.
	c = e.dialRaw(t)
	c.cmd("NOOP "+strings.Repeat("b", DefaultMaxLineLength-len("NOOP \r\n")), "250 ")
	c.send("NOOP " + strings.Repeat("b", DefaultMaxLineLength-len("NOOP \r\n")+1) + "\r\n")
	c.expect("500 5.5.2")
	if !c.closed() {
		t.Error("open after a command line one octet over the limit")
	}

	c = startData(t, e)
	msg := "Subject: x\r\n\r\n" + huge + "\r\n.." + huge + "\r\nend\r\n"
	c.cmd(msg+".", "250 ")
	c.cmd("NOOP", "250 ")
	want := strings.Replace(msg, "\r\n..", "\r\n.", 1)
	if d := e.deliv.all(); len(d) != 1 || string(d[0].body) != want {
		t.Fatalf("1 MiB lines not stored intact (%d messages)", len(d))
	}
}

// TestLongTextLines: lines longer than RFC 5321's 1000 octets are accepted
// and stored intact, as Postfix does, by DATA and BDAT, whatever their
// length (TestLongLines has 1 MiB).
func TestLongTextLines(t *testing.T) {
	t.Parallel()
	for _, n := range []int{998, 999, 1001, 4096, 10000, 60000, 70000, 300000} {
		for _, bdat := range []bool{false, true} {
			t.Run(fmt.Sprintf("%d/bdat=%v", n, bdat), func(t *testing.T) {
				t.Parallel()
				e := newEnv(t, Inbound, nil)
				msg := "Subject: x\r\n\r\n" + strings.Repeat("b", n) + "\r\nend\r\n"
				if bdat {
					c := e.dialRaw(t)
					c.cmd("EHLO client.example", "250 ")
					c.cmd("MAIL FROM:<s@foreign.example>", "250 ")
					c.cmd("RCPT TO:<alice@mailbox.example>", "250 ")
					c.send(fmt.Sprintf("BDAT %d LAST\r\n%s", len(msg), msg))
					c.expect("250 ")
				} else {
					c := startData(t, e)
					c.cmd(msg+".", "250 ")
				}
				if d := e.deliv.all(); len(d) != 1 || string(d[0].body) != msg {
					t.Fatalf("not stored intact: %d messages", len(d))
				}
			})
		}
	}
}

// TestDeliveryOutcomes: a message is accepted once or refused whole. A
// single local copy is stored or not, and the reply says which; a message
// with several copies is queued for all of them first, so the reply is 250
// whatever the local copies do next (the queue retries or bounces them), and
// a 4xx/5xx only when the queue refused it, with nothing stored for anyone.
func TestDeliveryOutcomes(t *testing.T) {
	t.Parallel()
	temp := &delivery.Error{Temporary: true, Reason: "io", Err: errors.New("/var/vmail/secret/path: EIO")}
	full := &delivery.Error{Temporary: true, Reason: "disk full", Err: errors.Join(delivery.ErrDiskFull, syscall.ENOSPC)}
	perm := &delivery.Error{Temporary: false, Reason: "bad message"}
	readOnly := &delivery.Error{Temporary: true, Reason: "maildir not writable", Err: errors.Join(delivery.ErrNotWritable, syscall.EROFS)}
	// A move of the user to another node began since RCPT, or ended with
	// the old home gone (cluster/move's gate): nothing was stored.
	held := &delivery.Error{Temporary: true, Reason: "mailbox being moved to another node", Err: delivery.ErrHeld}
	for _, tc := range []struct {
		name       string
		rcpt       string
		alice, bob error
		queueErr   error
		want       string
		stored     int // copies the deliverer stored
		queued     bool
	}{
		{"one copy ok", "bob@mailbox.example", nil, nil, nil, "250 ", 1, false},
		{"one copy temporary", "bob@mailbox.example", nil, temp, nil, "451 4.3.0", 0, false},
		{"one copy disk full", "bob@mailbox.example", nil, full, nil, "452 4.3.1", 0, false},
		{"one copy not writable", "bob@mailbox.example", nil, readOnly, nil, "452 4.3.1 Mail storage not writable", 0, false},
		{"one copy permanent", "bob@mailbox.example", nil, perm, nil, "554 5.6.0", 0, false},
		{"one copy plain error is temporary", "bob@mailbox.example", nil, errors.New("boom /secret"), nil, "451 4.3.0", 0, false},
		{"one copy held by a move: queued, the queue delivers it after", "bob@mailbox.example", nil, held, nil, "250 ", 0, true},
		{"alias all ok", "team@hosted.example", nil, nil, nil, "250 ", 2, true},
		{"alias one temporary: still accepted once", "team@hosted.example", nil, temp, nil, "250 ", 1, true},
		{"alias disk full: queued", "team@hosted.example", full, full, nil, "250 ", 0, true},
		{"alias permanent: the queue bounces", "team@hosted.example", perm, nil, nil, "250 ", 1, true},
		{"queue fails: nothing stored", "team@hosted.example", nil, nil, errors.New("spool /secret"), "451 4.3.0", 0, false},
		{"queue disk full: nothing stored", "team@hosted.example", nil, nil, fmt.Errorf("write: %w", syscall.ENOSPC), "452 4.3.1", 0, false},
		{"queue says too large: nothing stored", "team@hosted.example", nil, nil, fmt.Errorf("x: %w", queue.ErrTooLarge), "552 5.3.4", 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, Inbound, nil)
			e.deliv.fail = func(r delivery.Recipient) error {
				if strings.HasPrefix(r.Address, "alice") {
					return tc.alice
				}
				return tc.bob
			}
			e.queue.fail = tc.queueErr
			c := e.dialRaw(t)
			c.cmd("EHLO client.example", "250 ")
			c.cmd("MAIL FROM:<s@foreign.example>", "250 ")
			c.cmd("RCPT TO:<"+tc.rcpt+">", "250 ")
			c.cmd("DATA", "354 ")
			got := c.cmd("\r\nx\r\n.", tc.want)
			if strings.Contains(got, "secret") {
				t.Errorf("internal detail leaked: %q", got)
			}
			if got[0] != '2' && !strings.Contains(got, "(id ") {
				t.Errorf("no msg_id in %q", got)
			}
			stored := 0
			for _, n := range e.deliv.copies() {
				stored += n
			}
			if stored != tc.stored {
				t.Errorf("%d copies stored, want %d", stored, tc.stored)
			}
			if q := e.queue.all(); tc.queued != (len(q) == 1) || len(q) > 1 {
				t.Errorf("queued %d messages, want queued=%v", len(q), tc.queued)
			} else if tc.queued && tc.rcpt == "team@hosted.example" && (len(q[0].local) != 2 || len(q[0].rcpts) != 1) {
				t.Errorf("queued %d local and %d remote recipients, want 2 and 1", len(q[0].local), len(q[0].rcpts))
			}
		})
	}
}

// TestReceivedHeader checks the trace field and that the reply id is the
// message's id.
func TestReceivedHeader(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Inbound, nil)
	c := e.dialRaw(t)
	c.cmd("EHLO evil\x01(name)", "250 ")
	c.startTLS(e.ctls)
	c.cmd("EHLO client.example", "250 ")
	c.cmd("MAIL FROM:<s@foreign.example>", "250 ")
	c.cmd("RCPT TO:<bob@mailbox.example>", "250 ")
	c.cmd("DATA", "354 ")
	c.cmd("Subject: r\r\n\r\nx\r\n.", "250 ")
	d := e.deliv.all()
	if len(d) != 1 {
		t.Fatal("not delivered")
	}
	h := string(d[0].msg.Header)
	for _, want := range []string{
		"Received: from client.example (localhost [127.0.0.1])\r\n",
		"\t(using TLSv1.3 with cipher TLS_",
		"\tby mx.test (courriel) with ESMTPS id " + d[0].msg.ID + "\r\n",
		"\tfor <bob@mailbox.example>;\r\n",
		"\tWed, 25 Nov 2026 10:00:00 +0000 (UTC)\r\n",
	} {
		if !strings.Contains(h, want) {
			t.Errorf("Received lacks %q:\n%s", want, h)
		}
	}
	if !d[0].msg.Arrived.Equal(time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)) || d[0].msg.From != "s@foreign.example" {
		t.Errorf("message fields: %+v", d[0].msg)
	}
	// A hostile HELO cannot break the header.
	c = e.dialRaw(t)
	c.cmd("HELO a(b)\x7f;\tc", "250 ")
	c.cmd("MAIL FROM:<>", "250 ")
	c.cmd("RCPT TO:<bob@mailbox.example>", "250 ")
	c.cmd("DATA", "354 ")
	c.cmd("\r\nx\r\n.", "250 ")
	h = string(e.deliv.all()[1].msg.Header)
	if !strings.HasPrefix(h, "Received: from a?b????c (") || !strings.Contains(h, " with SMTP id ") {
		t.Errorf("hostile HELO: %q", h)
	}
	if strings.Count(h, "\r\n") != strings.Count(h, "\n") {
		t.Errorf("bare LF in header: %q", h)
	}
}

// TestMailWithoutHelo: MAIL before HELO/EHLO is taken, as by Postfix with
// its default smtpd_helo_required = no (the seed's); Received names the
// client by its reverse DNS, with SMTP, as Postfix writes it. After an EHLO
// and STARTTLS, with ESMTPS (Postfix keeps the protocol of the EHLO).
func TestMailWithoutHelo(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Inbound, nil)
	c := e.dialRaw(t)
	c.cmd("MAIL FROM:<s@foreign.example>", "250 2.1.0")
	c.cmd("RCPT TO:<alice@mailbox.example>", "250 ")
	c.cmd("DATA", "354 ")
	c.cmd("Subject: no helo\r\n\r\nx\r\n.", "250 ")
	h := string(e.deliv.all()[0].msg.Header)
	if !strings.HasPrefix(h, "Received: from localhost (localhost [127.0.0.1])\r\n\tby mx.test (courriel) with SMTP id ") {
		t.Errorf("Received without HELO: %q", h)
	}

	c = e.dialRaw(t)
	c.cmd("EHLO client.example", "250 ")
	c.startTLS(e.ctls)
	c.cmd("MAIL FROM:<s@foreign.example>", "250 ")
	c.cmd("RCPT TO:<bob@mailbox.example>", "250 ")
	c.cmd("DATA", "354 ")
	c.cmd("Subject: no helo in TLS\r\n\r\nx\r\n.", "250 ")
	h = string(e.deliv.all()[1].msg.Header)
	if !strings.HasPrefix(h, "Received: from localhost (localhost [127.0.0.1])\r\n\t(using TLS") || !strings.Contains(h, " with ESMTPS id ") {
		t.Errorf("Received without EHLO after STARTTLS: %q", h)
	}
}

// TestRefusedHugeBDATChunk: a refused chunk of any declared size (here
// 4 GB) is skipped before commands are read again. The skipping ends at
// the read deadline set when the BDAT line was read, or after twice the
// size limit, and the connection closes then: what the client sends after
// that is never read as commands.
func TestRefusedHugeBDATChunk(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		kind  Kind
		setup []string // commands before BDAT, each answered 250
		want  string   // the reply to BDAT
	}{
		{"no transaction", Inbound, nil, "503 5.5.1"},
		{"over the size limit", Inbound, []string{"MAIL FROM:<s@foreign.example>", "RCPT TO:<alice@mailbox.example>"}, "552 5.3.4"},
		{"no transaction, TLS", Submissions, nil, "503 5.5.1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			// Not shorter: the commands before BDAT must each come within
			// it, however slow the run; the chunk is dropped at twice the
			// size limit in any case.
			e := newEnv(t, tc.kind, func(o *Options) { o.ReadTimeout = 5 * time.Second })
			c := e.dialRaw(t)
			c.cmd("EHLO client.example", "250 ")
			for _, cmd := range tc.setup {
				c.cmd(cmd, "250 ")
			}
			c.cmd("BDAT 4000000000", tc.want)
			// Commands as chunk content, sent until the server stops reading:
			// each would get a 250 if read as a command.
			block := []byte(strings.Repeat("NOOP\r\n", 64<<10/6))
			c.conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
			var sent int64
			for sent < 4<<30 {
				n, err := c.conn.Write(block)
				sent += int64(n)
				if err != nil {
					break
				}
			}
			c.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
			var replies []string
			for len(replies) < 1000 {
				line, err := c.r.ReadString('\n')
				if err != nil {
					if !errors.Is(err, io.EOF) && !isReset(err) {
						t.Fatalf("connection still open after %d bytes of the chunk: %v", sent, err)
					}
					break
				}
				replies = append(replies, line)
			}
			for _, l := range replies {
				if !strings.HasPrefix(l, "421 4.4.2") {
					t.Fatalf("after %d bytes of the chunk, replies %q", sent, replies)
				}
			}
		})
	}
}

// TestMalformedBDATCloses: a BDAT line whose chunk size cannot be read,
// as the first chunk of a message or a later one, is answered 521 5.5.4
// and the connection closes, as by Postfix 3.7 (its bdat_cmd): the chunk
// that follows it (here a message's text made of commands) is never read
// as commands, nothing is stored, and no other reply comes.
func TestMalformedBDATCloses(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Inbound, nil)
	const smuggled = "RCPT TO:<bob@mailbox.example>\r\nDATA\r\nSubject: smuggled\r\n\r\nx\r\n.\r\nQUIT\r\n"
	for _, line := range []string{
		"BDAT",
		"BDAT x",
		"BDAT -5",
		"BDAT +5",
		"BDAT 0x10",
		"BDAT 99999999999999999999999 LAST",
		"BDAT 5 NOTLAST",
		"BDAT 5 LAST extra",
	} {
		for _, later := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/later=%v", line, later), func(t *testing.T) {
				c := e.dialRaw(t)
				c.cmd("EHLO client.example", "250 ")
				c.cmd("MAIL FROM:<s@foreign.example>", "250 ")
				c.cmd("RCPT TO:<alice@mailbox.example>", "250 ")
				if later {
					c.send("BDAT 3\r\nabc")
					c.expect("250 2.0.0 Ok: 3 bytes")
				}
				c.send(line + "\r\n" + smuggled)
				c.expect("521 5.5.4 Syntax: BDAT count [LAST]")
				c.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
				rest, err := io.ReadAll(c.r)
				if err != nil && !isReset(err) {
					t.Fatalf("open after %q: %v", line, err)
				}
				if len(rest) > 0 {
					t.Fatalf("replies after the 521: %q", rest)
				}
			})
		}
	}
	if got := e.deliv.all(); len(got) != 0 {
		t.Fatalf("%d messages stored", len(got))
	}
}

// TestBDATAbortThenNewTransaction: aborting BDAT (RSET, a new EHLO) and
// starting over on the same connection gives every message its own reply
// (see conn.waitBDAT; run with -race).
func TestBDATAbortThenNewTransaction(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Inbound, nil)
	c := e.dialRaw(t)
	c.cmd("EHLO client.example", "250 ")
	const rounds = 30
	for i := range rounds {
		c.cmd("MAIL FROM:<s@foreign.example>", "250 ")
		c.cmd("RCPT TO:<bob@mailbox.example>", "250 ")
		c.send("BDAT 5\r\nhello")
		c.expect("250 ")
		if i%2 == 0 {
			c.cmd("RSET", "250 ")
		} else {
			c.cmd("EHLO client.example", "250 ")
		}
		c.send("MAIL FROM:<s@foreign.example>\r\nRCPT TO:<alice@mailbox.example>\r\nBDAT 14 LAST\r\nSubject: x\r\n\r\n")
		c.expect("250 ")
		c.expect("250 ")
		c.expect("250 ")
	}
	if n := e.deliv.copies(); n["alice@mailbox.example"] != rounds || n["bob@mailbox.example"] != 0 {
		t.Fatalf("copies %v", n)
	}
}

// lockedLog is a log destination a test reads while the server writes.
type lockedLog struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestAcceptedLogLine: the connection's "connect" line, then the message's
// "message accepted" line with its msg_id (written once the 250 is sent,
// before the next command is read), in that order.
func TestAcceptedLogLine(t *testing.T) {
	t.Parallel()
	logs := &lockedLog{}
	e := newEnv(t, Inbound, func(o *Options) { o.Logger = slog.New(slog.NewTextHandler(logs, nil)) })
	c := startData(t, e)
	c.send("Subject: logged\r\n\r\nx\r\n.\r\n")
	reply := c.reply()
	if !strings.HasPrefix(reply, "250 ") {
		t.Fatalf("DATA: %q", reply)
	}
	c.cmd("QUIT", "221 ")
	out := logs.String()
	connect := strings.Index(out, "msg=connect")
	accepted := strings.Index(out, `msg="message accepted"`)
	if connect < 0 || accepted < connect {
		t.Fatalf("want a connect line, then the accepted one:\n%s", out)
	}
	id := e.deliv.all()[0].msg.ID
	if line := out[accepted:]; !strings.Contains(line[:strings.IndexByte(line, '\n')], "msg_id="+id) {
		t.Errorf("accepted line without msg_id=%s:\n%s", id, out)
	}
}

// logWrites keeps each write(2) of a log apart.
type logWrites struct {
	mu     sync.Mutex
	writes []string
}

func (l *logWrites) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.writes = append(l.writes, string(p))
	return len(p), nil
}

func (l *logWrites) all() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.writes, "")
}

// waitWrite returns the write holding text, waiting (bounded) for it.
func (l *logWrites) waitWrite(t *testing.T, text string) string {
	t.Helper()
	for range 500 {
		l.mu.Lock()
		for _, w := range l.writes {
			if strings.Contains(w, text) {
				l.mu.Unlock()
				return w
			}
		}
		l.mu.Unlock()
		time.Sleep(10 * time.Millisecond)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	t.Fatalf("no %s in the log: %q", text, l.writes)
	return ""
}

// TestConnectLineGoesWithTheNextWrite: with cmd's logger
// (internal/logwriter), a connection's connect line is not a write of its
// own: it goes out with the message's accepted line, before it; the
// disconnect line waits in turn.
func TestConnectLineGoesWithTheNextWrite(t *testing.T) {
	t.Parallel()
	dst := &logWrites{}
	lw := logwriter.New(dst, 64<<10)
	lw.SetLazyDelay(time.Hour) // only the accepted line writes the connect line
	e := newEnv(t, Inbound, func(o *Options) {
		o.Logger = slog.New(logwriter.NewHandler(slog.NewTextHandler(lw, nil), lw))
	})
	c := startData(t, e)
	c.send("Subject: logged\r\n\r\nx\r\n.\r\n")
	if reply := c.reply(); !strings.HasPrefix(reply, "250 ") {
		t.Fatalf("DATA: %q", reply)
	}
	w := dst.waitWrite(t, `msg="message accepted"`)
	if connect := strings.Index(w, "msg=connect"); connect < 0 || connect > strings.Index(w, `msg="message accepted"`) {
		t.Errorf("the accepted line's write has no connect line before it: %q", w)
	}
	c.cmd("QUIT", "221 ")
	for range 500 { // the disconnect line waits: Flush writes it once logged
		lw.Flush()
		if strings.Contains(dst.all(), "msg=disconnect") {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Errorf("no disconnect line: %q", dst.all())
}

// TestReverseNameRemembered: a client that opens a connection per message
// is looked up once while the name is fresh, and again once it is stale;
// every message's Received: has the name.
func TestReverseNameRemembered(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	lookups := 0
	e := newEnv(t, Inbound, func(o *Options) {
		o.LookupAddr = func(context.Context, string) ([]string, error) {
			mu.Lock()
			defer mu.Unlock()
			lookups++
			return []string{fmt.Sprintf("Host%d.Example.", lookups)}, nil
		}
	})
	send := func() string {
		c := startData(t, e)
		c.cmd("Subject: r\r\n\r\nx\r\n.", "250 ")
		c.cmd("QUIT", "221 ")
		d := e.deliv.all()
		return string(d[len(d)-1].msg.Header)
	}
	for i := range 3 {
		if h := send(); !strings.Contains(h, "(host1.example [127.0.0.1])") {
			t.Fatalf("message %d: %q", i, h)
		}
	}
	e.clock.Sleep(context.Background(), rdnsTTL)
	if h := send(); !strings.Contains(h, "(host2.example [127.0.0.1])") {
		t.Fatalf("after the TTL: %q", h)
	}
	mu.Lock()
	defer mu.Unlock()
	if lookups != 2 {
		t.Errorf("%d lookups for 4 connections, want 2", lookups)
	}
}

// An alias that forwards out is one RCPT: the Received field names it
// ("for"), whatever it expands to, and the accepted line counts one.
func TestForwardIsOneRecipient(t *testing.T) {
	t.Parallel()
	for _, rcpt := range []string{"fwd@hosted.example", "team@hosted.example"} {
		logs := &lockedLog{}
		e := newEnv(t, Inbound, func(o *Options) { o.Logger = slog.New(slog.NewTextHandler(logs, nil)) })
		c := e.dialRaw(t)
		c.cmd("EHLO client.example", "250 ")
		c.cmd("MAIL FROM:<s@foreign.example>", "250 ")
		c.cmd("RCPT TO:<"+rcpt+">", "250 ")
		c.cmd("DATA", "354 ")
		c.cmd("Subject: f\r\n\r\nx\r\n.", "250 ")
		c.cmd("QUIT", "221 ") // the accepted line is written by now
		q := e.queue.all()
		if len(q) != 1 {
			t.Fatalf("%s: %d messages queued", rcpt, len(q))
		}
		if !strings.Contains(string(q[0].data), "\tfor <"+rcpt+">;\r\n") {
			t.Errorf("%s: Received lacks the RCPT:\n%s", rcpt, q[0].data)
		}
		if !strings.Contains(logs.String(), "nrcpt=1 ") {
			t.Errorf("%s: the accepted line does not count one RCPT:\n%s", rcpt, logs.String())
		}
		// The queue is told which alias each outside copy came for.
		for _, r := range q[0].env.Recipients {
			if r.OrigTo != rcpt {
				t.Errorf("%s: the copy for %s has orig_to %q", rcpt, r.Addr, r.OrigTo)
			}
		}
	}
}

// The queue keeps SMTPUTF8 for a message whose sender asked for it and
// whose header needs it (RFC 6531 §3.4), and only then.
func TestSMTPUTF8Queued(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, mail, header string
		want               bool
	}{
		{"asked, UTF-8 header", "MAIL FROM:<s@foreign.example> SMTPUTF8", "Subject: caf\u00e9", true},
		{"asked, ASCII header", "MAIL FROM:<s@foreign.example> SMTPUTF8", "Subject: cafe", false},
		{"not asked, 8-bit header", "MAIL FROM:<s@foreign.example> BODY=8BITMIME", "Subject: caf\u00e9", false},
	} {
		e := newEnv(t, Inbound, nil)
		c := e.dialRaw(t)
		c.cmd("EHLO client.example", "250 ")
		c.cmd(tc.mail, "250 ")
		c.cmd("RCPT TO:<fwd@hosted.example>", "250 ")
		c.cmd("DATA", "354 ")
		c.cmd(tc.header+"\r\n\r\nx\r\n.", "250 ")
		q := e.queue.all()
		if len(q) != 1 || q[0].env.SMTPUTF8 != tc.want {
			t.Errorf("%s: queued %d, SMTPUTF8 %v, want %v", tc.name, len(q), len(q) == 1 && q[0].env.SMTPUTF8, tc.want)
		}
	}
}
