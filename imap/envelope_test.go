package imap

import (
	"bytes"
	"fmt"
	"net/mail"
	"strings"
	"testing"
	"time"

	"courriel/imap/mailstore"
)

// headerValuesOracle is the straightforward reading of a header that
// scanHeader and fieldValue replace (a map of every field, copied): the
// fast path must give the same values.
func headerValuesOracle(h []byte) map[string][]string {
	out := map[string][]string{}
	var key string
	var val []byte
	flush := func() {
		if key != "" {
			out[key] = append(out[key], strings.TrimSpace(string(val)))
		}
		key, val = "", nil
	}
	for len(h) > 0 {
		i := bytes.IndexByte(h, '\n')
		var line []byte
		if i < 0 {
			line, h = h, nil
		} else {
			line, h = h[:i], h[i+1:]
		}
		line = bytes.TrimSuffix(line, []byte("\r"))
		if len(line) == 0 {
			break
		}
		if line[0] == ' ' || line[0] == '\t' {
			if key != "" {
				val = append(val, line...)
			}
			continue
		}
		flush()
		c := bytes.IndexByte(line, ':')
		if c <= 0 {
			continue
		}
		key = strings.ToLower(string(bytes.TrimRight(line[:c], " \t")))
		val = append([]byte(nil), line[c+1:]...)
	}
	flush()
	return out
}

var headerCases = []string{
	"Subject: hello\r\nFrom: a@b\r\n\r\nbody",
	"Subject: hello\nFrom: a@b\n\nbody",
	"Subject:   folded\r\n  line two\r\n\tline three \r\nTo: x@y\r\n\r\n",
	"Subject:\r\n folded after empty\r\n\r\n",
	" continuation first\r\nSubject: s\r\n\r\n",
	"garbage line\r\n continued garbage\r\nSubject: after garbage\r\n\r\n",
	"Subject: one\r\nsubject: two\r\nSUBJECT: three\r\n\r\n",
	"Subject : spaced name\r\nFrom\t: tabbed\r\n\r\n",
	":no name\r\nSubject: x\r\n\r\n",
	"Subject: bare cr\rin the middle\r\n\r\n",
	"Subject: double cr\r\r\n\r\n",
	"Subject: no final newline",
	"Subject: cr at end\r",
	"Subject: x\r\n \r\n\r\n",
	"Subject: \xff\xfe bytes \x85\r\n\r\n",
	"Content-Type: text/plain;\r\n charset=utf-8\r\nContent-Transfer-Encoding: base64\r\nContent-ID: <a@b>\r\nContent-Description: d\r\nContent-Disposition: attachment; filename=x\r\nContent-Language: fr, en\r\nContent-Location: http://x\r\ncontent-type: second\r\n\r\n",
	"Content-Type:\r\n\r\n",
	"Date: Mon, 2 Jan 2023 10:00:00 +0000\r\nIn-Reply-To: <a@b>\r\nMessage-ID: <c@d>\r\nReply-To: r@s\r\nSender: s@t\r\nCc: c@d\r\nBcc: e@f\r\n\r\n",
	"\r\nSubject: after blank\r\n",
	"",
}

func TestScanHeaderMatchesOracle(t *testing.T) {
	names := append(envelopeFieldNames[:], "content-type", "content-transfer-encoding", "content-id",
		"content-description", "content-disposition", "content-language", "content-location")
	for _, h := range headerCases {
		want := headerValuesOracle([]byte(h))
		got := map[string][]string{}
		scanHeader([]byte(h), func(name, raw []byte) {
			got[strings.ToLower(string(name))] = append(got[strings.ToLower(string(name))], fieldValue(raw))
		})
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%q:\n got %q\nwant %q", h, got, want)
		}
		for i, n := range envelopeFieldNames {
			if envelopeField([]byte(strings.ToUpper(n))) != i || envelopeField([]byte(n)) != i {
				t.Errorf("envelopeField(%q) != %d", n, i)
			}
		}
		mf := parseMIMEFields([]byte(h))
		first := func(k string) string {
			if l := want[k]; len(l) > 0 {
				return l[0]
			}
			return ""
		}
		wantMF := mimeFields{
			ctype: first("content-type"), cte: first("content-transfer-encoding"), disposition: first("content-disposition"),
			language: first("content-language"), location: first("content-location"), id: first("content-id"),
			description: first("content-description"), hasType: len(want["content-type"]) > 0,
		}
		if mf != wantMF {
			t.Errorf("%q: MIME fields %+v, want %+v", h, mf, wantMF)
		}
		_ = names
	}
}

