package sevenbit

import (
	"bytes"
	"io"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net/mail"
	"strings"
	"testing"
)

// decodedParts reads a message as a mail reader would: every leaf part's
// decoded content, in order, and checks that nothing over 127 is left in
// its body. A text part is read in its charset as Thunderbird and webmails
// read it (the WHATWG encoding standard): utf-8 as it is, us-ascii (the
// default, RFC 2045 §5.2) as windows-1252, whose octets from 0xA0 are
// Latin-1's.
func decodedParts(t *testing.T, msg []byte) []string {
	t.Helper()
	m, err := mail.ReadMessage(bytes.NewReader(msg))
	if err != nil {
		t.Fatalf("not a message: %v\n%s", err, msg)
	}
	var out []string
	var walk func(h map[string][]string, body io.Reader, depth int)
	walk = func(h map[string][]string, body io.Reader, depth int) {
		get := func(k string) string {
			if v := h[k]; len(v) > 0 {
				return v[0]
			}
			return ""
		}
		ct, params, _ := mime.ParseMediaType(get("Content-Type"))
		b, _ := io.ReadAll(body)
		if Has8bit(b) {
			t.Errorf("8-bit octets left in a %q body: %q", ct, b)
		}
		switch {
		case strings.HasPrefix(ct, "multipart/"):
			r := multipart.NewReader(bytes.NewReader(b), params["boundary"])
			for {
				p, err := r.NextRawPart()
				if err != nil {
					break
				}
				walk(p.Header, p, depth+1)
			}
		case ct == "message/rfc822":
			inner, err := mail.ReadMessage(bytes.NewReader(b))
			if err != nil {
				t.Fatalf("inner message: %v", err)
			}
			walk(inner.Header, inner.Body, depth+1)
		default:
			if strings.EqualFold(get("Content-Transfer-Encoding"), "quoted-printable") {
				b, _ = io.ReadAll(quotedprintable.NewReader(bytes.NewReader(b)))
			}
			charset := strings.ToLower(params["charset"])
			if ct == "" || strings.HasPrefix(ct, "text/") && (charset == "" || charset == "us-ascii") {
				r := make([]rune, len(b))
				for i, c := range b {
					r[i] = rune(c)
				}
				b = []byte(string(r))
			}
			out = append(out, string(b))
		}
	}
	walk(m.Header, m.Body, 0)
	return out
}

func TestDowngrade(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, in string
		changed  bool
		parts    []string // decoded, as a reader sees them
	}{
		{"7-bit", "Subject: a\r\n\r\nhello\r\n", false, []string{"hello\r\n"}},
		{"8-bit header only", "Subject: caf\xc3\xa9\r\n\r\nhello\r\n", false, nil},
		{"8-bit text", "Subject: a\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\ncaf\xc3\xa9 = cr\xc3\xa8me\r\n", true,
			[]string{"caf\xc3\xa9 = cr\xc3\xa8me\r\n"}},
		{"multipart", "Subject: m\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\npreamble\r\n--b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n\xc3\xa9t\xc3\xa9\r\n--b\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\naGVsbG8=\r\n--b--\r\nepilogue\r\n", true,
			[]string{"\xc3\xa9t\xc3\xa9", "aGVsbG8="}},
		// UTF-8 text sent without MIME fields (a script, an old client),
		// or with a Content-Type that names no charset: converted, it says
		// charset=utf-8, or the reader would read it as us-ascii.
		{"UTF-8 without Content-Type", "Subject: a\r\n\r\ncaf\xc3\xa9 cr\xc3\xa8me\r\n", true,
			[]string{"caf\xc3\xa9 cr\xc3\xa8me\r\n"}},
		{"UTF-8 text/plain without charset", "Subject: a\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; format=flowed\r\n\r\nna\xc3\xafve\r\n", true,
			[]string{"na\xc3\xafve\r\n"}},
		{"UTF-8 part without Content-Type", "Subject: m\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\n\xc3\xa9t\xc3\xa9\r\n--b--\r\n", true,
			[]string{"\xc3\xa9t\xc3\xa9"}},
		// Not UTF-8: no charset can be told; the reader's us-ascii is
		// windows-1252, which is what Latin-1 text needs.
		{"Latin-1 without Content-Type", "Subject: a\r\n\r\ncaf\xe9\r\n", true, []string{"caf\xc3\xa9\r\n"}},
		{"message/rfc822", "Subject: f\r\nMIME-Version: 1.0\r\nContent-Type: message/rfc822\r\n\r\nSubject: inner\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\nna\xc3\xafve\r\n", true,
			[]string{"na\xc3\xafve\r\n"}},
	}
	for _, c := range cases {
		out, changed := Downgrade([]byte(c.in))
		if changed != c.changed {
			t.Errorf("%s: changed %v", c.name, changed)
		}
		if !changed {
			if string(out) != c.in {
				t.Errorf("%s: unchanged message altered: %q", c.name, out)
			}
			continue
		}
		if !bytes.Contains(out, []byte("MIME-Version: 1.0\r\n")) {
			t.Errorf("%s: no MIME-Version:\n%s", c.name, out)
		}
		got := decodedParts(t, out)
		if strings.Join(got, "|") != strings.Join(c.parts, "|") {
			t.Errorf("%s: parts %q, want %q\n%s", c.name, got, c.parts, out)
		}
	}
	// The charset joins the parameters the part had.
	out, _ := Downgrade([]byte("Content-Type: text/plain; format=flowed\r\n\r\n\xc3\xa9\r\n"))
	if !bytes.Contains(out, []byte("\r\nContent-Type: text/plain; charset=utf-8; format=flowed\r\n")) {
		t.Errorf("Content-Type not kept with its charset:\n%s", out)
	}
}

