package filter

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"courriel/delivery"
)

// storedCopies are the files of a maildir folder ("" the INBOX), read.
func storedCopies(t *testing.T, maildir, folder string) []string {
	t.Helper()
	dir := maildir
	if folder != "" {
		dir = filepath.Join(maildir, "."+folder)
	}
	var out []string
	for _, sub := range []string{"new", "cur"} {
		files, _ := os.ReadDir(filepath.Join(dir, sub))
		for _, fi := range files {
			b, err := os.ReadFile(filepath.Join(dir, sub, fi.Name()))
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, string(b))
		}
	}
	return out
}

// A header far past what a script sees (5,000 fields, 1 MiB): an edit
// keeps every field of it, and the body is streamed, not read whole.
func TestEditKeepsUnseenFields(t *testing.T) {
	for _, tc := range []struct {
		name  string
		value int // the octets of each field's value
	}{{"40,000 short fields", 40}, {"2,000 fields of 1 KB", 1000}} {
		t.Run(tc.name, func(t *testing.T) { testEditKeepsUnseenFields(t, tc.value) })
	}
}

func testEditKeepsUnseenFields(t *testing.T, value int) {
	base := t.TempDir()
	home := base + "/u"
	os.MkdirAll(home, 0o755)
	os.WriteFile(home+"/.dovecot.sieve", []byte(`require "editheader";
addheader "X-Top" "added";
addheader :last "X-Bottom" "added";
deleteheader "X-Drop";`), 0o644)
	store, _ := delivery.NewStore(delivery.Options{Hostname: "h", AllowedBase: base})
	f, _ := New(Options{Store: store, Directory: fakeDir{"u@x.y": {Home: home}}})

	// 2 MiB of header: 40,000 fields, a folded one among them
	var hdr bytes.Buffer
	hdr.WriteString("X-Drop: first\r\nSubject: big\r\n")
	for i := 0; hdr.Len() < 2<<20; i++ {
		fmt.Fprintf(&hdr, "X-Fill-%d: %s\r\n", i, strings.Repeat("v", value))
		if i == (2<<20)/(value+14)*3/4 {
			hdr.WriteString("X-Folded: a\r\n\tb\r\nX-Drop: unseen, kept\r\n")
		}
	}
	hdr.WriteString("X-Last: end\r\n\r\n")
	// a body of 64 MiB in a file, as the queue hands it over
	const bodySize = 64 << 20
	bf, err := os.CreateTemp(base, "msg")
	if err != nil {
		t.Fatal(err)
	}
	defer bf.Close()
	bw := bufio.NewWriter(bf)
	bw.Write(hdr.Bytes())
	line := strings.Repeat("b", 78) + "\r\n"
	for n := 0; n < bodySize; n += len(line) {
		bw.WriteString(line)
	}
	bw.WriteString("the end\r\n")
	bw.Flush()
	fi, _ := bf.Stat()
	m := &delivery.Message{ID: "m", From: "s@z.z", Header: []byte("Received: by test\r\n"),
		Body: io.NewSectionReader(bf, 0, fi.Size()), Arrived: time.Now()}

	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	if errs := f.Deliver(context.Background(), m, []delivery.Recipient{{Address: "u@x.y", Maildir: home + "/mailbox/"}}); errs[0] != nil {
		t.Fatal(errs[0])
	}
	runtime.ReadMemStats(&after)
	// the script's view (1 MiB of header, 4 MiB of body: 26 MiB with
	// their parsing, 44 MiB under -race) and buffers, whatever the
	// body's size: less than the message. Reading it whole to edit it
	// was 144 MiB for 34.
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 56<<20 {
		t.Errorf("delivery allocated %d MiB for a %d MiB message", alloc>>20, fi.Size()>>20)
	}

	copies := storedCopies(t, home+"/mailbox", "")
	if len(copies) != 1 {
		t.Fatalf("%d copies", len(copies))
	}
	got := copies[0]
	i := strings.Index(got, "\n\n")
	if i < 0 {
		t.Fatal("stored copy without a header end")
	}
	gotHeader, gotBody := got[:i+1], got[i+2:]
	wantFields := strings.ReplaceAll(strings.TrimSuffix(hdr.String(), "\r\n"), "\r\n", "\n")
	wantFields = strings.Replace(wantFields, "X-Drop: first\n", "", 1)
	want := "X-Top: added\nReceived: by test\n" + wantFields + "X-Bottom: added\n"
	if k := strings.Index(gotHeader, "X-Top:"); k >= 0 {
		gotHeader = gotHeader[k:] // after Return-Path, Delivered-To
	} else {
		t.Fatalf("no X-Top: %.300q", gotHeader)
	}
	if gotHeader != want {
		t.Errorf("stored header (%d octets) is not the original with the edits (%d octets)", len(gotHeader), len(want))
		for j := 0; j < min(len(want), len(gotHeader)); j++ {
			if want[j] != gotHeader[j] {
				t.Errorf("first difference at %d: got %.80q, want %.80q", j, gotHeader[j:], want[j:])
				break
			}
		}
	}
	nLines := (bodySize + len(line) - 1) / len(line)
	if len(gotBody) != nLines*(len(line)-1)+len("the end\n") || !strings.HasSuffix(gotBody, "bbbb\nthe end\n") {
		t.Errorf("body of %d octets, ends %q", len(gotBody), gotBody[max(0, len(gotBody)-20):])
	}
}

// splice reads its parts as one, at any offset.
func TestSplice(t *testing.T) {
	parts := []string{"abc", "", "d", "efgh", "ij"}
	var cs []delivery.Content
	for _, p := range parts {
		cs = append(cs, bytes.NewReader([]byte(p)))
	}
	s := newSplice(cs...)
	whole := strings.Join(parts, "")
	if s.Size() != int64(len(whole)) {
		t.Fatalf("size %d", s.Size())
	}
	for off := 0; off <= len(whole); off++ {
		for n := 0; n <= len(whole)-off+1; n++ {
			b := make([]byte, n)
			k, err := s.ReadAt(b, int64(off))
			want := whole[off:min(len(whole), off+n)]
			if string(b[:k]) != want || (k < n) != (err != nil) {
				t.Errorf("ReadAt(%d, %d) = %q, %v; want %q", n, off, b[:k], err, want)
			}
		}
	}
}
