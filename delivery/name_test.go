package delivery

import (
	"bufio"
	"bytes"
	"io"
	"os"
	"strings"
	"testing"
	"time"
)

func TestEscapeHostname(t *testing.T) {
	t.Parallel()
	tests := []struct{ in, want string }{
		{"mx.example.org", "mx.example.org"},
		{"a/b", `a\057b`},
		{"a:b", `a\072b`},
		{"a,b", `a\054b`},
		{`a\b`, `a\134b`},
		{"a b\n", `a\040b\012`},
		{"é", "é"},
	}
	for _, tc := range tests {
		if got := escapeHostname(tc.in); got != tc.want {
			t.Errorf("escapeHostname(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestNewName(t *testing.T) {
	t.Parallel()
	now := time.Unix(1700000000, 123456789)
	a := newName(now, 42, 7, "mx", 10, 12)
	b := newName(now, 42, 7, "mx", 10, 12)
	if a == b {
		t.Errorf("two names with the same time, pid and counter are equal: %q", a)
	}
	if !strings.HasPrefix(a, "1700000000.M123456P42Q7R") || !strings.HasSuffix(a, ".mx,S=10,W=12") || !nameRE.MatchString(a) {
		t.Errorf("name %q does not have the documented shape", a)
	}
}

func TestSizesFromName(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		size, wsize int64
		ok          bool
	}{
		{"1700000000.M1P2Q3R00.mx,S=10,W=12", 10, 12, true},
		{"1700000000.M1P2Q3R00.mx,S=10,W=12:2,S", 10, 12, true},
		{"1700000000.M1P2Q3R00.mx,W=12,S=10:2,", 10, 12, true},
		{"1700000000.M1P2Q3R00.mx,S=0,W=0", 0, 0, true},
		{"1700000000.M1P2Q3R00.mx,S=10,W=12,XX=1", 10, 12, true},
		{"1700000000.M1P2Q3R00.mx", 0, 0, false},
		{"1700000000.M1P2Q3R00.mx,S=10", 0, 0, false},
		{"1700000000.M1P2Q3R00.mx,S=10,W=9", 0, 0, false},
		{"1700000000.M1P2Q3R00.mx,S=-1,W=12", 0, 0, false},
		{"1700000000.M1P2Q3R00.mx,S=+1,W=12", 0, 0, false},
		{"1700000000.M1P2Q3R00.mx,S=01,W=12", 0, 0, false},
		{"1700000000.M1P2Q3R00.mx,S=,W=12", 0, 0, false},
		{"1700000000.M1P2Q3R00.mx,S=99999999999999999999,W=12", 0, 0, false},
		{"x:2,S=10,W=12", 0, 0, false}, // sizes in the flags are not sizes
		{"", 0, 0, false},
	}
	for _, tc := range tests {
		size, wsize, ok := SizesFromName(tc.name)
		if size != tc.size || wsize != tc.wsize || ok != tc.ok {
			t.Errorf("SizesFromName(%q) = %d, %d, %v; want %d, %d, %v", tc.name, size, wsize, ok, tc.size, tc.wsize, tc.ok)
		}
	}
}

func FuzzSizesFromName(f *testing.F) {
	f.Add("1700000000.M1P2Q3R00.mx,S=10,W=12:2,S")
	f.Add(",S=1,W=1,S=2")
	f.Fuzz(func(t *testing.T, name string) {
		size, wsize, ok := SizesFromName(name)
		if !ok {
			if size != 0 || wsize != 0 {
				t.Errorf("not ok but sizes %d, %d", size, wsize)
			}
			return
		}
		if size < 0 || wsize < size {
			t.Errorf("ok with sizes %d, %d", size, wsize)
		}
		// A name we write round-trips.
		n := newName(time.Now(), 1, 1, escapeHostname(name), size, wsize)
		if s2, w2, ok := SizesFromName(n); !ok || s2 != size || w2 != wsize {
			t.Errorf("newName with host %q: %q parses as %d, %d, %v", name, n, s2, w2, ok)
		}
	})
}

// FuzzCopyParts checks the CRLF→LF conversion and the S=/W= sizes against
// a naive implementation, for a body read through ReadAt and one read in
// place (MemContent).
func FuzzCopyParts(f *testing.F) {
	f.Add([]byte("Received: x\r\n"), []byte("a\r\nb\nc\r\r\n\r"))
	f.Add([]byte(""), []byte("\r\n\r\n"))
	f.Fuzz(func(t *testing.T, header, body []byte) {
		for _, content := range []Content{bytes.NewReader(body), MemContent(body)} {
			c := copyParts{prefix: buildPrefix("a@b", "", "c@d"), header: header, body: content}
			var err error
			if c.stats, err = scanBody(c.body); err != nil {
				t.Fatal(err)
			}
			var buf bytes.Buffer
			hint, _ := c.sizes() // only sizes the buffer
			if err := c.writeTo(&buf, hint); err != nil {
				t.Fatal(err)
			}
			want := string(c.prefix) + strings.ReplaceAll(string(header), "\r\n", "\n") + strings.ReplaceAll(string(body), "\r\n", "\n")
			if buf.String() != want {
				t.Fatalf("%T: wrote %q, want %q", content, buf.Bytes(), want)
			}
			size, wsize := c.sizes()
			if size != int64(buf.Len()) || wsize != int64(crlfSize(buf.Bytes())) {
				t.Errorf("%T: sizes %d, %d; file %d bytes, %d with CRLF", content, size, wsize, buf.Len(), crlfSize(buf.Bytes()))
			}
		}
	})
}

// TestMemContentReadAt: MemContent reads as io.ReaderAt says, as the queue
// and the milters read it.
func TestMemContentReadAt(t *testing.T) {
	t.Parallel()
	m := MemContent("0123456789")
	for _, tc := range []struct {
		off, n int
		want   string
		eof    bool
	}{
		{0, 4, "0123", false},
		{6, 4, "6789", false},
		{8, 4, "89", true},
		{10, 1, "", true},
		{12, 1, "", true},
	} {
		p := make([]byte, tc.n)
		n, err := m.ReadAt(p, int64(tc.off))
		if string(p[:n]) != tc.want || (err == io.EOF) != tc.eof || (err != nil && err != io.EOF) {
			t.Errorf("ReadAt(%d bytes, %d) = %q, %v; want %q, EOF %v", tc.n, tc.off, p[:n], err, tc.want, tc.eof)
		}
	}
	if _, err := m.ReadAt(make([]byte, 1), -1); err == nil {
		t.Error("ReadAt at -1: no error")
	}
}

func TestWriteLFChunkBoundaries(t *testing.T) {
	t.Parallel()
	// A CRLF straddling the bufio buffer's edge must still become one LF.
	for _, n := range []int{4095, 4096, 4097, 65535, 65536} {
		body := append(bytes.Repeat([]byte("x"), n), "\r\n"...)
		var buf bytes.Buffer
		w := bufio.NewWriterSize(&buf, 4096)
		if err := writeLF(w, body); err != nil {
			t.Fatal(err)
		}
		w.Flush()
		if buf.Len() != n+1 || buf.Bytes()[n] != '\n' {
			t.Errorf("n=%d: wrote %d bytes ending %q", n, buf.Len(), buf.Bytes()[buf.Len()-2:])
		}
	}
}

// TestWriteLFFromChunks: a body read in readChunk pieces (a large message
// in a file) converts a CRLF split between two pieces to one LF, keeps a
// lone CR at a piece's end, and its counts match what was written.
func TestWriteLFFromChunks(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		body []byte
	}{
		{"CRLF across the edge", append(bytes.Repeat([]byte("x"), readChunk-1), "\r\nend\r\n"...)},
		{"CR at the edge, no LF", append(bytes.Repeat([]byte("x"), readChunk-1), "\rend\r\n"...)},
		{"CRLF right after the edge", append(bytes.Repeat([]byte("x"), readChunk), "\r\nend\r\n"...)},
		{"ends with CR", append(bytes.Repeat([]byte("y\r\n"), readChunk), '\r')},
		{"three chunks", bytes.Repeat([]byte("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcd\r\n"), 3*readChunk/64+7)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, err := os.CreateTemp(t.TempDir(), "body")
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if _, err := f.Write(tc.body); err != nil {
				t.Fatal(err)
			}
			c := copyParts{prefix: buildPrefix("a@b", "", "c@d"), body: io.NewSectionReader(f, 0, int64(len(tc.body)))}
			if c.stats, err = scanBody(c.body); err != nil {
				t.Fatal(err)
			}
			var buf bytes.Buffer
			size, wsize := c.sizes()
			if err := c.writeTo(&buf, size); err != nil {
				t.Fatal(err)
			}
			want := string(c.prefix) + strings.ReplaceAll(string(tc.body), "\r\n", "\n")
			if buf.String() != want {
				t.Fatalf("wrote %d bytes, want %d", buf.Len(), len(want))
			}
			if size != int64(buf.Len()) || wsize != int64(crlfSize(buf.Bytes())) {
				t.Errorf("sizes %d, %d; file %d bytes, %d with CRLF", size, wsize, buf.Len(), crlfSize(buf.Bytes()))
			}
		})
	}
}
