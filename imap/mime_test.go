package imap

import (
	"bufio"
	"fmt"
	"strings"
	"testing"
)

const mixedMessage = "From: a@b\r\nContent-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n" +
	"preamble\r\n--b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nfirst part\r\n" +
	"--b1\r\nContent-Type: message/rfc822\r\n\r\nSubject: inner\r\nFrom: c@d\r\n\r\ninner body\r\n" +
	"--b1\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\naGVs\r\nbG8=\r\n" +
	"--b1--\r\nepilogue\r\n"

func TestSections(t *testing.T) {
	raw := []byte(mixedMessage)
	cases := []struct {
		path   []int
		kind   sectionKind
		fields []string
		not    bool
		want   string
	}{
		{[]int{1}, secAll, nil, false, "first part"},
		{[]int{1}, secMIME, nil, false, "Content-Type: text/plain; charset=utf-8\r\n\r\n"},
		{[]int{2}, secAll, nil, false, "Subject: inner\r\nFrom: c@d\r\n\r\ninner body"},
		{[]int{2}, secHeader, nil, false, "Subject: inner\r\nFrom: c@d\r\n\r\n"},
		{[]int{2}, secText, nil, false, "inner body"},
		{[]int{2, 1}, secAll, nil, false, "inner body"},
		{[]int{2}, secHeader, []string{"FROM"}, false, "From: c@d\r\n\r\n"},
		{nil, secHeader, []string{"FROM"}, true, "Content-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n"},
		{[]int{4}, secAll, nil, false, ""},
		{[]int{1, 1}, secAll, nil, false, "first part"},
		{[]int{1, 2}, secAll, nil, false, ""},
	}
	for _, c := range cases {
		got := string(extractBody(raw, c.path, c.kind, c.fields, c.not))
		if got != c.want {
			t.Errorf("%v %d %v: %q, want %q", c.path, c.kind, c.fields, got, c.want)
		}
	}
	if b, ok := extractBinary(raw, []int{3}); !ok || string(b) != "hello" {
		t.Errorf("BINARY[3] = %q %v", b, ok)
	}
	bs := bodyStructure(raw)
	if bs.Type != "multipart" || len(bs.Children) != 3 || bs.Children[1].Sub == nil || bs.Children[1].Envelope.Subject != "inner" {
		t.Errorf("BODYSTRUCTURE %+v", bs)
	}
}

// A message nesting multiparts 10,000 deep is served, cut at maxBodyDepth.
func TestDeepMIMEBounded(t *testing.T) {
	var b strings.Builder
	b.WriteString("Subject: deep\r\n")
	for i := range 10000 {
		fmt.Fprintf(&b, "Content-Type: multipart/mixed; boundary=\"x%d\"\r\n\r\n--x%d\r\n", i, i)
	}
	b.WriteString("\r\nend\r\n")
	bs := bodyStructure([]byte(b.String()))
	d := 0
	for p := bs; p != nil && len(p.Children) > 0; p = p.Children[0] {
		d++
	}
	if d > maxBodyDepth+1 {
		t.Errorf("BODYSTRUCTURE %d deep", d)
	}
}

func TestCRLFReaderMatchesToCRLF(t *testing.T) {
	for _, in := range []string{"", "a", "a\n", "a\r\nb\nc\r\n", "\n\n\r\n\r", strings.Repeat("line\n", 20000) + "x\r\n\r\n"} {
		var out strings.Builder
		r := &crlfReader{r: bufio.NewReaderSize(strings.NewReader(in), 16)}
		buf := make([]byte, 7) // odd sizes split CR LF pairs across reads
		for {
			n, err := r.Read(buf)
			out.Write(buf[:n])
			if err != nil {
				break
			}
		}
		if want := string(toCRLF([]byte(in))); out.String() != want {
			t.Errorf("%.20q: got %.40q, want %.40q", in, out.String(), want)
		}
	}
}

// A binary APPEND (literal8) is stored base64-encoded: BINARY gives back
// the very bytes, whatever the maildir does to line ends.
func TestEncodeBinaryParts(t *testing.T) {
	body := "\x00-\xe4\n\r\n\n"
	for _, raw := range []string{
		"Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: binary\r\n\r\n" + body,
		"Content-Type: multipart/mixed; boundary=z\r\n\r\n--z\r\nContent-Type: text/plain\r\n\r\ntext\r\n--z\r\nContent-Transfer-Encoding: binary\r\n\r\n" + body + "\r\n--z--\r\n",
	} {
		enc := encodeBinaryParts([]byte(raw))
		if strings.IndexByte(string(enc), 0) >= 0 {
			t.Errorf("NUL left in %q", enc)
		}
		stored := strings.ReplaceAll(string(enc), "\r\n", "\n") // as the maildir keeps it
		path := []int{1}
		if strings.Contains(raw, "multipart") {
			path = []int{2}
			if got := string(extractBody(toCRLF([]byte(stored)), []int{1}, secAll, nil, false)); got != "text" {
				t.Errorf("text part changed: %q", got)
			}
		}
		got, ok := extractBinary(toCRLF([]byte(stored)), path)
		if !ok || string(got) != body {
			t.Errorf("BINARY%v = %q, want %q", path, got, body)
		}
	}
}

