package imap

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"io"
	"mime/quotedprintable"
	"runtime"
	"strings"
	"testing"
	"testing/iotest"
	"time"
)

// searchStream finds what bytes.Contains finds in the whole text folded,
// however the reader cuts it: one byte at a time, half reads, matches
// across its pieces and runes cut between them.
func TestSearchStreamPieces(t *testing.T) {
	t.Parallel()
	text := strings.Repeat("abc ÉTÉ déjà ", 5000) + "Straddle-ÇA-VA 日本語 end"
	readers := map[string]func(io.Reader) io.Reader{
		"whole":    func(r io.Reader) io.Reader { return r },
		"one byte": iotest.OneByteReader,
		"half":     iotest.HalfReader,
		"data+EOF": iotest.DataErrReader,
	}
	for _, needle := range []string{"straddle-ça-va", "été déjà abc", "日本語 end", "é", "abc ÉTÉ DÉJÀ ABC", "absent", "déjà  abc", "end "} {
		want := bytes.Contains(appendFold(nil, text), appendFold(nil, needle))
		for name, wrap := range readers {
			var ts textScratch
			if got := ts.searchStream(wrap(strings.NewReader(text)), appendFold(nil, needle)); got != want {
				t.Errorf("%s, %q: %v, want %v", name, needle, got, want)
			}
		}
	}
	// A needle across the first piece's end, a rune cut there.
	for shift := -12; shift <= 3; shift++ {
		pre := strings.Repeat("x", searchChunk+shift)
		var ts textScratch
		if !ts.searchStream(strings.NewReader(pre+"ÉTÉ Straddle"), appendFold(nil, "été straddle")) {
			t.Errorf("needle at %d: not found", len(pre))
		}
	}
}

// largeSearchMessage is a message over maxKeptBuf whose parts put words
// across the boundaries of searchStream's pieces: a plain UTF-8 part, a
// base64 one, a quoted-printable Latin-1 one (soft line breaks within a
// word), an attachment that is not text, and an encapsulated message
// whose subject is an encoded word.
func largeSearchMessage() string {
	filler := func(n int, words map[int]string) string {
		var b strings.Builder
		for b.Len() < n {
			for off, w := range words {
				if b.Len() <= off && off < b.Len()+64 {
					b.WriteString(strings.Repeat("y", off-b.Len()))
					b.WriteString(w)
					delete(words, off)
				}
			}
			b.WriteString("filler text, nothing to see here ok\r\n")
		}
		return b.String()
	}
	// The plain part's first piece ends within É (CRLF lines: the
	// file's offsets are the served form's).
	plain := filler(100<<10, map[int]string{searchChunk - 8: " Plain-ÉTÉ-Word ", 2*searchChunk - 2: " ünïcode-straddle "})
	b64 := base64.StdEncoding.EncodeToString([]byte(filler(100<<10, map[int]string{searchChunk - 7: " Base64-Hidden-Word ", 70000: " Zweiter Fund "})))
	var wrapped strings.Builder
	for i := 0; i < len(b64); i += 76 {
		wrapped.WriteString(b64[i:min(i+76, len(b64))] + "\n")
	}
	var qp bytes.Buffer
	qw := quotedprintable.NewWriter(&qp)
	latin := strings.ReplaceAll(filler(100<<10, map[int]string{searchChunk - 3: " Latin été mot "}), "é", "\xe9")
	qw.Write([]byte(latin))
	qw.Close()
	attach := base64.StdEncoding.EncodeToString([]byte(strings.Repeat("invisible ", 3000)))
	return string(toCRLF([]byte("From: a@example.org\nTo: b@example.org\n" +
		"Subject: =?UTF-8?B?" + base64.StdEncoding.EncodeToString([]byte("Réunion trimestrielle")) + "?=\n" +
		"MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"BB\"\n\npreamble\n" +
		"--BB\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n\n" + plain +
		"\n--BB\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: base64\n\n" + wrapped.String() +
		"\n--BB\nContent-Type: text/plain; charset=iso-8859-1\nContent-Transfer-Encoding: quoted-printable\n\n" + qp.String() +
		"\n--BB\nContent-Type: application/octet-stream\nContent-Transfer-Encoding: base64\n\n" + attach +
		"\n--BB\nContent-Type: message/rfc822\n\nFrom: c@example.org\nSubject: =?ISO-8859-1?Q?Caf=E9_inclus?=\n\ninner body\n" +
		"\n--BB--\n")))
}

