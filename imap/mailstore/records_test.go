package mailstore

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"courriel/imap/uidlist"
)

// appendRecord adds a record to folder dir's dovecot-uidlist as another
// program does under the lock (the test holds none: nothing else writes).
func appendRecord(t *testing.T, st *Store, uid uint32, base string) {
	t.Helper()
	f, err := os.OpenFile(filepath.Join(st.Path(), uidlist.FileName), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := fmt.Fprintf(f, "%d :%s\n", uid, base); err != nil {
		t.Fatal(err)
	}
}

// putFile writes a message file into the folder (cur/ with \Seen, or new/).
func putFile(t *testing.T, st *Store, base string, inCur bool) {
	t.Helper()
	p := filepath.Join(st.Path(), "new", base)
	if inCur {
		p = filepath.Join(st.Path(), "cur", base+":2,S")
	}
	if err := os.WriteFile(p, []byte("Subject: "+base+"\n\nx\n"), 0o600); err != nil {
		t.Fatal(err)
	}
}

// uidListRecords returns the records of the folder's dovecot-uidlist by
// base name, failing on a file listed twice.
func uidListRecords(t *testing.T, st *Store) (*uidlist.List, map[string]uint32) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(st.Path(), uidlist.FileName))
	if err != nil {
		t.Fatal(err)
	}
	l, err := uidlist.Parse(strings.NewReader(string(data)))
	if err != nil {
		t.Fatalf("dovecot-uidlist: %v\n%s", err, data)
	}
	recs := map[string]uint32{}
	for _, r := range l.Records {
		if u, dup := recs[r.Name]; dup {
			t.Errorf("dovecot-uidlist lists %s twice (%d, %d):\n%s", r.Name, u, r.UID, data)
		}
		recs[r.Name] = r.UID
	}
	return l, recs
}

