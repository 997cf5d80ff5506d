package sieve

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"runtime"
	"strings"
	"testing"
)

// partsMessage is a message of n text/plain parts.
func partsMessage(n int) string {
	var b strings.Builder
	b.WriteString("From: a@example.com\r\nSubject: parts\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n")
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, "--b\r\nContent-Type: text/plain\r\n\r\npart %d\r\n", i)
	}
	b.WriteString("--b--\r\n")
	return b.String()
}

// An addheader in a loop cannot grow the header past what ReadMessage
// lets a script see (1 MiB, 5,000 fields): the run fails there, as any
// runtime error (a keep into INBOX, the message's own header), having
// held about a megabyte. Before, 10,000 parts made 20 MB of header (and
// 100,000 iterations of nested loops 200 MB).
func TestEditheaderGrowthBounded(t *testing.T) {
	msg := partsMessage(10000)
	value := strings.Repeat("w ", 1000)
	for _, tc := range []struct {
		name, src, want string
	}{
		{"2 KB values :last", `require ["editheader", "foreverypart", "variables"]; set "v" "` + value + `";
foreverypart { addheader :last "X-A" "${v}"; }`, "exceed 5000 fields or 1048576 bytes"},
		{"2 KB values first", `require ["editheader", "foreverypart", "variables"]; set "v" "` + value + `";
foreverypart { addheader "X-A" "${v}"; }`, "exceed 5000 fields or 1048576 bytes"},
		{"short values", `require ["editheader", "foreverypart"];
foreverypart { addheader :last "X-A" "1"; }`, "exceed 5000 fields"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := compileAll([]byte(tc.src), Limits{})
			if err != nil {
				t.Fatal(err)
			}
			m, err := ReadMessage(strings.NewReader(msg))
			if err != nil {
				t.Fatal(err)
			}
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			res := s.RunWith(m, Envelope{From: "a@example.com", To: "b@example.org"}, RunOptions{})
			runtime.ReadMemStats(&after)
			var se *Error
			if !errors.As(res.Err, &se) || !strings.Contains(se.Reason, tc.want) || se.Line != 2 {
				t.Errorf("Err %v, want a runtime error at line 2 saying %q", res.Err, tc.want)
			}
			if res.Edit != nil || len(res.Actions) != 1 || !res.Actions[0].Inbox() {
				t.Errorf("actions %+v, edited header of %d octets: want the keep, unedited", res.Actions, len(res.Edit.Header()))
			}
			// the message's parts and the run's caches beside the
			// header's megabyte
			if n := after.TotalAlloc - before.TotalAlloc; n > 40<<20 {
				t.Errorf("the run allocated %d MB", n>>20)
			}
		})
	}
}

// Within the bound, a loop that deletes what it adds, or a header edited
// up to the bound, runs; the size test sees the header grown.
func TestEditheaderWithinBound(t *testing.T) {
	msg := partsMessage(3000)
	value := strings.Repeat("w ", 1000)
	src := `require ["editheader", "foreverypart", "variables", "fileinto"]; set "v" "` + value + `";
foreverypart { addheader :last "X-A" "${v}"; deleteheader "X-A"; }
foreverypart { addheader "X-B" "1"; }
if size :over 2000000 { fileinto "big"; }`
	res := compileRun(t, src, msg, RunOptions{})
	if res.Err != nil || len(res.Actions) != 1 || !res.Actions[0].Inbox() {
		t.Fatalf("Err %v, actions %+v", res.Err, res.Actions)
	}
	if n := strings.Count(string(res.Edit.Header()), "X-B: 1\r\n"); n != 3001 {
		t.Errorf("%d fields added, want 3001 (the message and its parts)", n)
	}
	// 450 values of 2 KB: 900 KB, within the megabyte
	src = `require ["editheader", "foreverypart", "variables", "fileinto"]; set "v" "` + value + `";
foreverypart { if header :mime :contains "content-type" "plain" { addheader :last "X-A" "${v}"; } if header :count "ge" :comparator "i;ascii-numeric" "X-A" "450" { break; } }
if size :over 900000 { fileinto "big"; }`
	res = compileRun(t, strings.Replace(src, "\"editheader\"", "\"editheader\", \"mime\", \"relational\", \"comparator-i;ascii-numeric\"", 1), msg, RunOptions{})
	if res.Err != nil || len(res.Actions) != 1 || res.Actions[0].Folder != "big" {
		t.Fatalf("Err %v, actions %+v", res.Err, res.Actions)
	}
}

