package inflate

import (
	"bytes"
	"compress/flate"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"strings"
	"testing"
	"testing/iotest"
)

// corpus returns text like an IMAP session's (repetitive, so the
// compressor makes back-references) mixed with random bytes.
func corpus(rng *rand.Rand, n int) []byte {
	var b bytes.Buffer
	for b.Len() < n {
		switch rng.IntN(3) {
		case 0:
			fmt.Fprintf(&b, "a%d UID FETCH %d:* (FLAGS BODY.PEEK[HEADER.FIELDS (FROM TO SUBJECT)])\r\n", rng.IntN(1000), rng.IntN(50000))
		case 1:
			r := make([]byte, rng.IntN(300))
			for i := range r {
				r[i] = byte(rng.Uint32())
			}
			b.Write(r)
		default:
			b.WriteString(strings.Repeat("x", rng.IntN(700)))
		}
	}
	return b.Bytes()[:n]
}

// chunkReader returns its data in random pieces of 1..max bytes.
type chunkReader struct {
	data []byte
	rng  *rand.Rand
	max  int
}

func (c *chunkReader) Read(p []byte) (int, error) {
	if len(c.data) == 0 {
		return 0, io.EOF
	}
	k := min(len(p), len(c.data), 1+c.rng.IntN(c.max))
	copy(p, c.data[:k])
	c.data = c.data[k:]
	return k, nil
}

// TestMatchesCompressFlate: streams made by compress/flate at every level,
// with sync flushes at random places, decode to what went in, whatever
// pieces the input arrives in.
func TestMatchesCompressFlate(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, level := range []int{flate.HuffmanOnly, flate.NoCompression, flate.BestSpeed, flate.DefaultCompression, flate.BestCompression} {
		for trial := range 4 {
			plain := corpus(rng, 1+rng.IntN(200_000))
			var z bytes.Buffer
			w, err := flate.NewWriter(&z, level)
			if err != nil {
				t.Fatal(err)
			}
			for rest := plain; len(rest) > 0; {
				k := min(len(rest), 1+rng.IntN(20_000))
				w.Write(rest[:k])
				if rng.IntN(2) == 0 {
					w.Flush()
				}
				rest = rest[k:]
			}
			w.Close()
			for _, max := range []int{1, 7, 4096} {
				got, err := io.ReadAll(NewReader(&chunkReader{data: z.Bytes(), rng: rng, max: max}))
				if err != nil {
					t.Fatalf("level %d trial %d pieces ≤%d: %v", level, trial, max, err)
				}
				if !bytes.Equal(got, plain) {
					t.Fatalf("level %d trial %d pieces ≤%d: %d bytes decoded, %d sent, differ", level, trial, max, len(got), len(plain))
				}
			}
		}
	}
	got, err := io.ReadAll(NewReader(iotest.OneByteReader(bytes.NewReader(deflate(t, []byte("one byte at a time"))))))
	if err != nil || string(got) != "one byte at a time" {
		t.Errorf("one byte at a time: %q, %v", got, err)
	}
}

func deflate(t testing.TB, p []byte) []byte {
	var z bytes.Buffer
	w, _ := flate.NewWriter(&z, flate.DefaultCompression)
	w.Write(p)
	w.Close()
	return z.Bytes()
}

// errEmpty is what pendingSource returns when it has nothing: it stands
// for a read deadline (IDLE's wake-up), after which the stream goes on.
var errEmpty = errors.New("nothing yet")

// pendingSource hands out what the test gave it and then errEmpty, as a
// connection whose peer sent a command and waits for the answer.
type pendingSource struct{ buf bytes.Buffer }

func (s *pendingSource) Read(p []byte) (int, error) {
	if s.buf.Len() == 0 {
		return 0, errEmpty
	}
	return s.buf.Read(p)
}

// readAvailable reads until the Reader must wait for input.
func readAvailable(t *testing.T, r *Reader) string {
	t.Helper()
	var out []byte
	buf := make([]byte, 100)
	for range 100_000 {
		n, err := r.Read(buf)
		out = append(out, buf[:n]...)
		if errors.Is(err, errEmpty) {
			return string(out)
		}
		if err != nil {
			t.Fatalf("after %q: %v", out, err)
		}
	}
	t.Fatal("no end")
	return ""
}

