package queue

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	gosmtp "github.com/emersion/go-smtp"

	"courriel/delivery"
)

// TestDSNBytesUTF8: a DSN about mail that needs UTF-8 is RFC 6533's, byte
// for byte: the QA case first (RCPT TO:<ünï@noutf8.test> with SMTPUTF8,
// a next hop without it, 5.6.7), where the sender used to read
// <??n??@noutf8.test>.
func TestDSNBytesUTF8(t *testing.T) {
	t.Parallel()
	for _, tc := range []dsnCase{
		{name: "a UTF-8 recipient, an ASCII header", kind: dsnFailed,
			m: &Message{From: "alice@local.test", Recipients: []Recipient{{Addr: "ünï@noutf8.test", State: StateFailed, Status: "5.6.7",
				Reply: "SMTPUTF8 is required, but was not offered by host mx.noutf8.test[192.0.2.25]", RemoteMTA: "mx.noutf8.test", LastAttempt: time.Unix(50, 0).UTC()}}},
			ret: returned{data: []byte("Subject: hi\r\nFrom: <alice@local.test>\r\n")},
			want: `From: Mail Delivery System <MAILER-DAEMON@mta.test>
To: <alice@local.test>
Subject: Undelivered Mail Returned to Sender
Date: Thu, 01 Jan 1970 02:00:00 +0000
Message-ID: <AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA.RANDOM@mta.test>
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status;
	boundary="=_courriel_BOUNDARY"
Content-Transfer-Encoding: 8bit

This is a MIME-encapsulated message.

--=_courriel_BOUNDARY
Content-Description: Notification
Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: 8bit

This is the mail system at host mta.test.

I'm sorry to have to inform you that your message could not be delivered to
one or more recipients. Its headers are attached below.

For further assistance, please send mail to postmaster. If you do so, please
include this problem report.

                   The mail system

<ünï@noutf8.test>: SMTPUTF8 is required, but was not offered by host
mx.noutf8.test[192.0.2.25]


--=_courriel_BOUNDARY
Content-Description: Delivery report
Content-Type: message/global-delivery-status
Content-Transfer-Encoding: 8bit

Reporting-MTA: dns; mta.test
X-Courriel-Queue-ID: AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA
Arrival-Date: Thu, 01 Jan 1970 00:00:00 +0000

Final-Recipient: utf-8; ünï@noutf8.test
Action: failed
Status: 5.6.7
Remote-MTA: dns; mx.noutf8.test
Diagnostic-Code: X-Courriel; SMTPUTF8 is required, but was not offered by
 host mx.noutf8.test[192.0.2.25]
Last-Attempt-Date: Thu, 01 Jan 1970 00:00:50 +0000

--=_courriel_BOUNDARY
Content-Description: Undelivered Message Headers
Content-Type: message/global-headers

Subject: hi
From: <alice@local.test>

--=_courriel_BOUNDARY--
`},
		// A UTF-8 sender and header, RET=FULL: an alias named in UTF-8,
		// an ORCPT of the utf-8 type in its 7-bit form, a quoted local
		// part with a space and a backslash (the unitext form keeps the
		// field one word), a long address cut between characters.
		{name: "an SMTPUTF8 message returned whole", kind: dsnFailed,
			m: &Message{From: "josé@local.test", SMTPUTF8: true, EnvID: "env-1", Recipients: []Recipient{
				{Addr: "bob@remote.test", OrigTo: "équipe@local.test", State: StateFailed, Status: "5.1.1", Code: 550, RemoteMTA: "mx.remote.test", Reply: "550 5.1.1 unknown"},
				{Addr: `"ü x\\y+z"@remote.test`, ORcpt: `utf-8;j\x{F6}rg@remote.test`, State: StateFailed, Status: "5.1.1", Reply: "unknown"},
				{Addr: strings.Repeat("é", 31) + "@xn--caf-dma.test", State: StateFailed, Status: "5.0.0", Reply: "refused"},
			}},
			ret: returned{data: []byte("Subject: café\r\nFrom: <josé@local.test>\r\n\r\nbody é\r\n"), full: true},
			want: `From: Mail Delivery System <MAILER-DAEMON@mta.test>
To: <josé@local.test>
Subject: Undelivered Mail Returned to Sender
Date: Thu, 01 Jan 1970 02:00:00 +0000
Message-ID: <AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA.RANDOM@mta.test>
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status;
	boundary="=_courriel_BOUNDARY"
Content-Transfer-Encoding: 8bit

This is a MIME-encapsulated message.

--=_courriel_BOUNDARY
Content-Description: Notification
Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: 8bit

This is the mail system at host mta.test.

I'm sorry to have to inform you that your message could not be delivered to
one or more recipients. It is attached below.

For further assistance, please send mail to postmaster. If you do so, please
include this problem report.

                   The mail system

<bob@remote.test>: host mx.remote.test said: 550 5.1.1 unknown

<"ü x\\y+z"@remote.test>: unknown

<ééééééééééééééééééééééééééééééé@xn--caf-dma.
test>: refused


--=_courriel_BOUNDARY
Content-Description: Delivery report
Content-Type: message/global-delivery-status
Content-Transfer-Encoding: 8bit

Original-Envelope-Id: env-1
Reporting-MTA: dns; mta.test
X-Courriel-Queue-ID: AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA
Arrival-Date: Thu, 01 Jan 1970 00:00:00 +0000

Original-Recipient: utf-8; équipe@local.test
Final-Recipient: rfc822; bob@remote.test
Action: failed
Status: 5.1.1
Remote-MTA: dns; mx.remote.test
Diagnostic-Code: smtp; 550 5.1.1 unknown

Original-Recipient: utf-8; jörg@remote.test
Final-Recipient: utf-8; "ü\x{20}x\x{5C}\x{5C}y\x{2B}z"@remote.test
Action: failed
Status: 5.1.1
Diagnostic-Code: X-Courriel; unknown

Final-Recipient: utf-8;
 ééééééééééééééééééééééééééééééé@xn--caf-dma.test
Action: failed
Status: 5.0.0
Diagnostic-Code: X-Courriel; refused

--=_courriel_BOUNDARY
Content-Description: Undelivered Message
Content-Type: message/global
Content-Transfer-Encoding: 8bit

Subject: café
From: <josé@local.test>

body é

--=_courriel_BOUNDARY--
`},
		// SMTPUTF8 for its header only: the global types, the text part
		// ASCII as its text is, the addresses rfc822 as they are ASCII.
		{name: "a success DSN, ASCII addresses", kind: dsnSuccess,
			m: &Message{From: "alice@local.test", SMTPUTF8: true, Recipients: []Recipient{
				{Addr: "bob@remote.test", State: StateDelivered, Action: ActionRelayed, Status: "2.0.0", Code: 250, RemoteMTA: "mx.remote.test", Reply: "250 2.0.0 Ok"}}},
			ret: returned{data: []byte("Subject: café\r\n")},
			want: `From: Mail Delivery System <MAILER-DAEMON@mta.test>
To: <alice@local.test>
Subject: Successful Mail Delivery Report
Date: Thu, 01 Jan 1970 02:00:00 +0000
Message-ID: <AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA.RANDOM@mta.test>
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status;
	boundary="=_courriel_BOUNDARY"
Content-Transfer-Encoding: 8bit

This is a MIME-encapsulated message.

--=_courriel_BOUNDARY
Content-Description: Notification
Content-Type: text/plain; charset=us-ascii

This is the mail system at host mta.test.

Your message was successfully delivered to the destination(s) listed below.
If the message was delivered to mailbox you will receive no further
notifications. Otherwise you may still receive notifications of mail
delivery errors from other systems.

                   The mail system

<bob@remote.test>: relayed to host mx.remote.test, which does not report
delivery status: 250 2.0.0 Ok


--=_courriel_BOUNDARY
Content-Description: Delivery report
Content-Type: message/global-delivery-status

Reporting-MTA: dns; mta.test
X-Courriel-Queue-ID: AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA
Arrival-Date: Thu, 01 Jan 1970 00:00:00 +0000

Final-Recipient: rfc822; bob@remote.test
Action: relayed
Status: 2.0.0
Remote-MTA: dns; mx.remote.test
Diagnostic-Code: smtp; 250 2.0.0 Ok

--=_courriel_BOUNDARY
Content-Description: Message Headers
Content-Type: message/global-headers
Content-Transfer-Encoding: 8bit

Subject: café

--=_courriel_BOUNDARY--
`},
	} {
		tc.run(t)
	}
}