// editheaderErrors are scripts editheader refuses, at compile time or at
// run time: our message is Pigeonhole's.
var editheaderErrors = []string{
	`require "editheader"; addheader "X-A" "` + strings.Repeat("v", 2049) + `";`,
	`require "editheader"; addheader "X A" "1";`,
	`require "editheader"; deleteheader "X:A";`,
	`require ["editheader", "encoded-character"]; addheader "X-A" "a${hex:00}b";`,
	`require ["editheader", "variables"]; set "v" "` + "a\\\"b\\\\c" + strings.Repeat("é", 1100) + `"; addheader "X-A" "${v}";`,
	`require ["editheader", "variables"]; set "v" "` + strings.Repeat("v", 2049) + `"; addheader "X-A" "${v}";`,
	`require ["editheader", "variables"]; set "v" "` + strings.Repeat("v", 2048) + `"; addheader "X-A" "${v}x";`,
	`require ["editheader", "variables", "encoded-character"]; set "v" "a${hex:00}b"; addheader "X-A" "${v}";`,
	`require ["editheader", "variables", "encoded-character"]; set "v" "a${hex:0a}b${hex:01}c"; addheader "X-A" "${v}` + strings.Repeat("v", 2048) + `";`,
	`require ["editheader", "variables"]; set "v" "X A"; addheader "${v}" "1";`,
	`require ["editheader", "variables"]; set "v" "X:A"; deleteheader "${v}";`,
}

// TestOracleEditheaderErrors: each script fails in both, at the same step
// (compile or run), with sieve-test's message (its final period aside).
func TestOracleEditheaderErrors(t *testing.T) {
	o := newOracle(t)
	raw, err := os.ReadFile("testdata/messages/tricky.eml")
	if err != nil {
		t.Fatal(err)
	}
	env := oracleEnvelopes["tricky.eml"]
	for _, src := range editheaderErrors {
		var ourMsg string
		s, err := CompileWith([]byte(src), CompileOptions{Extensions: AllExtensions()})
		if err != nil {
			ourMsg = "compile: " + err.(*Error).Reason
		} else {
			msg, err := ReadMessage(bytes.NewReader(raw))
			if err != nil {
				t.Fatal(err)
			}
			res := s.RunWith(msg, env, oracleRunOptions())
			var se *Error
			if !errors.As(res.Err, &se) {
				t.Errorf("%.100q: no error, actions %+v", src, res.Actions)
				continue
			}
			ourMsg = "run: " + se.Reason
		}
		_, out := o.run(t, "editheader", []byte(src), raw, env)
		var theirs string
		for _, line := range strings.Split(out, "\n") {
			if _, m, ok := strings.Cut(line, "error: "); ok && !strings.Contains(line, "validation failed") {
				m = strings.TrimSuffix(m, ".")
				// Pigeonhole 2.3 writes "deleteheader command:specified"
				m = strings.Replace(m, "command:specified", "command: specified", 1)
				if strings.Contains(line, ": line ") {
					theirs = "compile: " + m
				} else {
					theirs = "run: " + m
				}
				break
			}
		}
		if ourMsg != theirs {
			t.Errorf("%.100q:\n ours:   %q\n theirs: %q\n sieve-test: %s", src, ourMsg, theirs, out)
		}
	}
}

