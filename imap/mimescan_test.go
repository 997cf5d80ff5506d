package imap

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"maps"
	"reflect"
	"strings"
	"testing"
)

// scanCases are messages whose structure scanMIME must find as
// parseEntity does: the ordinary, and every edge of RFC 2046's
// delimiters that parseEntity has an answer for.
var scanCases = map[string]string{
	"plain":                                    "Subject: a\r\n\r\nbody\r\n",
	"no body":                                  "Subject: a\r\n",
	"no header":                                "\r\nbody\r\n",
	"empty":                                    "",
	"no CRLF at the end":                       "Subject: a\r\n\r\nbody",
	"header only, blank line":                  "Subject: a\r\n\r\n",
	"LF lines":                                 "Subject: a\nContent-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: text/plain\n\none\n--b\n\ntwo\n--b--\n",
	"mixed endings":                            "Subject: a\r\nContent-Type: multipart/mixed; boundary=b\n\r\n\r\n--b\r\n\ntwo\n--b--\r\n",
	"multipart":                                "Content-Type: multipart/mixed; boundary=\"B\"\r\n\r\npreamble\r\n--B\r\nContent-Type: text/plain\r\n\r\none\r\n--B\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\nAAAA\r\n--B--\r\nepilogue\r\n",
	"no close delimiter":                       "Content-Type: multipart/mixed; boundary=B\r\n\r\n--B\r\n\r\none\r\n--B\r\n\r\ntwo\r\n",
	"two delimiters in a row":                  "Content-Type: multipart/mixed; boundary=B\r\n\r\n--B\r\n--B\r\n\r\nx\r\n--B--\r\n",
	"part header cut by the delimiter":         "Content-Type: multipart/mixed; boundary=B\r\n\r\n--B\r\nContent-Type: text/plain\r\n\r\n--B--\r\n",
	"blank first line cut":                     "Content-Type: multipart/mixed; boundary=B\r\n\r\n--B\r\n\r\n--B--\r\n",
	"delimiter without newline at the end":     "Content-Type: multipart/mixed; boundary=B\r\n\r\n--B\r\n\r\none\r\n--B",
	"delimiter with a suffix":                  "Content-Type: multipart/mixed; boundary=B\r\n\r\n--Bxyz\r\n\r\none\r\n--B--x\r\n",
	"close delimiter without newline":          "Content-Type: multipart/mixed; boundary=B\r\n\r\n--B\r\n\r\none\r\n--B--",
	"nested":                                   "Content-Type: multipart/mixed; boundary=out\r\n\r\n--out\r\nContent-Type: multipart/alternative; boundary=in\r\n\r\n--in\r\n\r\nplain\r\n--in\r\nContent-Type: text/html\r\n\r\n<p>\r\n--in--\r\n--out\r\nContent-Type: message/rfc822\r\n\r\nSubject: inner\r\nContent-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\n\r\ndeep\r\n--x--\r\n--out--\r\n",
	"outer delimiter inside an inner part":     "Content-Type: multipart/mixed; boundary=out\r\n\r\n--out\r\nContent-Type: multipart/mixed; boundary=in\r\n\r\n--in\r\n\r\na\r\n--out\r\n\r\nb\r\n--in--\r\n--out--\r\n",
	"outer delimiter inside an inner header":   "Content-Type: multipart/mixed; boundary=out\r\n\r\n--out\r\nContent-Type: multipart/mixed;\r\n--out\r\n boundary=in\r\n\r\n--in--\r\n",
	"inner delimiter is a prefix of the outer": "Content-Type: multipart/mixed; boundary=ab\r\n\r\n--ab\r\nContent-Type: multipart/mixed; boundary=a\r\n\r\n--a\r\n\r\nx\r\n--ab\r\n\r\ny\r\n--ab--\r\n",
	"outer delimiter is a prefix of the inner": "Content-Type: multipart/mixed; boundary=a\r\n\r\n--a\r\nContent-Type: multipart/mixed; boundary=ab\r\n\r\n--ab\r\n\r\nx\r\n--ab--\r\n--a--\r\n",
	"inner delimiter last, before the outer":   "Content-Type: multipart/mixed; boundary=out\r\n\r\n--out\r\nContent-Type: multipart/mixed; boundary=in\r\n\r\n--in\r\n--out--\r\n",
	"message without a header end":             "Content-Type: multipart/mixed; boundary=B\r\n\r\n--B\r\nContent-Type: message/rfc822\r\n--B--\r\n",
	"message with an empty body":               "Content-Type: message/rfc822\r\n\r\n",
	"digest":                                   "Content-Type: multipart/digest; boundary=d\r\n\r\n--d\r\n\r\nSubject: one\r\n\r\nx\r\n--d\r\nContent-Type: text/plain\r\n\r\ny\r\n--d--\r\n",
	"NUL in a part":                            "Content-Type: multipart/mixed; boundary=B\r\n\r\n--B\r\nContent-Transfer-Encoding: binary\r\n\r\na\x00b\r\n--B\r\n\r\nclean\r\n--B--\r\n",
	"CR alone":                                 "Subject: a\r\r\n\r\nbody\rmore\r\n",
	"empty boundary":                           "Content-Type: multipart/mixed; boundary=\"\"\r\n\r\n--\r\n\r\nx\r\n",
	"no boundary":                              "Content-Type: multipart/mixed\r\n\r\n--\r\n\r\nx\r\n",
	"bare LF blank line":                       "Subject: a\n\r\nbody\r\n",
	"CRLF then LF":                             "Subject: a\r\n\nbody\r\n",
	"bare LF before a delimiter":               "Content-Type: multipart/mixed; boundary=B\r\n\r\n--B\r\nX: y\r\n\r\none\n--B\r\n\n--B\r\nX: z\n--B--\r\n",
	"inner delimiter, LF, outer delimiter":     "Content-Type: multipart/mixed; boundary=out\r\n\r\n--out\r\nContent-Type: multipart/mixed; boundary=in\r\n\r\n--in\n--out--\r\n",
	"close delimiter with junk":                "Content-Type: multipart/mixed; boundary=B\r\n\r\n--B\r\n\r\none\r\n--B--junk\r\n--B\r\n\r\nepilogue\r\n",
	"boundary of 90 octets":                    "Content-Type: multipart/mixed; boundary=" + strings.Repeat("x", 90) + "\r\n\r\n--" + strings.Repeat("x", 90) + "\r\n\r\none\r\n--" + strings.Repeat("x", 80) + "Q\r\n\r\ntwo\r\n",
	"boundary ending in CR":                    "Content-Type: multipart/mixed; boundary=\"B\\\r\"\r\n\r\n--B\r\r\n\r\none\r\n--B\r--\r\n",
}