// Delimiter lines with nothing between them make empty parts (RFC 2046
// §5.1.1), as Dovecot reads them; they used to slice past the part's start.
func TestEmptyMultipartParts(t *testing.T) {
	cases := []struct {
		name  string
		body  string
		sizes []uint32
	}{
		{"adjacent", "--X\r\n--X\r\nContent-Type: text/plain\r\n\r\nhi\r\n--X--\r\n", []uint32{0, 2}},
		{"adjacent close", "--X\r\n--X--\r\n", []uint32{0}},
		{"no line end", "--X\r\n--X", []uint32{0}},
		{"empty then text", "--X\r\n\r\n--X\r\n\r\nhi\r\n--X--", []uint32{0, 2}},
	}
	for _, c := range cases {
		raw := []byte("Subject: e\r\nContent-Type: multipart/mixed; boundary=\"X\"\r\n\r\n" + c.body)
		bs := bodyStructure(raw)
		var sizes []uint32
		for _, p := range bs.Children {
			sizes = append(sizes, p.Size)
		}
		if fmt.Sprint(sizes) != fmt.Sprint(c.sizes) {
			t.Errorf("%s: part sizes %v, want %v", c.name, sizes, c.sizes)
		}
		for i := range c.sizes {
			if got := extractBody(raw, []int{i + 1}, secAll, nil, false); len(got) != int(c.sizes[i]) {
				t.Errorf("%s: BODY[%d] = %q", c.name, i+1, got)
			}
			extractBinary(raw, []int{i + 1})
		}
		encodeBinaryParts(raw)
	}
}

// FuzzMIME feeds whatever a sender can put through port 25 to the parts of
// FETCH that parse MIME: none may panic, and a section is always a slice of
// the message.
func FuzzMIME(f *testing.F) {
	f.Add([]byte(mixedMessage))
	f.Add([]byte("Content-Type: multipart/mixed; boundary=\"X\"\r\n\r\n--X\r\n--X--"))
	f.Add([]byte("Content-Type: multipart/mixed; boundary=b1\r\n\r\n--b1\r\nContent-Type: multipart/mixed; boundary=b10\r\n\r\n--b10\r\n--b1\r\n--b10--\r\n--b1--"))
	f.Add([]byte("Content-Type: message/rfc822\r\n\r\nContent-Type: multipart/digest; boundary=d\r\n\r\n--d\r\n\r\nx\r\n--d--"))
	f.Add([]byte("Content-Type: text/plain (c (n)); name*1*=%E9; name*0*=iso-8859-1'fr'%E9t; x=\"a\\\"b\"\r\nContent-Disposition: attachment; filename*=''a;;b=c\r\n\r\nx"))
	f.Fuzz(func(t *testing.T, raw []byte) {
		bodyStructure(raw)
		for _, path := range [][]int{nil, {1}, {2}, {1, 1}, {1, 2}, {2, 1}} {
			for _, kind := range []sectionKind{secAll, secMIME, secHeader, secText} {
				if len(path) == 0 && kind == secMIME {
					continue
				}
				if b := extractBody(raw, path, kind, nil, false); len(b) > len(raw) {
					t.Fatalf("section %v/%d longer than the message", path, kind)
				}
			}
			extractBinary(raw, path)
		}
		encodeBinaryParts(raw)
	})
}

// A text part without a charset gets RFC 2046's us-ascii in BODYSTRUCTURE,
// after its other parameters, as Dovecot writes it, whether or not it
// names a Content-Type.
func TestTextCharsetDefault(t *testing.T) {
	cases := []struct{ header, want string }{
		{"", `("charset" "us-ascii")`},
		{"Content-Type: text/plain\r\n", `("charset" "us-ascii")`},
		{"Content-Type: text/plain; format=flowed\r\n", `("format" "flowed" "charset" "us-ascii")`},
		{"Content-Type: text/html; charset=utf-8\r\n", `("charset" "utf-8")`},
		{"Content-Type: text/html; CharSet=utf-8\r\n", `("CharSet" "utf-8")`},
		{"Content-Type: application/pdf\r\n", `NIL`},
	}
	for _, c := range cases {
		bs := bodyStructure([]byte(c.header + "Subject: x\r\n\r\nbody\r\n"))
		if got := string(appendParams(nil, bs.Params, false)); got != c.want {
			t.Errorf("%q: params %s, want %s", c.header, got, c.want)
		}
	}
}
