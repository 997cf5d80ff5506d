package sieve

import (
	"strings"
	"testing"
)

// TestNotify: the notify action as the deliverer gets it.
func TestNotify(t *testing.T) {
	tests := []struct{ name, src, want string }{
		{"defaults", `require "enotify"; notify "mailto:a@example.com";`,
			"notify importance=2 rcpt=To: a@example.com|implicit store INBOX"},
		{"a recipient notified once", `require "enotify"; notify "mailto:a@example.com"; notify :importance "1" "mailto:a@Example.COM?cc=b@example.com";`,
			"notify importance=2 rcpt=To: a@example.com|notify importance=1 rcpt=Cc: b@example.com|implicit store INBOX"},
		{"a notification with no one new is dropped", `require "enotify"; notify "mailto:a@example.com"; notify :message "again" "mailto:a@example.com";`,
			"notify importance=2 rcpt=To: a@example.com|implicit store INBOX"},
		{"recipients are bounded", `require "enotify"; notify "mailto:0@x.y?to=1@x.y,2@x.y,3@x.y,4@x.y,5@x.y,6@x.y,7@x.y,8@x.y,9@x.y";`,
			"notify importance=2 rcpt=To: 0@x.y,To: 1@x.y,To: 2@x.y,To: 3@x.y,To: 4@x.y,To: 5@x.y,To: 6@x.y,To: 7@x.y|implicit store INBOX"},
		{"reserved header fields are dropped", `require "enotify"; notify "mailto:a@x.y?from=evil@x.y&auto-submitted=no&content-type=text/html&X-Ok=1&message-id=%3Cx%3E";`,
			"notify importance=2 rcpt=To: a@x.y headers=X-Ok: 1|implicit store INBOX"},
		{"encodeurl", `require ["enotify", "variables", "fileinto"]; set :encodeurl "x" "a b/é~"; fileinto "${x}";`,
			"store a%20b%2F%C3%A9~"},
		{"an invalid method at run time fails the run", `require ["enotify", "variables"]; set "m" "xmpp"; notify "${m}:a@x.y";`, "error"},
		{"notifications are bounded", `require "enotify"; notify "mailto:a@x.y"; notify "mailto:b@x.y"; notify "mailto:c@x.y"; notify "mailto:d@x.y"; notify "mailto:e@x.y";`, "error"},
		{"up to the bound", `require "enotify"; notify "mailto:a@x.y"; notify "mailto:b@x.y"; notify "mailto:c@x.y"; notify "mailto:d@x.y"; notify "mailto:a@x.y";`,
			"notify importance=2 rcpt=To: a@x.y|notify importance=2 rcpt=To: b@x.y|notify importance=2 rcpt=To: c@x.y|notify importance=2 rcpt=To: d@x.y|implicit store INBOX"},
	}
	for _, tc := range tests {
		res := runScript(t, tc.src, Envelope{From: "a@example.com", To: "b@example.org"})
		if got := strings.Join(canonicalResult(res), "|"); got != tc.want {
			t.Errorf("%s: got %q, want %q", tc.name, got, tc.want)
		}
	}
	res := runScript(t, `require "enotify"; notify "mailto:Joe%20%3Cj@example.com%3E?cc=k@example.com";`, Envelope{})
	if n := res.Actions[0].Notify; n == nil || strings.Join(n.Recipients(), ",") != "j@example.com,k@example.com" {
		t.Errorf("recipients: %+v", res.Actions[0])
	}
}

// FuzzParseMailto: a notification URI from a script never yields more
// than the bounds, a reserved field, or a value that could break a header.
func FuzzParseMailto(f *testing.F) {
	for _, s := range []string{"mailto:a@example.com", "mailto:?to=a@b.c,d@e.f&cc=g@h.i&subject=x&body=y%0D%0Az",
		"MAILTO:Joe%20%3Cj@x.y%3E?from=e@x.y&X-A=%0Abcc:x", "mailto:a%40b.c?reply-to=a@b.c&reply-to=d@e.f"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, uri string) {
		n, err := parseMailto(uri)
		if err != nil {
			return
		}
		if len(n.To)+len(n.Cc) > maxNotifyRecipients || len(n.Headers) > maxNotifyHeaders {
			t.Fatalf("past the bounds: %+v", n)
		}
		for _, h := range n.Headers {
			if notifyReservedHeaders[strings.ToLower(h.Name)] || strings.ContainsAny(h.Name+h.Value, "\r\n") || strings.Contains(h.Name, ":") {
				t.Fatalf("unsafe field %q: %q", h.Name, h.Value)
			}
		}
		if strings.ContainsAny(n.Subject, "\r\n") {
			t.Fatalf("subject %q", n.Subject)
		}
		for _, r := range n.Recipients() {
			if strings.ContainsAny(r, "\r\n,") {
				t.Fatalf("recipient %q", r)
			}
		}
	})
}

// A mailto body may have lines (RFC 6068 §2: %0D%0A), as Pigeonhole takes
// it; a header field may not, nor may anything carry a NUL.
func TestMailtoBodyLines(t *testing.T) {
	n, err := parseMailto("mailto:a@b.c?subject=Hi&body=Line%201%0D%0ALine%202%0Acaf%C3%A9")
	if err != nil || !n.HasBody || n.Body != "Line 1\r\nLine 2\ncafé" {
		t.Fatalf("parseMailto: %+v, %v", n, err)
	}
	for _, uri := range []string{
		"mailto:a@b.c?X-Inj=a%0D%0ABcc:x@y.z",
		"mailto:a@b.c?subject=a%0Ab",
		"mailto:a@b.c?body=a%00b",
	} {
		if _, err := parseMailto(uri); err == nil {
			t.Errorf("%s accepted", uri)
		}
	}
}
