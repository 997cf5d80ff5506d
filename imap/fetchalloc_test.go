package imap

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"courriel/imap/wire"
)

// A FETCH of flags over the whole folder (a client's resynchronisation)
// allocates nothing for each message it writes: its lines are appended to
// the connection's buffer. Not parallel: the allocations counted are the
// process's.
func TestFetchFlagsAllocations(t *testing.T) {
	const n = 2000
	e := newEnv(t)
	for _, d := range []string{"cur", "new", "tmp"} {
		os.MkdirAll(filepath.Join(e.maildir, d), 0o700)
	}
	for i := range n {
		name := fmt.Sprintf("%d.M%dP1.test,S=20:2,S", 1700000000+i, i)
		if err := os.WriteFile(filepath.Join(e.maildir, "cur", name), []byte("Subject: x\n\nx\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	conn, err := tls.Dial("tcp", e.addr, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	r := bufio.NewReaderSize(conn, 1<<20)
	run := func(tag, cmd string) (lines int) {
		t.Helper()
		fmt.Fprintf(conn, "%s %s\r\n", tag, cmd)
		for {
			line, err := r.ReadSlice('\n')
			if err != nil {
				t.Fatalf("%s: %v", cmd, err)
			}
			if bytes.HasPrefix(line, []byte(tag+" ")) {
				if !bytes.HasPrefix(line, []byte(tag+" OK")) {
					t.Fatalf("%s: %s", cmd, line)
				}
				return lines
			}
			lines++
		}
	}
	r.ReadSlice('\n')
	run("A", "LOGIN alice secret")
	run("B", "SELECT INBOX")
	run("C", "UID FETCH 1:* (FLAGS)") // warms the buffers
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	lines := run("D", "UID FETCH 1:* (FLAGS)")
	runtime.ReadMemStats(&after)
	if lines != n {
		t.Fatalf("%d FETCH lines, want %d", lines, n)
	}
	if allocs := after.Mallocs - before.Mallocs; allocs > n/10 {
		t.Errorf("UID FETCH 1:* (FLAGS) of %d messages: %d allocations, want at most %d (none a message)", n, allocs, n/10)
	}
}

// A set over the whole view (STORE 1:*, FETCH 1:*) resolves into its two
// lists allocated once each, not grown message by message: the garbage of
// a STORE that changes nothing over 100,000 messages.
func TestResolveAllocatesOnce(t *testing.T) {
	view := make([]uint32, 10000)
	for i := range view {
		view[i] = uint32(2*i + 1)
	}
	s := &session{sel: &selected{view: view}}
	for _, tc := range []struct {
		name string
		set  wire.NumSet
		uid  bool
		want int
	}{
		{"1:*", wire.NumSet{Ranges: []wire.NumRange{{Lo: 1, Hi: 0}}}, false, 10000},
		{"UID 1:*", wire.NumSet{Ranges: []wire.NumRange{{Lo: 1, Hi: 0}}}, true, 10000},
		{"1:10,20:*", wire.NumSet{Ranges: []wire.NumRange{{Lo: 1, Hi: 10}, {Lo: 20, Hi: 0}}}, false, 9991},
	} {
		var seqs, uids []uint32
		allocs := testing.AllocsPerRun(10, func() { seqs, uids = s.resolve(tc.set, tc.uid) })
		if len(seqs) != tc.want || len(uids) != tc.want || uids[len(uids)-1] != view[len(view)-1] {
			t.Fatalf("%s: %d seqs, %d uids, want %d", tc.name, len(seqs), len(uids), tc.want)
		}
		if allocs > 8 { // the two lists, the ranges and their sorting
			t.Errorf("%s over %d messages: %.0f allocations, want at most 8", tc.name, len(view), allocs)
		}
	}
}