// TestDSNUTF8Hostile: in an RFC 6533 DSN, what keeps UTF-8 still never
// breaks a line: an address or reply with CR, LF, NUL, C1 controls, the
// Unicode line separators or octets that are not UTF-8 (the queue's
// checks let none of them into an address; the DSN does not count on it)
// injects no field and leaves every line valid UTF-8 within 998 octets.
func TestDSNUTF8Hostile(t *testing.T) {
	t.Parallel()
	q := &Queue{o: Options{Hostname: "mta.test", MaxLifetime: time.Hour}}
	m := &Message{ID: strings.Repeat("A", idLen), From: "josé@local.test", Created: time.Unix(0, 0), SMTPUTF8: true,
		Recipients: []Recipient{
			{Addr: "ü\r\nInjected: a@x.test", OrigTo: "é\nInjected: b@x.test", State: StateFailed, Status: "5.1.1",
				Reply: "550 é\r\nInjected: c\x00\u0085\u2028Injected: d\xff" + strings.Repeat("é", 3000)},
			{Addr: "\xffbad@x.test", State: StateFailed, Status: "5.1.1", Reply: "550 no"},
			{Addr: "ü\u00a0x@x.test", State: StateFailed, Status: "5.1.1", Reply: "550 no"},
		}}
	raw := q.buildDSN(m, dsnFailed, m.Recipients, returned{data: []byte("Subject: hi\r\n")}, time.Unix(100, 0))
	if rest := strings.ReplaceAll(string(raw), "\r\n", ""); strings.ContainsAny(rest, "\r\n\x00\u0085\u2028") {
		t.Errorf("a bare CR or LF, a NUL, NEL or LS in the DSN:\n%q", raw)
	}
	for _, line := range strings.Split(string(raw), "\r\n") {
		if !utf8.ValidString(line) {
			t.Errorf("line not UTF-8: %q", line)
		}
	}
	r := parseDSN(t, raw)
	if len(r.rcpts) != 3 {
		t.Fatalf("%d recipient groups, want 3: %v", len(r.rcpts), r.rcpts)
	}
	for _, g := range r.rcpts {
		if g.Get("Injected") != "" {
			t.Errorf("a field was injected: %v", g)
		}
	}
	for i, want := range []string{`utf-8; ü\x{0D}\x{0A}Injected:\x{20}a@x.test`, "rfc822; ?bad@x.test", `utf-8; ü\x{A0}x@x.test`} {
		if got := r.rcpts[i].Get("Final-Recipient"); got != want {
			t.Errorf("Final-Recipient %d = %q, want %q", i, got, want)
		}
	}
	if got := r.rcpts[0].Get("Original-Recipient"); got != `utf-8; é\x{0A}Injected:\x{20}b@x.test` {
		t.Errorf("Original-Recipient = %q", got)
	}
	if !strings.Contains(strings.Join(strings.Fields(r.human), " "), "<ü Injected: a@x.test>: 550 é Injected: c???Injected: d?éé") {
		t.Errorf("human part:\n%s", r.human)
	}
}

