package wire

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
)

// readArgs reads a generic command: tag, name, then astrings, lists,
// sequence sets and literals up to the end of the line.
func readArgs(r *Reader) ([]string, error) {
	r.Begin()
	tag, err := r.Token(IsTagChar, "tag")
	if err != nil {
		return nil, err
	}
	out := []string{tag}
	var elem func() error
	elem = func() error {
		c, err := r.Peek()
		if err != nil {
			return err
		}
		switch {
		case c == '(':
			return r.List(true, elem)
		case c == '~':
			s, _, err := r.literalString(true)
			out = append(out, s)
			return err
		default:
			s, err := r.AString()
			out = append(out, s)
			return err
		}
	}
	for {
		if eol, err := r.AtEOL(); err != nil || eol {
			if err != nil {
				return out, err
			}
			return out, r.CRLF()
		}
		if err := r.SP(); err != nil {
			return out, err
		}
		if err := elem(); err != nil {
			return out, err
		}
	}
}

func TestReader(t *testing.T) {
	cases := []struct {
		name, in string
		want     []string
		errText  string
		conts    int
	}{
		{"atoms", "a1 NOOP\r\n", []string{"a1", "NOOP"}, "", 0},
		{"quoted", "a LOGIN \"us\\\"er\" \"p w\"\r\n", []string{"a", "LOGIN", `us"er`, "p w"}, "", 0},
		{"literal", "a LOGIN {4}\r\nuser {2+}\r\npw\r\n", []string{"a", "LOGIN", "user", "pw"}, "", 1},
		{"literal8", "a X ~{3}\r\na\x00b\r\n", []string{"a", "X", "a\x00b"}, "", 1},
		{"list", "a X (b (c d) \"e\")\r\n", []string{"a", "X", "b", "c", "d", "e"}, "", 0},
		{"bare LF", "a NOOP\n", []string{"a", "NOOP"}, "", 0},
		{"big sync literal", "a LOGIN {999999}\r\n", nil, "Literal too large", 0},
		{"deep", "a X " + strings.Repeat("(", 100) + "\r\n", nil, "Too deeply nested", 0},
		{"NUL quoted", "a LOGIN \"a\x00\" b\r\n", nil, "NUL in quoted string", 0},
		{"long line", "a X " + strings.Repeat("x", 70000) + "\r\n", nil, "Too long argument.", 0},
		{"many literals", "a X" + strings.Repeat(" {60000+}\r\n"+strings.Repeat("y", 60000), 20) + "\r\n", nil, "Too much literal data in one command", 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := NewReader(strings.NewReader(c.in), nil)
			conts := 0
			r.Continue = func() error { conts++; return nil }
			got, err := readArgs(r)
			if c.errText != "" {
				if err == nil || err.Error() != c.errText {
					t.Fatalf("err = %v, want %q", err, c.errText)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if strings.Join(got, "|") != strings.Join(c.want, "|") {
				t.Errorf("got %q, want %q", got, c.want)
			}
			if conts != c.conts {
				t.Errorf("continuations %d, want %d", conts, c.conts)
			}
		})
	}
}

// A synchronising literal over the limit is refused before its bytes:
// the reader asks for nothing more than the header line.
func TestOversizedSyncLiteralNotAwaited(t *testing.T) {
	pr, pw := io.Pipe()
	go pw.Write([]byte("a LOGIN {100000}\r\n")) // and nothing more, like a real client
	r := NewReader(pr, nil)
	r.Continue = func() error { t.Error("continuation sent for an oversized literal"); return nil }
	_, err := readArgs(r)
	var le *LimitError
	if !errors.As(err, &le) || !le.TooBig || le.Fatal {
		t.Fatalf("err = %#v, want a non-fatal TOOBIG LimitError", err)
	}
	if err := r.Discard(); err != nil {
		t.Fatal(err)
	}
}

// endless is a client sending one command line without end: head, then
// fill bytes (for ever, as far as a reader within its limits can tell:
// 16 MiB). read counts what was taken from it.
type endless struct {
	head string
	fill byte
	read int64
}

func (e *endless) Read(p []byte) (int, error) {
	if e.read >= 16<<20 {
		return 0, io.EOF
	}
	n := copy(p, e.head)
	e.head = e.head[n:]
	for i := n; i < len(p); i++ {
		p[i] = e.fill
	}
	e.read += int64(len(p))
	return len(p), nil
}

// A command line past MaxLine ends the connection without the rest of
// it being read, whether the parser (a token) or Discard (after an early
// syntax error) meets the limit: a client sending 200 MiB without CRLF, or
// a COMPRESS stream inflating to GiBs, is not read to its end.
func TestLongLineReadsNoFurther(t *testing.T) {
	for _, c := range []struct {
		name, head string
		fill       byte
		discard    bool // the command fails early; Discard meets the limit
	}{
		{"one long atom", "a NOOP ", 'a', false},
		{"long tag", "", 'a', false},
		{"syntax error, then the line goes on", "a X ) ", 'a', true},
		{"spaces after an error", "a X ) ", ' ', true},
	} {
		t.Run(c.name, func(t *testing.T) {
			src := &endless{head: c.head, fill: c.fill}
			r := NewReader(src, nil)
			_, err := readArgs(r)
			if c.discard {
				var se *SyntaxError
				if !errors.As(err, &se) {
					t.Fatalf("err = %v, want a syntax error", err)
				}
				err = r.Discard()
			}
			var le *LimitError
			if !errors.As(err, &le) || !le.Fatal || le.Msg != "Too long argument." {
				t.Fatalf("err = %#v, want the fatal \"Too long argument.\"", err)
			}
			if max := int64(r.Limits.MaxLine + bufSize); src.read > max {
				t.Errorf("read %d bytes of the line, want at most %d", src.read, max)
			}
		})
	}
}

func TestDiscardSkipsNonSyncLiterals(t *testing.T) {
	r := NewReader(strings.NewReader("a BOGUS ) {5+}\r\nhello more\r\nb NOOP\r\n"), nil)
	if _, err := readArgs(r); err == nil {
		t.Fatal("no error")
	}
	if err := r.Discard(); err != nil {
		t.Fatal(err)
	}
	got, err := readArgs(r)
	if err != nil || strings.Join(got, " ") != "b NOOP" {
		t.Fatalf("next command %q, %v", got, err)
	}
}

// markedSource returns r's bytes, then its own error in place of io.EOF,
// as imap's session reader marks the connection's errors.
type markedSource struct{ r io.Reader }

type sourceMark struct{ err error }

func (m *sourceMark) Error() string { return "conn: " + m.err.Error() }
func (m *sourceMark) Unwrap() error { return m.err }

func (s markedSource) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	if err != nil {
		err = &sourceMark{err}
	}
	return n, err
}