func TestSanitize(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"abc", "abc"},
		{"a\tb\nc\x7fd", "a?b?c\x7fd"},
		{"a\x00b", "a"},
		{"a\xffb", "a?b"},
		{strings.Repeat("v", 80), strings.Repeat("v", 80)},
		{strings.Repeat("v", 81), strings.Repeat("v", 77) + "..."},
		{"a" + strings.Repeat("é", 50), "a" + strings.Repeat("é", 38) + "..."},
	} {
		if got := sanitize(tc.in, 80); got != tc.want {
			t.Errorf("sanitize(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// Pieces on odd headers: a last line without a line end, a field the
// parser skips (no name), a folded field deleted.
func TestEditPieces(t *testing.T) {
	for _, tc := range []struct{ msg, script, want string }{
		{"A: 1\r\nB: 2", `addheader :last "X" "y"; deleteheader "a";`, "B: 2\r\nX: y\r\n"},
		{": odd\r\nA: 1\r\nB: 2\r\n\r\nbody", `deleteheader "b"; addheader "T" "t";`, "T: t\r\n: odd\r\nA: 1\r\n\r\nbody"},
		{"A: 1\r\n folded\r\nB: 2\n\nbody\n", `deleteheader "a"; addheader :last "L" "l";`, "B: 2\nL: l\r\n\nbody\n"},
		{"A: 1\r\n\r\n", `deleteheader "a";`, "\r\n"},
	} {
		msg, err := ReadMessage(strings.NewReader(tc.msg))
		if err != nil {
			t.Fatal(err)
		}
		s, err := compileAll([]byte(`require "editheader"; `+tc.script), Limits{})
		if err != nil {
			t.Fatal(err)
		}
		res := s.Run(msg, Envelope{})
		pieces, err := res.Edit.Pieces(msg)
		if err != nil {
			t.Fatal(err)
		}
		var b strings.Builder
		for _, p := range pieces {
			if p.Data != nil {
				b.Write(p.Data)
			} else {
				b.WriteString(tc.msg[p.Off : p.Off+p.Len])
			}
		}
		if b.String() != tc.want {
			t.Errorf("%q with %s: %q, want %q", tc.msg, tc.script, b.String(), tc.want)
		}
	}
}

// deleteheader past the fields a script sees (the first 5,000 here):
// Pieces leaves out the fields it deletes as Piece.Section reads them,
// whatever the order of the reads; odd headers as in TestEditPieces.
func TestEditPiecesPastWindow(t *testing.T) {
	fill := strings.Repeat("F: x\r\n", maxHeaderFields)
	for _, tc := range []struct{ msg, script, want string }{
		{fill + "A: 1\r\n folded\r\nB: 2\nA : 3\r\n\r\nbody", `deleteheader "a"; addheader :last "L" "l";`,
			fill + "B: 2\nL: l\r\n\r\nbody"},
		{"A: 0\r\n" + fill + "A: 1\r\nB: 2\r\nA: 3", `deleteheader :last :index 2 "a"; addheader :last "L" "l";`,
			"A: 0\r\n" + fill + "B: 2\r\nA: 3\r\nL: l\r\n"},
		{fill + "A: 1\r\nB: 2\r\nA: 3", `deleteheader :index 2 "a"; addheader :last "L" "l";`,
			fill + "A: 1\r\nB: 2\r\nL: l\r\n"},
		{fill + "A: 1\r\nB: 2", `deleteheader :contains "b" "2"; addheader :last "L" "l";`,
			fill + "A: 1\r\nL: l\r\n"},
		{fill + "A: 1\r\nB: 2", `deleteheader :matches "a" "*"; deleteheader "nothing";`, fill + "B: 2"},
		{fill + "A: 1\r\nB: 2\r\n\r\n", `deleteheader "a"; deleteheader "b";`, fill + "\r\n"},
		{fill + "Received: 1\r\nAuto-Submitted: no\r\n\r\n", `deleteheader "received"; deleteheader :index 1 "auto-submitted";`,
			fill + "Received: 1\r\nAuto-Submitted: no\r\n\r\n"},
	} {
		src := strings.NewReader(tc.msg)
		msg, err := ReadMessageAt(src, src.Size())
		if err != nil {
			t.Fatal(err)
		}
		s, err := compileAll([]byte(`require "editheader"; `+tc.script), Limits{})
		if err != nil {
			t.Fatal(err)
		}
		res := s.Run(msg, Envelope{})
		pieces, err := res.Edit.Pieces(msg)
		if err != nil {
			t.Fatal(err)
		}
		var b strings.Builder
		var sections []interface {
			io.ReaderAt
			Size() int64
		}
		for _, p := range pieces {
			sec := p.Section(src)
			sections = append(sections, sec)
			data, err := io.ReadAll(io.NewSectionReader(sec, 0, sec.Size()))
			if err != nil {
				t.Fatal(err)
			}
			b.Write(data)
		}
		got := b.String()
		if got != tc.want {
			t.Errorf("%.40q… with %s: %d octets, want %d; ends %q, want %q", tc.msg, tc.script, len(got), len(tc.want),
				got[max(0, len(got)-40):], tc.want[max(0, len(tc.want)-40):])
			continue
		}
		// reads out of order, and across the end
		rnd := rand.New(rand.NewPCG(1, 2))
		at := int64(0)
		for _, sec := range sections {
			whole := tc.want[at : at+sec.Size()]
			for range 50 {
				off := rnd.Int64N(sec.Size() + 2)
				p := make([]byte, rnd.IntN(40))
				n, err := sec.ReadAt(p, off)
				want := whole[min(off, int64(len(whole))):min(off+int64(len(p)), int64(len(whole)))]
				if string(p[:n]) != want || (n < len(p)) != (err != nil) {
					t.Fatalf("ReadAt(%d, %d) = %q, %v; want %q", len(p), off, p[:n], err, want)
				}
			}
			at += sec.Size()
		}
		if res.Edit != nil && msg.Size+res.Edit.sizeDelta != int64(len(strings.ReplaceAll(tc.want, "\r\n", "\n"))) && strings.Contains(tc.msg, "\n\r\n") {
			t.Errorf("%s: size %d, the edited message's is %d", tc.script, msg.Size+res.Edit.sizeDelta, len(strings.ReplaceAll(tc.want, "\r\n", "\n")))
		}
	}
}