// TestDSNAddressForms: the value of Final-Recipient and Original-Recipient
// (RFC 3464 §2.3.1-2, RFC 6533 §3), in an RFC 3464 DSN and an RFC 6533
// one.
func TestDSNAddressForms(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		addr  string
		orcpt bool // addr is an ORCPT (type;address)
		utf   bool // an RFC 6533 DSN
		want  string
	}{
		{addr: "bob@x.test", utf: true, want: "rfc822; bob@x.test"},
		{addr: "ünï@noutf8.test", utf: true, want: "utf-8; ünï@noutf8.test"},
		{addr: "ünï@noutf8.test", utf: false, want: "rfc822; ünï@noutf8.test"}, // masked by writeField
		{addr: "ünï+tag=1@x.test", utf: true, want: "utf-8; ünï+tag=1@x.test"}, // the utf-8-address form
		{addr: `"ü x"@x.test`, utf: true, want: `utf-8; "ü\x{20}x"@x.test`},
		{addr: `"ü\\+="@x.test`, utf: true, want: `utf-8; "ü\x{5C}\x{5C}\x{2B}\x{3D}"@x.test`},
		{addr: "ü\u3000x@x.test", utf: true, want: `utf-8; ü\x{3000}x@x.test`},
		{addr: "caf\xe9@x.test", utf: true, want: "rfc822; caf\xe9@x.test"}, // not UTF-8: masked by writeField
		{addr: `utf-8;j\x{F6}rg@x.test`, orcpt: true, utf: true, want: "utf-8; jörg@x.test"},
		{addr: `UTF-8;\x{1F600}\x{20}x@x.test`, orcpt: true, utf: true, want: `UTF-8; 😀\x{20}x@x.test`},
		{addr: `utf-8;j\x{F6}rg@x.test`, orcpt: true, utf: false, want: `utf-8; j\x{F6}rg@x.test`},
		{addr: `utf-8;bob@x.test`, orcpt: true, utf: true, want: `utf-8; bob@x.test`},
		{addr: `utf-8;j\x{ZZ}rg@x.test`, orcpt: true, utf: true, want: `utf-8; j\x{ZZ}rg@x.test`},
		{addr: `utf-8;j\x{D800}rg@x.test`, orcpt: true, utf: true, want: `utf-8; j\x{D800}rg@x.test`},
		{addr: `utf-8;j\x{0}rg@x.test`, orcpt: true, utf: true, want: `utf-8; j\x{0}rg@x.test`},
		{addr: `utf-8;j\x{F6rg@x.test`, orcpt: true, utf: true, want: `utf-8; j\x{F6rg@x.test`},
		{addr: `rfc822;bob@x.test`, orcpt: true, utf: true, want: "rfc822; bob@x.test"},
		// As smtp keeps them (UTF8ORcpt's canonical form), whatever form
		// the client sent: decoded in an RFC 6533 DSN, 7-bit in another.
		{addr: `utf-8;\x{E9}quipe\x{2B}x\x{F6}@x.test`, orcpt: true, utf: true, want: "utf-8; équipe+xö@x.test"},
		{addr: `utf-8;\x{E9}quipe\x{2B}x\x{F6}@x.test`, orcpt: true, utf: false, want: `utf-8; \x{E9}quipe\x{2B}x\x{F6}@x.test`},
		{addr: `utf-8;"\x{E9}\x{20}x"@x.test`, orcpt: true, utf: true, want: `utf-8; "é\x{20}x"@x.test`},
	} {
		got := dsnAddress(tc.addr, tc.utf)
		if tc.orcpt {
			got = dsnORcpt(tc.addr, tc.utf)
		}
		if got != tc.want {
			t.Errorf("%q (utf %v) = %q, want %q", tc.addr, tc.utf, got, tc.want)
		}
	}
}

