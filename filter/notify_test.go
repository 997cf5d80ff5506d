package filter

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"courriel/delivery"
	"courriel/sieve"
)

// TestNotifyQueued: a notify action (RFC 5435, mailto) leaves through the
// queue as Deliver queues it: from <>, to the URI's recipients, with the
// headers RFC 5436 asks for; none for an auto-submitted message, whose
// copy is stored all the same.
func TestNotifyQueued(t *testing.T) {
	base := t.TempDir()
	home := base + "/u"
	os.MkdirAll(home, 0o755)
	script := `require ["enotify", "variables"];
if header :matches "subject" "*" { set "s" "${1}"; }
notify :importance "1" :from "Alice <alice@example.org>" :message "New mail: ${s}"
	"mailto:pager@far.example?cc=boss@far.example&X-Tag=urgent&from=evil@far.example&auto-submitted=no";
notify :from "ceo@elsewhere.example" "mailto:pager@far.example?to=second@far.example";`
	os.WriteFile(home+"/.dovecot.sieve", []byte(script), 0o644)
	store, _ := delivery.NewStore(delivery.Options{Hostname: "h", AllowedBase: base})
	q := &recordingQueue{}
	f, _ := New(Options{Store: store, Outbound: q, Hostname: "mx.x.y",
		Directory: fakeDir{"u@x.y": {Home: home, Addresses: []string{"alice@example.org"}}}})
	deliver := func(id, header string) {
		t.Helper()
		m := &delivery.Message{ID: id, From: "s@z.z", Body: bytes.NewReader([]byte(header + "Subject: Quarterly report\r\n\r\nbody\r\n")), Arrived: time.Unix(1700000000, 0)}
		r := delivery.Recipient{Address: "u@x.y", Maildir: home + "/mailbox/"}
		if errs := f.Deliver(context.Background(), m, []delivery.Recipient{r}); errs[0] != nil {
			t.Fatal(errs[0])
		}
	}
	deliver("m1", "From: s@z.z\r\n")
	if len(q.sent) != 2 || q.sent[0] != " -> pager@far.example,boss@far.example" || q.sent[1] != " -> second@far.example" {
		t.Fatalf("queued %v, want two notifications from <>: pager and boss, then only second (pager already notified)", q.sent)
	}
	head, _, _ := strings.Cut(q.data[0], "\r\n\r\n")
	for _, want := range []string{
		"From: \"Alice\" <alice@example.org>\r\n",
		"To: <pager@far.example>\r\n",
		"Cc: <boss@far.example>\r\n",
		"Subject: New mail: Quarterly report\r\n",
		"Auto-Submitted: auto-notified; owner-email=\"u@x.y\"\r\n",
		"Precedence: bulk\r\n",
		"X-Priority: 1 (Highest)\r\n",
		"X-Tag: urgent\r\n",
	} {
		if !strings.Contains(head+"\r\n", want) {
			t.Errorf("notification lacks %q:\n%s", want, q.data[0])
		}
	}
	if strings.Contains(head, "evil@") || strings.Count(head, "Auto-Submitted:") != 1 {
		t.Errorf("the URI's reserved fields reached the notification:\n%s", head)
	}
	if !strings.HasSuffix(q.data[0], "\r\n\r\nNotification of new message.\r\n") {
		t.Errorf("body:\n%s", q.data[0])
	}
	second, _, _ := strings.Cut(q.data[1], "\r\n\r\n")
	for _, want := range []string{"From: <u@x.y>\r\n", "To: <second@far.example>\r\n", "Subject: Notification: Quarterly report\r\n"} {
		if !strings.Contains(second+"\r\n", want) {
			t.Errorf("second notification lacks %q (a :from not the user's is not used):\n%s", want, q.data[1])
		}
	}

	deliver("m2", "Auto-Submitted: auto-replied\r\n")
	if len(q.sent) != 2 {
		t.Errorf("notified for an auto-submitted message: %v", q.sent[2:])
	}
	if entries, _ := os.ReadDir(home + "/mailbox/new"); len(entries) != 2 {
		t.Errorf("%d messages stored, want both", len(entries))
	}
}

// A body with lines leaves with CRLF line ends only, a bare CR or LF
// included, and a line too long for SMTP is quoted-printable.
func TestNotificationBodyLines(t *testing.T) {
	f := &Filter{o: Options{Now: time.Now, Hostname: "mx.x.y"}}
	msg := &sieve.Message{}
	for _, tc := range []struct{ body, want string }{
		{"Line 1\r\nLine 2\rLine 3\nLine 4", "\r\n\r\nLine 1\r\nLine 2\r\nLine 3\r\nLine 4\r\n"},
		{strings.Repeat("x", 1200), "Content-Transfer-Encoding: quoted-printable\r\n"},
	} {
		got := string(f.composeNotification(msg, "u@x.y", "u@x.y", &sieve.Notification{To: []string{"p@far.example"}, Subject: "s", HasSubject: true, Body: tc.body, HasBody: true}))
		if !strings.Contains(got, tc.want) {
			t.Errorf("body %.20q: notification lacks %q:\n%s", tc.body, tc.want, got)
		}
		for i := 0; i < len(got); i++ {
			if got[i] == '\r' && (i+1 == len(got) || got[i+1] != '\n') || got[i] == '\n' && (i == 0 || got[i-1] != '\r') {
				t.Fatalf("bare CR or LF at %d:\n%q", i, got)
			}
		}
		for l := range strings.SplitSeq(got, "\r\n") {
			if len(l) > 998 {
				t.Errorf("a line of %d octets", len(l))
			}
		}
	}
}
