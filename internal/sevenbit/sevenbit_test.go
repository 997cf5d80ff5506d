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
// its body.
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