func TestPrintableUTF8(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ in, want string }{
		{"250 ok", "250 ok"},
		{"ünï@noutf8.test", "ünï@nout"},
		{"a\r\nb\n\tc", "a b c"},
		{"\x00\x1b[31mred", "??[31mred"},
		{"caf\xe9!", "caf?!"},
		{"a\u0085b\u2028c\u2029d", "a?b?c?d"},
		{"aééééé", "aéééé"}, // cut at 10 bytes, never inside a character
		{"éé\xc3", "éé?"},
		{"  lead", "lead"},
	} {
		if got := printableUTF8(tc.in, 10); got != tc.want {
			t.Errorf("printableUTF8(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// pyDSN is what Python's email package (policy=default) reads of a DSN.
type pyDSN struct {
	Defects      []string
	To           string
	Types        []string
	Charset      string
	Text         string
	Status       [][][2]string // per-message fields, then each recipient's
	Returned     [][2]string   // the returned header
	ReturnedBody string        `json:"returned_body"`
}

// pyReadDSN has Python's email parser read a DSN, as a mail client built
// on it would: policy=default, defects listed, each part by its type.
func pyReadDSN(t *testing.T, raw []byte) pyDSN {
	t.Helper()
	if _, err := exec.LookPath("python3"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("python3 is required in CI")
		}
		t.Skip("python3 is not installed")
	}
	cmd := exec.Command("python3", "-c", `
import email, email.policy, json, sys

m = email.message_from_bytes(sys.stdin.buffer.read(), policy=email.policy.default)

def fields(msg):
    return [[k, str(v)] for k, v in msg.items()]

def groups(part):
    # Python reads message/delivery-status as one message per group, and
    # any other message/* (message/global-delivery-status) as one enclosed
    # message: its header the per-message fields, its body the groups.
    out = []
    for sub in part.get_payload():
        out.append(fields(sub))
        body = None if sub.is_multipart() else sub.get_payload(decode=True)
        for g in (body or b"").split(b"\r\n\r\n"):
            if g.strip():
                out.append(fields(email.message_from_bytes(g + b"\r\n\r\n", policy=email.policy.default)))
    return out

parts = list(m.iter_parts())
p = parts[2]
enclosed = p.get_payload()[0] if p.is_multipart() else email.message_from_bytes(p.get_payload(decode=True), policy=email.policy.default)
json.dump({
    "defects": [type(d).__name__ for q in m.walk() for d in q.defects],
    "to": str(m["To"]),
    "types": [q.get_content_type() for q in parts],
    "charset": parts[0].get_content_charset(),
    "text": parts[0].get_content(),
    "status": groups(parts[1]),
    "returned": fields(enclosed),
    "returned_body": (enclosed.get_payload(decode=True) or b"").decode("utf-8"),
}, sys.stdout, ensure_ascii=False)
`)
	cmd.Stdin = strings.NewReader(string(raw))
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("python3 could not read the DSN: %v\n%s", err, raw)
	}
	var d pyDSN
	if err := json.Unmarshal(out, &d); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	return d
}

// TestDSNUTF8Python: Python's email parser reads the QA case's DSN as the
// sender must: no defect, the global types, the failed address as it is
// in the text part and in Final-Recipient, the returned header; and the
// same message about an ASCII recipient as the RFC 3464 DSN it was.
func TestDSNUTF8Python(t *testing.T) {
	t.Parallel()
	q := &Queue{o: Options{Hostname: "mta.test", MaxLifetime: time.Hour}}
	for _, tc := range []struct {
		name, rcpt, header string
		ret                returned
		types              []string
		charset, final     string
	}{
		{"UTF-8", "ünï@noutf8.test", "To: <ünï@noutf8.test>", returned{data: []byte("Subject: café\r\nTo: <ünï@noutf8.test>\r\n")},
			[]string{"text/plain", "message/global-delivery-status", "message/global-headers"}, "utf-8", "utf-8; ünï@noutf8.test"},
		{"UTF-8, RET=FULL", "ünï@noutf8.test", "To: <ünï@noutf8.test>", returned{data: []byte("Subject: café\r\nTo: <ünï@noutf8.test>\r\n\r\nbody é\r\n"), full: true},
			[]string{"text/plain", "message/global-delivery-status", "message/global"}, "utf-8", "utf-8; ünï@noutf8.test"},
		{"ASCII", "bob@remote.test", "To: <bob@remote.test>", returned{data: []byte("Subject: hi\r\nTo: <bob@remote.test>\r\n")},
			[]string{"text/plain", "message/delivery-status", "text/rfc822-headers"}, "us-ascii", "rfc822; bob@remote.test"},
	} {
		m := &Message{ID: strings.Repeat("A", idLen), From: "alice@local.test", Created: time.Unix(0, 0).UTC(), SMTPUTF8: !isASCII(tc.rcpt),
			Recipients: []Recipient{{Addr: tc.rcpt, State: StateFailed, Status: "5.6.7", LastAttempt: time.Unix(50, 0).UTC(),
				Reply: "SMTPUTF8 is required, but was not offered by host mx.noutf8.test[192.0.2.25]", RemoteMTA: "mx.noutf8.test"}}}
		d := pyReadDSN(t, q.buildDSN(m, dsnFailed, m.Recipients, tc.ret, time.Unix(100, 0).UTC()))
		if len(d.Defects) != 0 {
			t.Errorf("%s: defects %v", tc.name, d.Defects)
		}
		if d.To != "alice@local.test" || !slices.Equal(d.Types, tc.types) || d.Charset != tc.charset {
			t.Errorf("%s: To %q, parts %v, charset %q", tc.name, d.To, d.Types, d.Charset)
		}
		if want := "<" + tc.rcpt + ">: SMTPUTF8 is required, but was not offered by host\r\nmx.noutf8.test[192.0.2.25]\r\n"; !strings.Contains(d.Text, want) {
			t.Errorf("%s: text part %q, want it to hold %q", tc.name, d.Text, want)
		}
		wantStatus := [][][2]string{
			{{"Reporting-MTA", "dns; mta.test"}, {"X-Courriel-Queue-ID", strings.Repeat("A", idLen)}, {"Arrival-Date", "Thu, 01 Jan 1970 00:00:00 +0000"}},
			{{"Final-Recipient", tc.final}, {"Action", "failed"}, {"Status", "5.6.7"}, {"Remote-MTA", "dns; mx.noutf8.test"},
				{"Diagnostic-Code", "X-Courriel; SMTPUTF8 is required, but was not offered by host mx.noutf8.test[192.0.2.25]"},
				{"Last-Attempt-Date", "Thu, 01 Jan 1970 00:00:50 +0000"}},
		}
		if !slices.EqualFunc(d.Status, wantStatus, func(a, b [][2]string) bool { return slices.Equal(a, b) }) {
			t.Errorf("%s: delivery status\n%q\nwant\n%q", tc.name, d.Status, wantStatus)
		}
		h, _, _ := strings.Cut(tc.header, ": ")
		if len(d.Returned) != 2 || d.Returned[1] != [2]string{h, strings.Trim(tc.header[len(h)+2:], "<>")} {
			t.Errorf("%s: returned header %q", tc.name, d.Returned)
		}
		if tc.ret.full != (d.ReturnedBody == "body é\r\n") {
			t.Errorf("%s: returned body %q", tc.name, d.ReturnedBody)
		}
	}
}

// TestDSNUTF8LeavesWithSMTPUTF8: the QA case through the queue. The
// message to ünï@noutf8.test bounces 5.6.7 at a next hop without SMTPUTF8;
// its DSN (RFC 6533) is queued needing SMTPUTF8 and leaves with it, or
// goes to Options.Bounce with WithSMTPUTF8; a DSN about an ASCII recipient
// leaves as before, without.
func TestDSNUTF8LeavesWithSMTPUTF8(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, rcpt string
		bounce     bool // through Options.Bounce, not queued by the queue
		wantUTF8   bool
		final      string
	}{
		{"UTF-8, queued", "ünï@noutf8.test", false, true, "Final-Recipient: utf-8; ünï@noutf8.test\r\n"},
		{"UTF-8, Bounce", "ünï@noutf8.test", true, true, "Final-Recipient: utf-8; ünï@noutf8.test\r\n"},
		{"ASCII, queued", "nobody@noutf8.test", false, false, "Final-Recipient: rfc822; nobody@noutf8.test\r\n"},
		{"ASCII, Bounce", "nobody@noutf8.test", true, false, "Final-Recipient: rfc822; nobody@noutf8.test\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			noUTF8 := newSink(t, sinkOptions{noUTF8: true, rcpt: func(_ int, to string) error {
				if to == "nobody@noutf8.test" {
					return smtpErr(550, gosmtp.EnhancedCode{5, 1, 1}, "no such user")
				}
				return nil
			}})
			home := newSink(t, sinkOptions{})
			o := baseOptions(t, t.TempDir(), newClock())
			o.Routes = map[string]string{"noutf8.test": noUTF8.addr, "local.test": home.addr}
			o.Dialer = nil
			b := newBounces()
			if tc.bounce {
				o.Bounce = b.fn
			}
			h := start(t, o)
			if _, _, err := h.q.Accept(context.Background(), "M1", "alice@local.test", []string{tc.rcpt}, nil, delivery.MemContent(testMessage)); err != nil {
				t.Fatal(err)
			}
			var report string
			if tc.bounce {
				report = string(recv(t, b.got, "the DSN"))
				b.mu.Lock()
				if b.utf8[0] != tc.wantUTF8 {
					t.Errorf("Bounce given SMTPUTF8 %v, want %v", b.utf8[0], tc.wantUTF8)
				}
				b.mu.Unlock()
			} else {
				dsn := recv(t, home.delivs, "the DSN")
				if dsn.from != "" || !slices.Equal(dsn.rcpts, []string{"alice@local.test"}) || dsn.utf8 != tc.wantUTF8 {
					t.Errorf("DSN sent MAIL FROM:<%s> SMTPUTF8 %v, RCPT %q; want <>, SMTPUTF8 %v, alice", dsn.from, dsn.utf8, dsn.rcpts, tc.wantUTF8)
				}
				report = dsn.data
			}
			if !strings.Contains(report, tc.final) || !strings.Contains(report, "\r\n<"+tc.rcpt+">: ") {
				t.Errorf("DSN lacks %q or <%s>:\n%s", tc.final, tc.rcpt, report)
			}
			h.waitUntil("the queue is empty", h.empty)
		})
	}
}

