package sieve

import (
	"runtime"
	"strings"
	"testing"
)

// A header of millions of tiny fields (any client of port 25 can send one
// to a user with a script) is kept to its first 5,000 fields or megabyte: the fields
// after it are skipped, the body still starts after the empty line and
// Size counts everything. Parsed whole, it cost hundreds of megabytes.
func TestReadMessageHugeHeader(t *testing.T) {
	var b strings.Builder
	b.WriteString("Subject: first\r\nX-Folded: a\r\n b\r\n")
	for b.Len() < 9_600_000 {
		b.WriteString("X-A: b\r\n")
	}
	b.WriteString("X-Last: past the limit\r\n\r\nthe body\r\n")
	raw := b.String()
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	m, err := ReadMessage(strings.NewReader(raw))
	runtime.ReadMemStats(&after)
	if err != nil {
		t.Fatal(err)
	}
	if m.Header.Get("Subject") != "first" || m.Header.Get("X-Folded") != "a b" || m.Header.Has("X-Last") {
		t.Errorf("header: Subject %q, X-Folded %q, X-Last present %v", m.Header.Get("Subject"), m.Header.Get("X-Folded"), m.Header.Has("X-Last"))
	}
	if n := len(m.Header.Values("X-A")); n != maxHeaderFields-2 {
		t.Errorf("%d X-A fields kept", n)
	}
	if string(m.Body) != "the body\n" || m.Size != int64(len(strings.ReplaceAll(raw, "\r\n", "\n"))) {
		t.Errorf("body %q, size %d", m.Body, m.Size)
	}
	if n := after.TotalAlloc - before.TotalAlloc; n > 16<<20 {
		t.Errorf("reading a 9.6 MB header allocated %d MiB", n>>20)
	}
}

// A message that is all header, without the empty line, keeps its fields
// and has no body; a field folded past the limit stays whole.
func TestReadMessageHeaderOnly(t *testing.T) {
	m, err := ReadMessage(strings.NewReader("Subject: s\r\nTo: a@b"))
	if err != nil {
		t.Fatal(err)
	}
	if m.Header.Get("Subject") != "s" || m.Header.Get("To") != "a@b" || len(m.Body) != 0 {
		t.Errorf("header %v, body %q", m.Header, m.Body)
	}
}
