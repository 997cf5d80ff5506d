package wire

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"strings"
	"testing"
)

// segments is a reader that returns its data in pieces of the given sizes
// (cycled), as a socket does.
type segments struct {
	data  []byte
	sizes []int
	i     int
	read  int // octets handed out
}

func (s *segments) Read(p []byte) (int, error) {
	if len(s.data) == 0 {
		return 0, io.EOF
	}
	n := min(len(p), len(s.data), s.sizes[s.i%len(s.sizes)])
	s.i++
	copy(p, s.data[:n])
	s.data = s.data[n:]
	s.read += n
	return n, nil
}

func TestReadLine(t *testing.T) {
	t.Parallel()
	in := "EHLO a\r\nNOOP\nRSET\r\n" + strings.Repeat("x", 98) + "\r\n" + strings.Repeat("y", 99) + "\r\nQUIT"
	for _, sizes := range [][]int{{1}, {3, 7}, {4096}} {
		r := NewReader(&segments{data: []byte(in), sizes: sizes}, 100, nil)
		for _, want := range []string{"EHLO a", "NOOP", "RSET", strings.Repeat("x", 98)} {
			got, err := r.ReadLine()
			if err != nil || string(got) != want {
				t.Fatalf("sizes %v: got %q, %v; want %q", sizes, got, err, want)
			}
		}
		if _, err := r.ReadLine(); !errors.Is(err, ErrLineTooLong) {
			t.Fatalf("sizes %v: line of 101 octets: %v", sizes, err)
		}
	}
	r := NewReader(strings.NewReader("QUIT"), 100, nil)
	if _, err := r.ReadLine(); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("unterminated last line: %v", err)
	}
}

// TestReadLineBounded: a line of 10 MB is refused after at most the limit
// and one buffer of it was read: the reader never holds it.
func TestReadLineBounded(t *testing.T) {
	t.Parallel()
	src := &segments{data: bytes.Repeat([]byte("a"), 10<<20), sizes: []int{1 << 20}}
	r := NewReader(src, 4096, nil)
	if _, err := r.ReadLine(); !errors.Is(err, ErrLineTooLong) {
		t.Fatalf("10 MB line: %v", err)
	}
	if src.read > 2*4096 || cap(r.buf) > 4096 {
		t.Fatalf("read %d octets, buffer %d, for a 4096 limit", src.read, cap(r.buf))
	}
}

// TestWaitBeforeRead: the wait hook runs before each read from the source
// and never while a whole line is buffered (pipelined replies are held).
func TestWaitBeforeRead(t *testing.T) {
	t.Parallel()
	waits := 0
	r := NewReader(&segments{data: []byte("MAIL\r\nRCPT\r\nDATA\r\nNOOP\r\n"), sizes: []int{18, 100}}, 100, func() error { waits++; return nil })
	for i, want := range []int{1, 1, 1, 2} {
		if _, err := r.ReadLine(); err != nil {
			t.Fatal(err)
		}
		if waits != want {
			t.Fatalf("after line %d: %d waits, want %d", i+1, waits, want)
		}
	}
}

// stuff dot-stuffs body (lines ending in CRLF) and adds the end of data.
func stuff(body string) string {
	var b strings.Builder
	for _, l := range strings.SplitAfter(body, "\r\n") {
		if strings.HasPrefix(l, ".") {
			b.WriteByte('.')
		}
		b.WriteString(l)
	}
	b.WriteString(".\r\n")
	return b.String()
}

// readData reads one DATA message and then one line from the stream.
func readData(t testing.TB, stream string, sizes []int, bufSize int) (body, next string, err error) {
	r := NewReader(&segments{data: []byte(stream), sizes: sizes}, 4096, nil)
	d := r.DataReader()
	var out bytes.Buffer
	buf := make([]byte, bufSize)
	for {
		n, err := d.Read(buf)
		out.Write(buf[:n])
		if err == io.EOF {
			break
		}
		if err != nil {
			return out.String(), "", err
		}
	}
	line, err := r.ReadLine()
	return out.String(), string(line), err
}

// TestDataReader: every body comes back as it was stuffed, however the
// stream is cut, and the command after the end of data is intact.
func TestDataReader(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(1, 2))
	lines := []string{".", "..", ".x", "x.", "", "text", ".\r", "\r", "a\rb", "\n.\n", strings.Repeat("z", 70000)}
	for i := range 300 {
		var b strings.Builder
		for range rng.IntN(12) {
			b.WriteString(lines[rng.IntN(len(lines))] + "\r\n")
		}
		body := b.String()
		sizes := []int{1 + rng.IntN(20), 1 + rng.IntN(5000)}
		got, next, err := readData(t, stuff(body)+"NOOP\r\n", sizes, 1+rng.IntN(40000))
		if err != nil || got != body || next != "NOOP" {
			t.Fatalf("case %d: got %q (%v), next %q; want %q", i, got, err, next, body)
		}
	}
}

