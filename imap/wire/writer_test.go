package wire

import (
	"bytes"
	"strings"
	"testing"
	"testing/iotest"
)

// TestLiteralNULReplaced: a literal carries no NUL (CHAR8, RFC 9051 §4.3):
// each becomes 0x80, as Dovecot sends them, the length unchanged; a
// literal8 carries them as they are. The caller's bytes are left alone.
func TestLiteralNULReplaced(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		in     string
		binary bool
		want   string
	}{
		{"plain", false, "{5}\r\nplain"},
		{"a\x00b\x00\x00c", false, "{6}\r\na\x80b\x80\x80c"},
		{"\x00", false, "{1}\r\n\x80"},
		{"a\x00b", true, "~{3}\r\na\x00b"},
	} {
		write := map[string]func(w *Writer){
			"LiteralBytes": func(w *Writer) { w.LiteralBytes([]byte(c.in), c.binary) },
			"LiteralFrom": func(w *Writer) {
				// One byte a read: the replacement holds across reads.
				if err := w.LiteralFrom(iotest.OneByteReader(strings.NewReader(c.in)), int64(len(c.in)), c.binary); err != nil {
					t.Fatal(err)
				}
			},
		}
		if !c.binary {
			write["Literal"] = func(w *Writer) { w.Literal(c.in) }
			write["String"] = func(w *Writer) { w.String(c.in, true) }
		}
		for name, f := range write {
			var out bytes.Buffer
			w := NewWriter(&out, nil)
			f(w)
			w.Flush()
			want := c.want
			if name == "String" && !strings.Contains(c.in, "\x00") {
				want = `"` + c.in + `"`
			}
			if out.String() != want {
				t.Errorf("%s(%q, binary %v) = %q, want %q", name, c.in, c.binary, out.String(), want)
			}
		}
	}
	b := []byte("x\x00y")
	NewWriter(&bytes.Buffer{}, nil).LiteralBytes(b, false)
	if string(b) != "x\x00y" {
		t.Errorf("LiteralBytes changed its argument: %q", b)
	}
}

// TestStringUTF8Quoted: after UTF8=ACCEPT a quoted string may hold UTF-8,
// and UTF-8 only (RFC 9051 utf8-quoted): other 8-bit text goes as a
// literal, as before it.
func TestStringUTF8Quoted(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		in   string
		utf8 bool
		want string
	}{
		{"café", true, `"café"`},
		{"café", false, "{5}\r\ncafé"},
		{"caf\xe9", true, "{4}\r\ncaf\xe9"},
		{"caf\xe9", false, "{4}\r\ncaf\xe9"},
		{"ok \xc3", true, "{4}\r\nok \xc3"},
		{`a"b`, true, `"a\"b"`},
	} {
		var out bytes.Buffer
		w := NewWriter(&out, nil)
		w.String(c.in, c.utf8)
		w.Flush()
		if out.String() != c.want {
			t.Errorf("String(%q, utf8 %v) = %q, want %q", c.in, c.utf8, out.String(), c.want)
		}
	}
}