// TestUTF8ORcpt: the forms of RFC 6533 §3 a client may give an ORCPT of
// the utf-8 type in, and the one value each is kept as.
func TestUTF8ORcpt(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in      string
		unitext bool
		want    string // "" refused
	}{
		{`j\x{F6}rg@x.test`, false, `j\x{F6}rg@x.test`},
		{`j\x{f6}rg@x.test`, false, `j\x{F6}rg@x.test`},
		{"jörg@x.test", false, ""},
		{"jörg@x.test", true, `j\x{F6}rg@x.test`},
		{`j\x{F6}rg@x.test`, true, `j\x{F6}rg@x.test`},
		{`\x{1F600}@x.test`, false, `\x{1F600}@x.test`},
		{"😀@x.test", true, `\x{1F600}@x.test`},
		{`"a\x{20}b"@x.test`, false, `"a\x{20}b"@x.test`},
		{`a\x{5C}b@x.test`, false, `a\x{5C}b@x.test`},
		{`a\x{3D}b@x.test`, false, `a\x{3D}b@x.test`},
		{"a b@x.test", true, ""},
		{"a+b@x.test", true, ""},
		{"a=b@x.test", true, ""},
		{`a\x{41}@x.test`, false, ""},
		{`a\x{0F6}@x.test`, false, ""},
		{`a\x{F}@x.test`, false, ""},
		{`a\x{}@x.test`, false, ""},
		{`a\x{1234567}@x.test`, false, ""},
		{`a\x{DFFF}@x.test`, false, ""},
		{`a\x{0D}\x{0A}@x.test`, false, ""},
		{`a\x{85}@x.test`, false, ""},
		{`a\x{2028}@x.test`, false, ""},
		{"a\u2028@x.test", true, ""},
		{"a\xff@x.test", true, ""},
		{`a\y@x.test`, false, ""},
		{`a\x{F6}`, false, ""},
		{`@x.test`, false, ""},
		{`a@`, false, ""},
		{``, false, ""},
	} {
		got, ok := UTF8ORcpt(tc.in, tc.unitext)
		if !ok {
			got = ""
		}
		if got != tc.want || ok != (tc.want != "") {
			t.Errorf("%q (unitext %v) = %q %v, want %q", tc.in, tc.unitext, got, ok, tc.want)
		}
		if ok && (!ValidORcpt("utf-8;"+got) || !isASCII(got)) {
			t.Errorf("%q kept as %q, which the envelope refuses", tc.in, got)
		}
	}
}