// TestDataEnd: only <CRLF>.<CRLF> ends DATA (or ".<CRLF>" first); what the
// other "ends" leave is text, and ".<CR>x" loses its dot and CR.
func TestDataEnd(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ in, body, next string }{
		{".\r\nNOOP\r\n", "", "NOOP"},
		{"a\r\n.\r\nNOOP\r\n", "a\r\n", "NOOP"},
		{"a\n.\nb\r\n.\r\nNOOP\r\n", "a\n.\nb\r\n", "NOOP"},
		{"a\r.\rb\r\n.\r\nNOOP\r\n", "a\r.\rb\r\n", "NOOP"},
		{"a\n.\r\nb\r\n.\r\nNOOP\r\n", "a\n.\r\nb\r\n", "NOOP"},
		{"a\r\n.\rb\r\n.\r\nNOOP\r\n", "a\r\nb\r\n", "NOOP"},
		{"a\r\r\n.\r\nNOOP\r\n", "a\r\r\n", "NOOP"},
		{"..\r\n...\r\n.\r\nNOOP\r\n", ".\r\n..\r\n", "NOOP"},
	} {
		for _, size := range []int{1, 2, 3, 1000} {
			got, next, err := readData(t, tc.in, []int{size}, 7)
			if err != nil || got != tc.body || next != tc.next {
				t.Errorf("%q in reads of %d: got %q, next %q, %v; want %q, %q", tc.in, size, got, next, err, tc.body, tc.next)
			}
		}
	}
	r := NewReader(strings.NewReader("a\r\nb"), 4096, nil)
	if _, err := io.ReadAll(r.DataReader()); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("message cut short: %v", err)
	}
}

// TestDataDiscard: Discard stops at the end of data, or after limit.
func TestDataDiscard(t *testing.T) {
	t.Parallel()
	r := NewReader(strings.NewReader("abc\r\n..\r\n.\r\nNOOP\r\n"), 4096, nil)
	d := r.DataReader()
	if ok, err := d.Discard(100); !ok || err != nil || d.Consumed() != 12 {
		t.Fatalf("discard: %v %v, consumed %d", ok, err, d.Consumed())
	}
	if l, _ := r.ReadLine(); string(l) != "NOOP" {
		t.Fatalf("after discard: %q", l)
	}
	r = NewReader(strings.NewReader(strings.Repeat("x", 100)+"\r\n.\r\n"), 4096, nil)
	if ok, err := r.DataReader().Discard(50); ok || err != nil {
		t.Fatalf("discard past limit: %v %v", ok, err)
	}
}

// TestChunk: a BDAT chunk is its octets exactly, whatever they are; the
// next command follows.
func TestChunk(t *testing.T) {
	t.Parallel()
	chunk := "a\r\n.\r\nMAIL FROM:<x@y>\r\n" + strings.Repeat("l", 100000)
	for _, size := range []int{1, 4000, 1 << 20} {
		r := NewReader(&segments{data: []byte("BDAT\r\n" + chunk + "NOOP\r\n"), sizes: []int{size}}, 4096, nil)
		r.ReadLine()
		got, err := io.ReadAll(r.ChunkReader(int64(len(chunk))))
		if err != nil || string(got) != chunk {
			t.Fatalf("reads of %d: %d octets, %v", size, len(got), err)
		}
		if l, _ := r.ReadLine(); string(l) != "NOOP" {
			t.Fatalf("reads of %d: after the chunk %q", size, l)
		}
	}
	r := NewReader(strings.NewReader("0123456789NOOP\r\n"), 4096, nil)
	c := r.ChunkReader(10)
	if ok, err := c.Discard(5); ok || err != nil || c.Left() != 5 {
		t.Fatalf("partial discard: %v %v %d", ok, err, c.Left())
	}
	if ok, err := c.Discard(5); !ok || err != nil {
		t.Fatalf("discard: %v %v", ok, err)
	}
	if l, _ := r.ReadLine(); string(l) != "NOOP" {
		t.Fatalf("after the chunk %q", l)
	}
}

// TestSetSource: STARTTLS drops what was buffered in clear.
func TestSetSource(t *testing.T) {
	t.Parallel()
	r := NewReader(strings.NewReader("STARTTLS\r\nMAIL FROM:<evil@x>\r\n"), 4096, nil)
	r.ReadLine()
	if n := r.SetSource(strings.NewReader("EHLO tls\r\n")); n != len("MAIL FROM:<evil@x>\r\n") {
		t.Fatalf("dropped %d", n)
	}
	if l, _ := r.ReadLine(); string(l) != "EHLO tls" {
		t.Fatalf("after STARTTLS: %q", l)
	}
}