// TestScanMIMEAsParseEntity: scanMIME finds, entity by entity, what
// parseEntity finds in the same bytes, taken as they are or with bare LFs
// as CRLF (a maildir file read for IMAP), and reads them through buffers
// small enough to cut lines and CRLFs.
func TestScanMIMEAsParseEntity(t *testing.T) {
	cases := maps.Clone(scanCases)
	// A long line (longer than the scanner's buffer), CRs at every place.
	long := strings.Repeat("0123456789abcde\r", 9000)
	cases["long lines"] = "Content-Type: multipart/mixed; boundary=B\r\n\r\n--B\r\n\r\n" + long + "\r\n--B\r\n" + "X: " + long + "\n\r\n" + long + "--B--"
	deep := "Content-Type: multipart/mixed; boundary=B\r\n\r\n"
	for range maxBodyDepth + 3 {
		deep += "--B\r\nContent-Type: message/rfc822\r\n\r\n"
	}
	cases["deeper than maxBodyDepth"] = deep + "x\r\n"
	many := "Content-Type: multipart/mixed; boundary=B\r\n\r\n" + strings.Repeat("--B\r\n\r\nx\r\n", maxParts+5) + "--B--\r\n"
	cases["more parts than maxParts"] = many
	for name, msg := range cases {
		for _, lfToCRLF := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/crlf=%v", name, lfToCRLF), func(t *testing.T) {
				checkScan(t, []byte(msg), lfToCRLF)
			})
		}
	}
}

// FuzzScanMIME compares scanMIME with parseEntity on any bytes.
func FuzzScanMIME(f *testing.F) {
	for _, msg := range scanCases {
		f.Add([]byte(msg), false)
		f.Add([]byte(msg), true)
	}
	f.Fuzz(func(t *testing.T, msg []byte, lfToCRLF bool) {
		checkScan(t, msg, lfToCRLF)
	})
}

