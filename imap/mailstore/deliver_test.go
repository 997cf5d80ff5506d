package mailstore

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"courriel/imap/uidlist"
)

// bigInbox makes a maildir whose INBOX holds n read messages in cur/ and
// opens it: the one full listing of the test.
func bigInbox(tb testing.TB, n int) (*Store, *Registry, *Mailbox) {
	tb.Helper()
	st, err := OpenStore(filepath.Join(tb.TempDir(), "Maildir"), Owner{})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { st.Close() })
	// A few files hard-linked n times in all: quicker to make than n
	// files, and the same to a folder listing (ext4 allows 65,000 links).
	body := []byte("Subject: old\n\nold\n")
	one := filepath.Join(st.Path(), "tmp", "one")
	for i := range n {
		if i%50_000 == 0 {
			os.Remove(one)
			if err := os.WriteFile(one, body, 0o600); err != nil {
				tb.Fatal(err)
			}
		}
		name := fmt.Sprintf("1600000000.M%dP1.big,S=%d:2,S", i, len(body))
		if err := os.Link(one, filepath.Join(st.Path(), "cur", name)); err != nil {
			tb.Fatal(err)
		}
	}
	os.Remove(one)
	reg := NewRegistry()
	mb, err := reg.Open(st, "INBOX")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(mb.Release)
	return st, reg, mb
}

// deliverLikeSMTP writes a message into tmp/ and renames it into new/, as
// the delivery package does, and returns its name.
func deliverLikeSMTP(tb testing.TB, st *Store, i int) string {
	tb.Helper()
	name := fmt.Sprintf("1800000000.M%dP2.mx,S=17", i)
	tmp := filepath.Join(st.Path(), "tmp", name)
	if err := os.WriteFile(tmp, []byte("Subject: new\n\nnew\n"), 0o600); err != nil {
		tb.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(st.Path(), "new", name)); err != nil {
		tb.Fatal(err)
	}
	return name
}

// A burst of deliveries into a 100,000-message INBOX that sessions have
// open (in IDLE, checking the folder before each command): every message
// is numbered and announced, and the directory is never listed again.
func TestDeliveredBurstNoRescan(t *testing.T) {
	t.Parallel()
	n, burst := 100_000, 200
	if testing.Short() {
		n = 2_000
	}
	st, reg, mb := bigInbox(t, n)
	if got := mb.Status().Messages; got != uint32(n) {
		t.Fatalf("INBOX has %d messages, want %d", got, n)
	}
	w, _ := mb.Watch()
	defer w.Close()
	listings := mb.listings
	for i := range burst {
		name := deliverLikeSMTP(t, st, i)
		if err := reg.Delivered(st.Path()+"/", "", name); err != nil {
			t.Fatal(err)
		}
		if err := mb.Sync(false); err != nil { // what a session does before a command
			t.Fatal(err)
		}
	}
	if d := mb.listings - listings; d != 0 {
		t.Errorf("%d directory listings during the burst, want 0", d)
	}
	ch := w.Changes(true)
	if len(ch) != burst {
		t.Fatalf("%d changes, want %d", len(ch), burst)
	}
	for i, c := range ch {
		if c.Kind != Added || c.UID != uint32(n+1+i) {
			t.Fatalf("change %d = %+v, want Added UID %d", i, c, n+1+i)
		}
	}
	s := mb.Status()
	if s.Messages != uint32(n+burst) || s.UIDNext != uint32(n+burst+1) || s.Recent != uint32(burst) {
		t.Errorf("status %+v", s)
	}
	// On disk: the new files in cur/, the uidlist complete for Dovecot.
	if ents, _ := os.ReadDir(filepath.Join(st.Path(), "new")); len(ents) != 0 {
		t.Errorf("%d files left in new/", len(ents))
	}
	data, err := os.ReadFile(filepath.Join(st.Path(), uidlist.FileName))
	if err != nil {
		t.Fatal(err)
	}
	l, err := uidlist.Parse(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	last := l.Records[len(l.Records)-1]
	if len(l.Records) != n+burst || l.NextUID != uint32(n+burst+1) || last.Name != fmt.Sprintf("1800000000.M%dP2.mx,S=17", burst-1) {
		t.Errorf("uidlist: %d records, next %d, last %+v", len(l.Records), l.NextUID, last)
	}
	// A fresh server agrees.
	mb2 := openBox(t, NewRegistry(), st, "INBOX")
	if m, ok := mb2.Get(uint32(n + burst)); !ok || m.Base != last.Name {
		t.Errorf("reloaded: UID %d = %+v %v", n+burst, m, ok)
	}
}

// What another program does after a Delivered is still seen by the next
// look at the folder.
func TestDeliveredThenForeignChange(t *testing.T) {
	t.Parallel()
	st, reg, mb := bigInbox(t, 10)
	if err := reg.Delivered(st.Path(), "", deliverLikeSMTP(t, st, 1)); err != nil {
		t.Fatal(err)
	}
	deliverFile(t, st, "", 99) // not announced
	if err := mb.Sync(false); err != nil {
		t.Fatal(err)
	}
	if got := mb.Status().Messages; got != 12 {
		t.Errorf("%d messages, want 12", got)
	}
	// Unknown folder, nobody has it open, a bad name: no effect, no error
	// but for the name.
	if err := reg.Delivered(st.Path(), ".Nope", "x"); err != nil {
		t.Error(err)
	}
	if err := reg.Delivered(st.Path(), "", "../x"); err == nil {
		t.Error("a name with a slash was accepted")
	}
}

func BenchmarkDelivered100k(b *testing.B) {
	st, reg, mb := bigInbox(b, 100_000)
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		b.StopTimer()
		name := deliverLikeSMTP(b, st, i)
		b.StartTimer()
		if err := reg.Delivered(st.Path(), "", name); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	if mb.listings != 2 {
		b.Errorf("%d listings", mb.listings)
	}
}

// BenchmarkRescan100k is what each delivery cost before: a full rescan.
func BenchmarkRescan100k(b *testing.B) {
	st, _, mb := bigInbox(b, 100_000)
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		b.StopTimer()
		deliverLikeSMTP(b, st, i)
		b.StartTimer()
		if err := mb.Sync(true); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAppend100k: APPEND into a 100,000-message folder appends one
// uidlist record; the "rewrite" variant is what every APPEND cost before.
func BenchmarkAppend100k(b *testing.B) {
	for _, rewrite := range []bool{false, true} {
		name := "append-record"
		if rewrite {
			name = "rewrite-uidlist"
		}
		b.Run(name, func(b *testing.B) {
			_, _, mb := bigInbox(b, 100_000)
			msg := "Subject: a\r\n\r\nbody\r\n"
			for b.Loop() {
				if rewrite {
					mb.mu.Lock()
					mb.listDirty = true
					mb.mu.Unlock()
				}
				if _, err := mb.Append(strings.NewReader(msg), nil, time.Time{}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