func TestParseMailDateMatchesNetMail(t *testing.T) {
	for _, d := range []string{
		"Mon, 2 Jan 2023 10:00:00 +0000", "Mon, 02 Jan 2023 10:00:00 -0130", "Tue, 31 Dec 2024 23:59:59 +1400",
		"Mon, 30 Feb 2023 10:00:00 +0000", "Mon, 2 Jan 23 10:00:00 +0000", "Mon, 2 Jan 2023 10:00 +0000",
		"Mon, 2 Jan 2023 10:00:00 +0000 (UTC)", "Mon, 2 Jan 2023 10:00:00 GMT", "2 Jan 2023 10:00:00 +0000",
		"Monday, 2 Jan 2023 10:00:00 +0000", "Xyz, 2 Jan 2023 10:00:00 +0000", "Mon, 2-Jan-2023 10:00:00 +0000",
		"Mon, 2 Jan 2023 24:00:00 +0000", "Mon, 2 Jan 2023 10:00:60 +0000", "Mon, 2 Jan 2023 10:00:00 +9999",
		"Mon, 2 Jan 2023 10:00:00 +00", "Mon,  2 Jan 2023 10:00:00 +0000", "mon, 2 jan 2023 10:00:00 +0000",
		"Mon, 2 Jan 2023 10:00:00 +0000\r", "", "garbage", "Mon, 2 Jan 2023 10:00:00 +0100",
	} {
		got, gerr := parseMailDate(d)
		want, werr := mail.ParseDate(d)
		if (gerr == nil) != (werr == nil) || !got.Equal(want) || got.Format(time.RFC3339Nano) != want.Format(time.RFC3339Nano) {
			t.Errorf("%q: got %v %v, want %v %v", d, got, gerr, want, werr)
		}
	}
}

// TestAppendWritersMatch checks the append-style writers against known
// output: quoting, literals for 8-bit text without UTF8=ACCEPT, escapes.
func TestAppendQuoted(t *testing.T) {
	for _, c := range []struct {
		in   string
		utf8 bool
		want string
	}{
		{"plain", false, `"plain"`},
		{`a "q" \b`, false, `"a \"q\" \\b"`},
		{"", false, `""`},
		{"caf\xc3\xa9", false, "{5}\r\ncaf\xc3\xa9"},
		{"caf\xc3\xa9", true, "\"caf\xc3\xa9\""},
		{"a\r\nb", true, "{4}\r\na\r\nb"},
	} {
		if got := string(appendQuoted(nil, c.in, c.utf8)); got != c.want {
			t.Errorf("appendQuoted(%q, %v) = %q, want %q", c.in, c.utf8, got, c.want)
		}
	}
	env := &mailstore.Envelope{Date: time.Date(2023, 1, 2, 10, 0, 0, 0, time.FixedZone("", 3600)), Subject: "s",
		From: []mailstore.Address{{Name: "N", Mailbox: "a", Host: "b"}}, InReplyTo: []string{"<x@y>"}}
	env.Sender, env.ReplyTo = env.From, env.From
	want := `("Mon, 02 Jan 2023 10:00:00 +0100" "s" (("N" NIL "a" "b")) (("N" NIL "a" "b")) (("N" NIL "a" "b")) NIL NIL NIL "<x@y>" NIL)`
	if got := string(appendEnvelope(nil, env, false)); got != want {
		t.Errorf("appendEnvelope:\n got %s\nwant %s", got, want)
	}
}
