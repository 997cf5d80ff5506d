package mailstore

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"courriel/internal/testenv"
)

// clone is a string of its own, as the IMAP layer's parsers make them
// (string(b) of the bytes read).
func clone(s string) string { return string([]byte(s)) }

// parsedEnvelope and parsedBody build what the IMAP layer caches for
// message i, allocated as its parsers allocate: a string per field value,
// addresses slicing their field's value, a parameter map per part.
func parsedEnvelope(i int) *Envelope {
	from := clone(fmt.Sprintf("Sender%d <s%d@example.net>", i%50, i%50))
	to := clone("Bob <bob@xoyize.xyz>")
	return &Envelope{
		DateField:  clone("Tue, 14 Nov 2023 22:13:20 +0000"),
		Subject:    clone(fmt.Sprintf("Re: thread %d alpha", i/5)),
		MessageID:  clone(fmt.Sprintf("<m%d@example.org>", i)),
		From:       append([]Address(nil), Address{Name: from[:len(from)-20], Mailbox: from[len(from)-18 : len(from)-13], Host: from[len(from)-12 : len(from)-1]}),
		Sender:     nil,
		To:         append([]Address(nil), Address{Name: to[:3], Mailbox: to[5:8], Host: to[9:19]}),
		InReplyTo:  []string{clone(fmt.Sprintf("<m%d@example.org>", i-1))},
		References: []string{clone(fmt.Sprintf("m%d@example.org", i/5*5)), clone(fmt.Sprintf("m%d@example.org", i-1))},
	}
}

func parsedBody(i int, multipart bool) *BodyPart {
	text := &BodyPart{Type: clone("text"), Subtype: clone("plain"), Params: []Param{{clone("charset"), clone("us-ascii")}},
		Encoding: "7bit", Size: 300, Lines: 3}
	if !multipart {
		return text
	}
	text.Params = []Param{{clone("charset"), clone("utf-8")}}
	pdf := &BodyPart{Type: clone("application"), Subtype: clone("pdf"), Params: []Param{{clone("name"), clone(fmt.Sprintf("r%d.pdf", i))}},
		Encoding: clone("base64"), Size: 95000, Disposition: clone("attachment"),
		DispParams: []Param{{clone("filename"), clone(fmt.Sprintf("r%d.pdf", i))}}}
	return &BodyPart{Type: clone("multipart"), Subtype: clone("mixed"), Params: []Param{{clone("boundary"), clone(fmt.Sprintf("BOUND%d", i))}},
		Children: append([]*BodyPart(nil), text, pdf)}
}