// A literal cut short by the end of the input is io.ErrUnexpectedEOF,
// with the source's error still in the chain: the caller tells by it
// that the client went away, not the file the literal was written to.
func TestLiteralCutShortKeepsSourceError(t *testing.T) {
	r := NewReader(markedSource{strings.NewReader("a APPEND x {10+}\r\nshort")}, nil)
	r.Begin()
	for range 3 { // tag, name, mailbox
		if _, err := r.Atom(); err != nil {
			t.Fatal(err)
		}
		if err := r.SP(); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := r.LiteralHeaderCheck(100, false, nil); err != nil {
		t.Fatal(err)
	}
	_, err := io.ReadAll(r)
	var m *sourceMark
	if !errors.Is(err, io.ErrUnexpectedEOF) || !errors.As(err, &m) {
		t.Fatalf("err = %v, want io.ErrUnexpectedEOF keeping the source's error", err)
	}
}

func TestSeqSet(t *testing.T) {
	r := NewReader(strings.NewReader("1:3,5,*:7 "), nil)
	s, err := r.SeqSet()
	if err != nil {
		t.Fatal(err)
	}
	want := []NumRange{{1, 3}, {5, 5}, {0, 7}}
	if len(s.Ranges) != 3 || s.Ranges[0] != want[0] || s.Ranges[1] != want[1] || s.Ranges[2] != want[2] {
		t.Fatalf("got %v", s.Ranges)
	}
	r = NewReader(strings.NewReader(strings.Repeat("1,", 20000)+"1 "), nil)
	r.Limits.MaxLine = 0
	if _, err := r.SeqSet(); err == nil || err.Error() != "Sequence set too large" {
		t.Fatalf("huge set: %v", err)
	}
}

func TestWriterRelease(t *testing.T) {
	var b bytes.Buffer
	w := NewWriter(&b, &Buffers{})
	w.Raw("* OK")
	w.SP()
	w.String("a\"b", false)
	w.SP()
	w.String("é", false)
	w.SP()
	w.NString("", false)
	w.CRLF()
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if w.bw != nil {
		t.Error("buffer kept after Flush")
	}
	if got, want := b.String(), "* OK \"a\\\"b\" {2}\r\né NIL\r\n"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}