// BenchmarkDataReader: dot-unstuffing a 10 MB message of 78-octet lines
// (some stuffed) read 32 KiB at a time, as the session reads it.
func BenchmarkDataReader(b *testing.B) {
	var body strings.Builder
	for body.Len() < 10<<20 {
		body.WriteString(strings.Repeat("x", 76) + "\r\n..stuffed\r\n")
	}
	stream := []byte(stuff(body.String()))
	buf := make([]byte, 32<<10)
	b.SetBytes(int64(len(stream)))
	for b.Loop() {
		r := NewReader(bytes.NewReader(stream), 4096, nil)
		d := r.DataReader()
		for {
			_, err := d.Read(buf)
			if err == io.EOF {
				break
			}
			if err != nil {
				b.Fatal(err)
			}
		}
	}
}

// FuzzDataReader: any text with CRLF line ends, dot-stuffed and read in
// pieces of any size, comes back as it was, and the command after it is
// intact.
func FuzzDataReader(f *testing.F) {
	f.Add([]byte(".\r\n..x\r\n\r\n.\rz\r\r\n"), uint8(3), uint16(5))
	f.Add([]byte("a\n.\nb\r.\r"), uint8(1), uint16(1))
	f.Fuzz(func(t *testing.T, raw []byte, seg uint8, buf uint16) {
		body := string(raw)
		if !strings.HasSuffix(body, "\r\n") {
			body += "\r\n"
		}
		got, next, err := readData(t, stuff(body)+"NOOP\r\n", []int{1 + int(seg)}, 1+int(buf))
		if err != nil || got != body || next != "NOOP" {
			t.Fatalf("got %q (%v), next %q; want %q", got, err, next, body)
		}
	})
}

// TestLendAndReturn: a Reader reads into the buffer it was lent (the
// lines come out of it), gives it back, and refuses one of another size.
func TestLendAndReturn(t *testing.T) {
	t.Parallel()
	buf := make([]byte, BufferSize(100))
	for i := range buf {
		buf[i] = 'z' // what an earlier connection left: never read as data
	}
	r := NewReader(strings.NewReader("EHLO a\r\nQUIT\r\n"), 100, nil)
	r.Lend(buf)
	line, err := r.ReadLine()
	if err != nil || string(line) != "EHLO a" {
		t.Fatalf("ReadLine: %q %v", line, err)
	}
	if &line[0] != &buf[0] {
		t.Error("the line was not read into the lent buffer")
	}
	if line, err = r.ReadLine(); err != nil || string(line) != "QUIT" {
		t.Fatalf("ReadLine: %q %v", line, err)
	}
	if got := r.Return(); len(got) != len(buf) || &got[0] != &buf[0] {
		t.Error("Return did not give the lent buffer back")
	}

	r = NewReader(strings.NewReader("NOOP\r\n"), 100, nil)
	small := make([]byte, 10)
	r.Lend(small) // too small for a line of 100: not taken
	if line, err := r.ReadLine(); err != nil || string(line) != "NOOP" {
		t.Fatalf("ReadLine: %q %v", line, err)
	}
	if got := r.Return(); len(got) != BufferSize(100) || &got[0] == &small[0] {
		t.Errorf("Return gave %d octets, want a buffer of its own of %d", len(got), BufferSize(100))
	}
}

// timeoutErr is a read deadline that passed.
type timeoutErr struct{}

func (timeoutErr) Error() string   { return "i/o timeout" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }

// script returns its reads in order: data, or a timeout when "".
type script []string

func (s *script) Read(p []byte) (int, error) {
	if len(*s) == 0 {
		return 0, io.EOF
	}
	d := (*s)[0]
	*s = (*s)[1:]
	if d == "" {
		return 0, timeoutErr{}
	}
	return copy(p, d), nil
}

// TestPoll: Poll takes what the source gives at once, without the wait
// function, and a timeout without data leaves the Reader as it was.
func TestPoll(t *testing.T) {
	src := &script{"DATA\r\n", "", "Subject: x\r\n"}
	waited := 0
	r := NewReader(src, 512, func() error { waited++; return nil })
	if l, err := r.ReadLine(); err != nil || string(l) != "DATA" || waited != 1 {
		t.Fatalf("%q %v waited %d", l, err, waited)
	}
	if n := r.Poll(); n != 0 || r.Buffered() != 0 {
		t.Fatalf("timeout: Poll %d, buffered %d", n, r.Buffered())
	}
	if n := r.Poll(); n != 12 || string(r.Peek(4)) != "Subj" || waited != 1 {
		t.Fatalf("Poll %d, peek %q, waited %d", n, r.Peek(4), waited)
	}
	if l, err := r.ReadLine(); err != nil || string(l) != "Subject: x" {
		t.Fatalf("%q %v", l, err)
	}
}
