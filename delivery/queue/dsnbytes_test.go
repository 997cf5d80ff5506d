package queue

import (
	"regexp"
	"strings"
	"testing"
	"time"
)

// stableDSN is a DSN as the sender gets it, less what changes from one DSN
// to the next (the MIME boundary, the random half of the Message-ID), so
// that a test can compare it whole. Line ends are shown as "\n".
func stableDSN(raw []byte) string {
	s := regexp.MustCompile(`=_courriel_[0-9a-f]{24}`).ReplaceAllString(string(raw), "=_courriel_BOUNDARY")
	s = regexp.MustCompile(`(?m)^(Message-ID: <[0-9A-F]+\.)[0-9A-F]{32}@`).ReplaceAllString(s, "${1}RANDOM@")
	return strings.ReplaceAll(s, "\r\n", "\n")
}

// dsnCase is one DSN built from a message, compared byte for byte with
// what its sender must receive.
type dsnCase struct {
	name string
	kind dsnKind
	m    *Message
	ret  returned
	want string
}

func (tc dsnCase) run(t *testing.T) {
	t.Helper()
	q := &Queue{o: Options{Hostname: "mta.test", MaxLifetime: 5 * 24 * time.Hour}}
	tc.m.ID = strings.Repeat("A", idLen)
	tc.m.Created = time.Unix(0, 0).UTC()
	raw := q.buildDSN(tc.m, tc.kind, tc.m.Recipients, tc.ret, time.Unix(7200, 0).UTC())
	if rest := strings.ReplaceAll(string(raw), "\r\n", ""); strings.ContainsAny(rest, "\r\n") {
		t.Errorf("%s: a bare CR or LF in the DSN", tc.name)
	}
	if got := stableDSN(raw); got != tc.want {
		t.Errorf("%s: DSN\n%s\nwant\n%s", tc.name, got, tc.want)
	}
}

// TestDSNBytesASCII pins the bytes of RFC 3464 DSNs, those about messages
// that need no UTF-8: they stay as they were before RFC 6533 DSNs were
// written (dsnutf8_test.go), 8-bit headers returned without SMTPUTF8 and
// an ORCPT of RFC 6533's utf-8 type (its xtext form, ASCII) included.
func TestDSNBytesASCII(t *testing.T) {
	t.Parallel()
	for _, tc := range []dsnCase{
		{name: "failed, 8-bit header without SMTPUTF8", kind: dsnFailed,
			m: &Message{From: "alice@local.test", Recipients: []Recipient{{Addr: "bob@remote.test", State: StateFailed, Code: 550, Status: "5.1.1",
				Reply: "550 5.1.1 <bob@remote.test>: user unknown", RemoteMTA: "mx.remote.test", LastAttempt: time.Unix(50, 0).UTC()}}},
			ret: returned{data: []byte("Subject: caf\xc3\xa9\r\nFrom: <alice@local.test>\r\n")},
			want: `From: Mail Delivery System <MAILER-DAEMON@mta.test>
To: <alice@local.test>
Subject: Undelivered Mail Returned to Sender
Date: Thu, 01 Jan 1970 02:00:00 +0000
Message-ID: <AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA.RANDOM@mta.test>
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status;
	boundary="=_courriel_BOUNDARY"

This is a MIME-encapsulated message.

--=_courriel_BOUNDARY
Content-Description: Notification
Content-Type: text/plain; charset=us-ascii

This is the mail system at host mta.test.

I'm sorry to have to inform you that your message could not be delivered to
one or more recipients. Its headers are attached below.

For further assistance, please send mail to postmaster. If you do so, please
include this problem report.

                   The mail system

<bob@remote.test>: host mx.remote.test said: 550 5.1.1 <bob@remote.test>:
user unknown


--=_courriel_BOUNDARY
Content-Description: Delivery report
Content-Type: message/delivery-status

Reporting-MTA: dns; mta.test
X-Courriel-Queue-ID: AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA
Arrival-Date: Thu, 01 Jan 1970 00:00:00 +0000

Final-Recipient: rfc822; bob@remote.test
Action: failed
Status: 5.1.1
Remote-MTA: dns; mx.remote.test
Diagnostic-Code: smtp; 550 5.1.1 <bob@remote.test>: user unknown
Last-Attempt-Date: Thu, 01 Jan 1970 00:00:50 +0000

--=_courriel_BOUNDARY
Content-Description: Undelivered Message Headers
Content-Type: text/rfc822-headers
Content-Transfer-Encoding: 8bit

Subject: café
From: <alice@local.test>

--=_courriel_BOUNDARY--
`},
		{name: "delayed, ENVID, a utf-8 ORCPT, an alias", kind: dsnDelayed,
			m: &Message{From: "alice@local.test", EnvID: "env-1", Recipients: []Recipient{
				{Addr: "bob@remote.test", State: StatePending, Status: "4.2.0", ORcpt: `utf-8;j\x{F6}rg@remote.test`,
					Reply: "451 4.2.0 mailbox busy", Code: 451, RemoteMTA: "mx.remote.test", LastAttempt: time.Unix(50, 0).UTC()},
				{Addr: "carol@remote.test", OrigTo: "team@local.test", State: StatePending, Status: "4.4.1", Reply: "connection refused"}}},
			ret: returned{data: []byte("Subject: hi\r\n")},
			want: `From: Mail Delivery System <MAILER-DAEMON@mta.test>
To: <alice@local.test>
Subject: Delayed Mail (still being retried)
Date: Thu, 01 Jan 1970 02:00:00 +0000
Message-ID: <AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA.RANDOM@mta.test>
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status;
	boundary="=_courriel_BOUNDARY"

This is a MIME-encapsulated message.

--=_courriel_BOUNDARY
Content-Description: Notification
Content-Type: text/plain; charset=us-ascii

This is the mail system at host mta.test.

####################################################################
# THIS IS A WARNING ONLY.  YOU DO NOT NEED TO RESEND YOUR MESSAGE. #
####################################################################

Your message could not be delivered for 2 hours. It will be retried until it
is 5 days old.

                   The mail system

<bob@remote.test>: host mx.remote.test said: 451 4.2.0 mailbox busy

<carol@remote.test>: connection refused


--=_courriel_BOUNDARY
Content-Description: Delivery report
Content-Type: message/delivery-status

Original-Envelope-Id: env-1
Reporting-MTA: dns; mta.test
X-Courriel-Queue-ID: AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA
Arrival-Date: Thu, 01 Jan 1970 00:00:00 +0000

Original-Recipient: utf-8; j\x{F6}rg@remote.test
Final-Recipient: rfc822; bob@remote.test
Action: delayed
Status: 4.2.0
Remote-MTA: dns; mx.remote.test
Diagnostic-Code: smtp; 451 4.2.0 mailbox busy
Last-Attempt-Date: Thu, 01 Jan 1970 00:00:50 +0000
Will-Retry-Until: Tue, 06 Jan 1970 00:00:00 +0000

Original-Recipient: rfc822; team@local.test
Final-Recipient: rfc822; carol@remote.test
Action: delayed
Status: 4.4.1
Diagnostic-Code: X-Courriel; connection refused
Will-Retry-Until: Tue, 06 Jan 1970 00:00:00 +0000

--=_courriel_BOUNDARY
Content-Description: Undelivered Message Headers
Content-Type: text/rfc822-headers

Subject: hi

--=_courriel_BOUNDARY--
`},
	} {
		tc.run(t)
	}
}