// TestEveryFlushedCommandComesOut is why the package exists: a client
// flushes each command (zlib's Z_PARTIAL_FLUSH, as mbsync does, or
// Z_SYNC_FLUSH) and waits for the answer; the command must come out in
// whole with no more input, and the stream must go on after the source
// said it had nothing (a deadline).
func TestEveryFlushedCommandComesOut(t *testing.T) {
	commands := []string{
		"a LOGIN alice secret\r\n",
		"b SELECT INBOX\r\n",
		"c IDLE\r\n",
		"DONE\r\n",
		"d UID FETCH 1:* (FLAGS BODY.PEEK[HEADER.FIELDS (FROM TO SUBJECT)])\r\n",
		"e UID FETCH 1:* (FLAGS BODY.PEEK[HEADER.FIELDS (FROM TO SUBJECT)])\r\n", // back-references into the window
		strings.Repeat("f APPEND INBOX {3+}\r\nabc\r\n", 50),
	}
	streams := map[string][][]byte{"go-sync-flush": goSyncFlushed(t, commands)}
	for _, mode := range []string{"Z_PARTIAL_FLUSH", "Z_SYNC_FLUSH"} {
		if z := zlibFlushed(t, commands, mode); z != nil {
			streams["zlib-"+mode] = z
		}
	}
	for name, chunks := range streams {
		t.Run(name, func(t *testing.T) {
			src := &pendingSource{}
			r := NewReader(src)
			if got := readAvailable(t, r); got != "" {
				t.Fatalf("before any input: %q", got)
			}
			for i, chunk := range chunks {
				src.buf.Write(chunk)
				if got := readAvailable(t, r); got != commands[i] {
					t.Fatalf("command %d: got %q, want %q", i, got, commands[i])
				}
			}
		})
	}
}

func goSyncFlushed(t *testing.T, commands []string) [][]byte {
	var z bytes.Buffer
	w, _ := flate.NewWriter(&z, flate.DefaultCompression)
	var chunks [][]byte
	for _, c := range commands {
		w.Write([]byte(c))
		w.Flush()
		chunks = append(chunks, bytes.Clone(z.Bytes()))
		z.Reset()
	}
	return chunks
}

// zlibFlushed compresses each command with Python's zlib (the library
// mbsync and Thunderbird use), flushed with mode.
func zlibFlushed(t *testing.T, commands []string, mode string) [][]byte {
	py, err := exec.LookPath("python3")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("python3 is missing")
		}
		t.Logf("python3 missing: zlib's %s not tried", mode)
		return nil
	}
	script := `import sys, zlib
z = zlib.compressobj(6, zlib.DEFLATED, -15)
for line in sys.stdin.read().split("\n"):
    if line:
        print((z.compress(bytes.fromhex(line)) + z.flush(zlib.` + mode + `)).hex())
`
	var in strings.Builder
	for _, c := range commands {
		in.WriteString(hex.EncodeToString([]byte(c)) + "\n")
	}
	cmd := exec.Command(py, "-c", script)
	cmd.Stdin = strings.NewReader(in.String())
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("python3 zlib: %v", err)
	}
	var chunks [][]byte
	for _, l := range strings.Fields(string(out)) {
		b, err := hex.DecodeString(l)
		if err != nil {
			t.Fatal(err)
		}
		chunks = append(chunks, b)
	}
	if len(chunks) != len(commands) {
		t.Fatalf("python3 gave %d chunks for %d commands", len(chunks), len(commands))
	}
	return chunks
}

// TestCorrupt: broken streams are refused with ErrCorrupt, never a panic
// or a wait for input that cannot help.
func TestCorrupt(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   []byte
	}{
		{"block type 3", []byte{0x07}},
		{"stored length check", []byte{0x01, 0x05, 0x00, 0x00, 0x00}},
		{"distance before start", []byte{0x63, 0x00, 0x42, 0x00}},        // fixed block: a length/distance first
		{"no progress", bytes.Repeat([]byte{0x04, 0x00, 0xfe, 0xff}, 1)}, // dynamic, 286+ codes
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := NewReader(bytes.NewReader(append(tc.in, bytes.Repeat([]byte{0}, 8)...)))
			_, err := io.ReadAll(r)
			if !errors.Is(err, ErrCorrupt) {
				t.Errorf("got %v, want ErrCorrupt", err)
			}
		})
	}
}

// FuzzInflate: on any input, the Reader never panics, and where
// compress/flate decodes a whole stream, it decodes the same bytes.
func FuzzInflate(f *testing.F) {
	f.Add(deflate(f, []byte("a LOGIN alice secret\r\n")))
	f.Add([]byte{0x01, 0x00, 0x00, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, in []byte) {
		want, werr := io.ReadAll(io.LimitReader(flate.NewReader(bytes.NewReader(in)), 1<<20))
		got, gerr := io.ReadAll(io.LimitReader(NewReader(bytes.NewReader(in)), 1<<20))
		if werr == nil && (gerr != nil || !bytes.Equal(got, want)) {
			t.Fatalf("compress/flate decodes %d bytes; this Reader: %d bytes, %v", len(want), len(got), gerr)
		}
	})
}