// SEARCH BODY and TEXT of a large message, streamed from its file, find
// words across the pieces it is searched in, in every encoding.
func TestSearchLargeMessageStreamed(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	msg := largeSearchMessage()
	if len(msg) <= maxKeptBuf {
		t.Fatalf("message of %d bytes: not large", len(msg))
	}
	e.deliver("1700000001.M1P1.test", msg)
	r := loggedIn(t, e)
	r.cmd("s", "SELECT INBOX")
	for _, tc := range []struct {
		key, text string
		found     bool
	}{
		{"BODY", "plain-été-word", true},
		{"BODY", "ÜNÏCODE-STRADDLE", true},
		{"BODY", "base64-hidden-word", true},
		{"BODY", "zweiter fund", true},
		{"BODY", "latin été mot", true},
		{"BODY", "invisible", false}, // not text
		{"BODY", "inner body", true},
		{"BODY", "réunion", false}, // a header
		{"TEXT", "réunion trimestrielle", true},
		{"TEXT", "subject: café inclus", true},
		{"BODY", "café inclus", false},
		{"TEXT", "=?UTF-8?B?", false},
		{"TEXT", "content-transfer-encoding: quoted-printable", true},
		{"TEXT", "preamble", false},
		{"BODY", "nothing here at all", false},
	} {
		got := r.cmd("x", fmt.Sprintf("SEARCH CHARSET UTF-8 %s {%d+}\r\n%s", tc.key, len(tc.text), tc.text))
		want := "* SEARCH"
		if tc.found {
			want = "* SEARCH 1"
		}
		if got[0] != want || !strings.HasPrefix(last(got), "x OK") {
			t.Errorf("%s %q: %q, want %q", tc.key, tc.text, got, want)
		}
	}
}

// SEARCH TEXT of a 50 MB message streams it: before, the message was
// read whole, decoded and folded (some 250 MB allocated, within the
// server's memory budget); now a few buffers.
func TestSearchTextLargeMessageMemory(t *testing.T) {
	e := newEnv(t)
	line := "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod\n"
	plain := strings.Repeat(line, (25<<20)/len(line))
	b64 := base64.StdEncoding.EncodeToString([]byte(strings.Repeat(line, (18<<20)/len(line)) + "the needle at the end\n"))
	var wrapped strings.Builder
	for i := 0; i < len(b64); i += 76 {
		wrapped.WriteString(b64[i:min(i+76, len(b64))] + "\n")
	}
	msg := "From: a@example.org\nSubject: big\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"BB\"\n\n" +
		"--BB\nContent-Type: text/plain\n\n" + plain +
		"\n--BB\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: base64\n\n" + wrapped.String() +
		"\n--BB--\n"
	e.deliver("1700000001.M1P1.test", msg)
	r := loggedIn(t, e)
	r.cmd("s", "SELECT INBOX")
	// Each goes over 49 MiB twice (the scan, the search): long with
	// -race beside other tests, past rawConn's 10 s for a line.
	cmd := func(tag, s string) []string {
		r.send(tag + " " + s + "\r\n")
		r.c.SetReadDeadline(time.Now().Add(3 * time.Minute))
		var out []string
		for {
			l, err := r.br.ReadString('\n')
			if err != nil {
				t.Fatalf("%s: %v", s, err)
			}
			out = append(out, strings.TrimRight(l, "\r\n"))
			if strings.HasPrefix(l, tag+" ") {
				return out
			}
		}
	}
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	found := cmd("x", "SEARCH TEXT \"NEEDLE AT THE END\"")
	absent := cmd("y", "SEARCH TEXT \"not in there\"")
	runtime.ReadMemStats(&after)
	if found[0] != "* SEARCH 1" || absent[0] != "* SEARCH" {
		t.Errorf("SEARCH TEXT: %q, %q", found, absent)
	}
	alloc := after.TotalAlloc - before.TotalAlloc
	t.Logf("two SEARCH TEXT of a %d MiB message: %d KiB allocated", len(msg)>>20, alloc>>10)
	if alloc > 8<<20 {
		t.Errorf("two SEARCH TEXT of a %d MiB message allocated %d MiB", len(msg)>>20, alloc>>20)
	}
	if n := e.srv.mem.inUse(); n != 0 {
		t.Errorf("%d bytes of the memory budget still held", n)
	}
}