// FuzzDowngrade: whatever the message, the conversion ends, and what it
// changes leaves no octet over 127 outside the header fields.
func FuzzDowngrade(f *testing.F) {
	f.Add([]byte("Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\n\xc3\xa9\r\n--b--\r\n"))
	f.Add([]byte("Content-Type: message/rfc822\r\n\r\nContent-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\n--x\r\n\xff\r\n"))
	f.Add([]byte("\r\n\xff"))
	f.Fuzz(func(t *testing.T, msg []byte) {
		out, changed := Downgrade(msg)
		if !changed && !bytes.Equal(out, msg) {
			t.Fatal("unchanged, yet different")
		}
	})
}

// TestDowngradeDelimiters: parts are cut where a mail reader cuts them
// (internal/mimepart, Dovecot's rule), so that each is converted alone and
// the delimiter lines, preamble and epilogue go as they came. Before, a
// line starting with the delimiter and more ("--bXYZ", "--b--junk") was
// content here, and a part's header after it was encoded with the part
// before; a bare LF before a delimiter line was a part's, and came out as
// CRLF; an empty boundary split nothing.
func TestDowngradeDelimiters(t *testing.T) {
	t.Parallel()
	const text = "Content-Type: text/plain; charset=utf-8\r\n\r\n"
	const qp = "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
	many := func(n int, part string) string {
		return strings.Repeat("--b\r\n"+part+"\r\n", n) + "--b--\r\n"
	}
	cases := []struct {
		name, boundary, in, want string
	}{
		{"a suffix after the delimiter", "b",
			"--b\r\n" + text + "\xc3\xa9\r\n--bXYZ\r\n" + text + "\xc3\xa8\r\n--b--\r\n",
			"--b\r\n" + qp + "=C3=A9\r\n--bXYZ\r\n" + qp + "=C3=A8\r\n--b--\r\n"},
		{"a close delimiter with junk, then the epilogue", "b",
			"pre\r\n--b\r\n" + text + "\xc3\xa9\r\n--b--junk=1\r\n--b\r\nepilogue\r\n",
			"pre\r\n--b\r\n" + qp + "=C3=A9\r\n--b--junk=1\r\n--b\r\nepilogue\r\n"},
		{"a bare LF before a delimiter", "b",
			"--b\n" + text + "\xc3\xa9\n--b--\n",
			"--b\n" + qp + "=C3=A9\n--b--\n"},
		{"an empty boundary", "",
			"--\r\n" + text + "\xc3\xa9\r\n--zz\r\n" + text + "\xc3\xa8\r\n",
			"--\r\n" + qp + "=C3=A9\r\n--zz\r\n" + qp + "=C3=A8\r\n"},
		{"no close delimiter", "b",
			"--b\r\n" + text + "\xc3\xa9\r\n",
			"--b\r\n" + qp + "=C3=A9\r\n"},
		// An outer boundary that is a prefix of an inner one: the inner
		// one's lines are its own (Dovecot's rule), so "--l1--alt" does
		// not close the outer multipart, leaving its last part as it was.
		{"l1 around l1--alt", "l1",
			"--l1\r\nContent-Type: multipart/alternative; boundary=l1--alt\r\n\r\n--l1--alt\r\n" + text + "\xc3\xa9\r\n--l1--alt--\r\n--l1\r\n" + text + "\xc3\xa8\r\n--l1--\r\n",
			"--l1\r\nContent-Type: multipart/alternative; boundary=l1--alt\r\n\r\n--l1--alt\r\n" + qp + "=C3=A9\r\n--l1--alt--\r\n--l1\r\n" + qp + "=C3=A8\r\n--l1--\r\n"},
		{"many parts", "b", many(1005, text+"\xc3\xa9"), many(1005, qp+"=C3=A9")},
	}
	for _, c := range cases {
		head := "Subject: d\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"" + c.boundary + "\"\r\n\r\n"
		out, changed := Downgrade([]byte(head + c.in))
		if got := strings.TrimPrefix(string(out), head); !changed || got != c.want {
			t.Errorf("%s: changed %v\n got  %.300q\n want %.300q", c.name, changed, got, c.want)
		}
	}
}