// folderStore is a maildir of user whose INBOX holds n messages.
func folderStore(t *testing.T, user string, n int) *Store {
	t.Helper()
	st, err := OpenStore(filepath.Join(testenv.MemoryDir(t), "Maildir"), Owner{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	st.SetUser(user)
	for i := range n {
		name := fmt.Sprintf("%d.M%dP4242.qa,S=300,W=310:2,S", 1700000000+i, i)
		if err := os.WriteFile(filepath.Join(st.Path(), "cur", name), []byte("Subject: x\n\nx\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return st
}

// fillCache caches an envelope and a body structure for every message,
// as sessions' FETCHes do.
func fillCache(mb *Mailbox, multipart bool) {
	for i, u := range mb.UIDs() {
		mb.UpdateCached(u, Cached{Size: 310, Date: 1, Envelope: parsedEnvelope(i), Body: parsedBody(i, multipart)})
	}
}

// heapInUse is the live heap after a full collection.
func heapInUse() int64 {
	var ms runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapAlloc)
}

// The memory a kept folder holds, measured on the heap, is what the
// registry counts against its budget (keepMemoryBudget, the
// courriel_imap_kept_folder_bytes metric), within a small factor: its
// messages, and the cache of envelopes and body structures, whether the
// sessions parsed them or they came from courriel-index. Not parallel: it
// reads the heap.
func TestKeptFolderMemoryEstimate(t *testing.T) {
	tests := []struct {
		name      string
		n         int
		multipart bool
		fromIndex bool // the cache read back from courriel-index
		noCache   bool
	}{
		{"small messages, no cache", 20000, false, false, true},
		{"small messages, parsed", 20000, false, false, false},
		{"small messages, from the index", 20000, false, true, false},
		{"multipart messages, parsed", 10000, true, false, false},
		{"multipart messages, from the index", 10000, true, true, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st := folderStore(t, "bob", tc.n)
			fill := func(mb *Mailbox) { fillCache(mb, tc.multipart) }
			if tc.fromIndex {
				reg := NewRegistry()
				mb, err := reg.Open(st, "INBOX")
				if err != nil {
					t.Fatal(err)
				}
				fill(mb)
				mb.Release() // courriel-index written
				reg.SaveAll()
			}
			reg := keepRegistry()
			reg.keepBudget = 1 << 30 // kept with its cache, whatever its size
			before := heapInUse()
			mb, err := reg.Open(st, "INBOX")
			if err != nil {
				t.Fatal(err)
			}
			switch {
			case tc.noCache:
			case tc.fromIndex:
				for _, u := range mb.UIDs() {
					if mb.Cached(u).Envelope == nil {
						t.Fatalf("message %d: no envelope from courriel-index", u)
					}
				}
			default:
				fill(mb)
			}
			mb.Release()
			n, estimate := reg.KeptFolders()
			if n != 1 {
				t.Fatalf("%d folders kept, want 1", n)
			}
			held := heapInUse() - before
			ratio := float64(held) / float64(estimate)
			t.Logf("%d messages: %d bytes held, %d estimated (%.2f)", tc.n, held, estimate, ratio)
			if ratio > 1.5 || ratio < 1/1.5 {
				t.Errorf("a kept folder holds %d bytes, its estimate is %d: %.2f times", held, estimate, ratio)
			}
			runtime.KeepAlive(mb)
		})
	}
}

// A kept folder that makes way for another (the budget), or whose user
// goes (DropUser), lets go of its memory at once: the heap holds the
// folders kept, as counted, not those dropped. (Each dropped folder was
// held by its timer for the two minutes it would have been kept: the QA's
// eight heavy sessions left the heap eight times the count.) Not
// parallel: it reads the heap.
func TestDroppedKeptFolderLetsGo(t *testing.T) {
	const n = 20000
	a, b := folderStore(t, "alice", n), folderStore(t, "bob", n)
	reg := keepRegistry()
	before := heapInUse()
	keep := func(st *Store) {
		mb, err := reg.Open(st, "INBOX")
		if err != nil {
			t.Fatal(err)
		}
		fillCache(mb, false)
		mb.Release()
	}
	keep(a)
	_, one := reg.KeptFolders()
	reg.mu.Lock()
	reg.keepBudget = one + one/20 // room for one: b, without its cache, makes a go
	reg.mu.Unlock()
	keep(b)
	kept, estimate := reg.KeptFolders()
	if kept != 1 {
		t.Fatalf("%d folders kept, want 1 (the budget has room for b alone)", kept)
	}
	held := heapInUse() - before
	t.Logf("one kept, one dropped: %d bytes held, %d estimated (%.2f)", held, estimate, float64(held)/float64(estimate))
	if float64(held) > 1.5*float64(estimate) {
		t.Errorf("the heap holds %d bytes for kept folders estimated at %d: the dropped one is still there", held, estimate)
	}
	reg.DropUser("bob")
	if kept, _ := reg.KeptFolders(); kept != 0 {
		t.Fatalf("%d folders kept after DropUser, want 0", kept)
	}
	if held := heapInUse() - before; held > estimate/10 {
		t.Errorf("the heap holds %d bytes after every kept folder was dropped (%d before)", held, estimate)
	}
}