// A file the uidlist numbers keeps that UID, whatever happened to it: never
// a second record, never a second message. Below UIDs sessions know (an
// expunged message's file put back, another program's message found after
// later ones), it comes back under a new UIDVALIDITY, with its UID, the
// sessions closed (Invalidated) rather than shown a UID below theirs or
// left without it; a file listed twice is the later record's, as Dovecot
// reads it.
func TestUIDListNumbersFileOnce(t *testing.T) {
	t.Parallel()
	const x, y = "1700000200.M1P7.other", "1700000201.M1P7.other"
	tests := []struct {
		name string
		// change is what happens to the folder (open with UIDs 1, 2, 3)
		// before a sync; then is what happens after it, before the
		// next (nil: nothing).
		change, then     func(t *testing.T, st *Store, mb *Mailbox)
		wantFirst        []uint32 // after the first sync
		want             []uint32 // at the end
		wantInvalidated  bool
		wantNewValidity  bool
		wantListedAt     map[string]uint32 // base: UID in dovecot-uidlist at the end
		reopenDuplicates bool              // the change is made with the folder closed
	}{
		{
			name: "an expunged message's file put back",
			change: func(t *testing.T, st *Store, mb *Mailbox) {
				m, _ := mb.Get(2)
				data, err := os.ReadFile(filepath.Join(st.Path(), mb.pathLocked(&m)))
				if err != nil {
					t.Fatal(err)
				}
				if _, err := mb.Expunge(func(u uint32) bool { return u == 2 }, false); err != nil {
					t.Fatal(err)
				}
				os.WriteFile(filepath.Join(st.Path(), "cur", m.Base+":2,S"), data, 0o600)
			},
			wantFirst: []uint32{1, 2, 3}, want: []uint32{1, 2, 3},
			wantInvalidated: true, wantNewValidity: true,
		},
		{
			name: "another program's message found after a later one",
			change: func(t *testing.T, st *Store, mb *Mailbox) {
				// x's file is elsewhere (a restore, a rename under way
				// past every rescan): declared gone under the lock.
				appendRecord(t, st, 4, x)
				appendRecord(t, st, 5, y)
				putFile(t, st, y, true)
			},
			then: func(t *testing.T, st *Store, mb *Mailbox) {
				putFile(t, st, x, true)
			},
			wantFirst: []uint32{1, 2, 3, 5}, want: []uint32{1, 2, 3, 4, 5},
			wantInvalidated: true, wantNewValidity: true,
			wantListedAt: map[string]uint32{x: 4, y: 5},
		},
		{
			name: "another program's messages, files found in order",
			change: func(t *testing.T, st *Store, mb *Mailbox) {
				appendRecord(t, st, 4, x)
				appendRecord(t, st, 5, y)
				putFile(t, st, y, true)
				putFile(t, st, x, false)
			},
			wantFirst: []uint32{1, 2, 3, 4, 5}, want: []uint32{1, 2, 3, 4, 5},
			wantListedAt: map[string]uint32{x: 4, y: 5},
		},
		{
			name: "a file listed twice",
			change: func(t *testing.T, st *Store, mb *Mailbox) {
				appendRecord(t, st, 4, x)
				appendRecord(t, st, 5, x)
				putFile(t, st, x, true)
			},
			reopenDuplicates: true,
			wantFirst:        []uint32{1, 2, 3, 5}, want: []uint32{1, 2, 3, 5},
			wantListedAt: map[string]uint32{x: 5},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			st := testStore(t)
			for i := 1; i <= 3; i++ {
				deliverFile(t, st, "", i)
			}
			reg := NewRegistry()
			mb := openBox(t, reg, st, "INBOX")
			v0 := mb.UIDValidity()
			if tc.reopenDuplicates {
				mb.Release()
				reg = NewRegistry() // nothing kept: loaded afresh
				tc.change(t, st, nil)
				mb = openBox(t, reg, st, "INBOX")
			}
			w, view := mb.Watch()
			defer w.Close()
			s := &sessionModel{w: w, view: view, uidNext: mb.Status().UIDNext}
			if !tc.reopenDuplicates {
				tc.change(t, st, mb)
			}
			if err := mb.Sync(true); err != nil {
				t.Fatal(err)
			}
			if got := mb.UIDs(); !slices.Equal(got, tc.wantFirst) {
				t.Errorf("UIDs after the change %v, want %v", got, tc.wantFirst)
			}
			if tc.then != nil {
				tc.then(t, st, mb)
				if err := mb.Sync(true); err != nil {
					t.Fatal(err)
				}
			}
			s.update(t, "the sync")
			if s.invalidated != tc.wantInvalidated {
				t.Errorf("sessions invalidated: %v, want %v", s.invalidated, tc.wantInvalidated)
			}
			if !s.invalidated {
				// What a session shows, and what a fresh load finds.
				checkFolder(t, "the end", st, mb, s)
			}
			if got := mb.UIDs(); !slices.Equal(got, tc.want) {
				t.Errorf("UIDs %v, want %v", got, tc.want)
			}
			v := mb.UIDValidity()
			if (v != v0) != tc.wantNewValidity {
				t.Errorf("UIDVALIDITY %d, was %d: want a new one: %v", v, v0, tc.wantNewValidity)
			}
			l, recs := uidListRecords(t, st)
			if l.UIDValidity != v {
				t.Errorf("dovecot-uidlist has UIDVALIDITY %d, the folder %d", l.UIDValidity, v)
			}
			for base, uid := range tc.wantListedAt {
				if recs[base] != uid {
					t.Errorf("dovecot-uidlist numbers %s %d, want %d", base, recs[base], uid)
				}
			}
			for _, u := range mb.UIDs() {
				m, _ := mb.Get(u)
				if recs[m.Base] != u {
					t.Errorf("message %d (%s) is %d in dovecot-uidlist", u, m.Base, recs[m.Base])
				}
			}
			fresh := openBox(t, NewRegistry(), st, "INBOX")
			if got := fresh.UIDs(); !slices.Equal(got, tc.want) || fresh.UIDValidity() != v {
				t.Errorf("a fresh load: UIDs %v under %d, want %v under %d", got, fresh.UIDValidity(), tc.want, v)
			}
		})
	}
}