func checkScan(t *testing.T, msg []byte, lfToCRLF bool) {
	t.Helper()
	form := msg
	if lfToCRLF {
		if out, changed := appendCRLF(nil, msg); changed {
			form = out
		}
	}
	got, size, err := scanMIME(bytes.NewReader(msg), lfToCRLF)
	if err != nil {
		if err == errScanBounds {
			return // the caller reads such a message whole
		}
		t.Fatal(err)
	}
	if size != int64(len(form)) {
		t.Errorf("size %d, want %d", size, len(form))
	}
	want := parseEntity(form, "text/plain", 0)
	if diff := compareParts(form, want, got, "root"); diff != "" {
		t.Errorf("%q (crlf %v):\n%s", msg, lfToCRLF, diff)
	}
	// BODYSTRUCTURE from the scan: sizes, line counts, the envelopes of
	// encapsulated messages.
	if w, g := bodyPartOf(want, 0), bodyPartOf(got, 0); !reflect.DeepEqual(w, g) {
		t.Errorf("%q (crlf %v): BODYSTRUCTURE from the scan\n%s\nwant\n%s", msg, lfToCRLF,
			appendBodyStructure(nil, g, true, true, 0), appendBodyStructure(nil, w, true, true, 0))
	}
	// The file offsets lead to the same bytes.
	var check func(p *mpart)
	check = func(p *mpart) {
		s := p.span
		if h := readForm(msg, s.fileStart, s.headerLen(), lfToCRLF); !bytes.Equal(h, form[s.start:s.bodyStart]) {
			t.Errorf("header at file offset %d: %q, want %q", s.fileStart, h, form[s.start:s.bodyStart])
		}
		if s.bodyLen() > 0 {
			if b := readForm(msg, s.fileBody, s.bodyLen(), lfToCRLF); !bytes.Equal(b, form[s.bodyStart:s.end]) {
				t.Errorf("body at file offset %d: %q, want %q", s.fileBody, b, form[s.bodyStart:s.end])
			}
		}
		for _, c := range p.children {
			check(c)
		}
		if p.msg != nil {
			check(p.msg)
		}
	}
	check(got)
}

// readForm reads n bytes of msg's form from file offset off.
func readForm(msg []byte, off, n int64, lfToCRLF bool) []byte {
	b := msg[off:]
	if lfToCRLF {
		buf := make([]byte, n)
		k, _ := io.ReadFull(&crlfReader{r: bufio.NewReader(bytes.NewReader(b))}, buf)
		return buf[:k]
	}
	return b[:min(int64(len(b)), n)]
}

// compareParts describes how a scanned entity differs from parseEntity's.
func compareParts(raw []byte, want, got *mpart, at string) string {
	var d strings.Builder
	ws := int64(cap(raw) - cap(want.header))
	wb := int64(cap(raw) - cap(want.body))
	we := wb + int64(len(want.body))
	s := got.span
	if s.start != ws || s.bodyStart != wb || s.end != we {
		fmt.Fprintf(&d, "%s: span [%d %d %d], want [%d %d %d]\n", at, s.start, s.bodyStart, s.end, ws, wb, we)
	}
	if got.ctype != want.ctype || got.subtype != want.subtype || !maps.Equal(got.params, want.params) || got.fields != want.fields {
		fmt.Fprintf(&d, "%s: type %s/%s %v %+v, want %s/%s %v %+v\n", at, got.ctype, got.subtype, got.params, got.fields, want.ctype, want.subtype, want.params, want.fields)
	}
	if nul := bytes.IndexByte(want.body, 0) >= 0; s.nul != nul {
		fmt.Fprintf(&d, "%s: NUL %v, want %v\n", at, s.nul, nul)
	}
	if len(got.children) != len(want.children) {
		fmt.Fprintf(&d, "%s: %d parts, want %d\n", at, len(got.children), len(want.children))
	} else {
		for i := range got.children {
			d.WriteString(compareParts(raw, want.children[i], got.children[i], fmt.Sprintf("%s.%d", at, i+1)))
		}
	}
	switch {
	case (got.msg == nil) != (want.msg == nil):
		fmt.Fprintf(&d, "%s: encapsulated message %v, want %v\n", at, got.msg != nil, want.msg != nil)
	case got.msg != nil:
		d.WriteString(compareParts(raw, want.msg, got.msg, at+".msg"))
	}
	return d.String()
}
