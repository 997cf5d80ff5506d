package mailstore

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// replaceFile writes name as Dovecot does: a new file renamed over it.
func replaceFile(t *testing.T, name, content string) {
	t.Helper()
	if err := os.WriteFile(name+".tmp", []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(name+".tmp", name); err != nil {
		t.Fatal(err)
	}
}

func kinds(ch []Change) []ChangeKind {
	var out []ChangeKind
	for _, c := range ch {
		out = append(out, c.Kind)
	}
	return out
}

// Another program's dovecot-uidlist: a new numbering ends the sessions
// (Invalidated), never renumbers silently; a broken or unreadable file
// changes no UID; records it appended are adopted.
func TestForeignUIDList(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		change      func(t *testing.T, st *Store, v uint32, bases []string)
		syncErr     bool
		invalidated bool
		wantUIDs    []uint32
	}{
		{"new UIDVALIDITY", func(t *testing.T, st *Store, v uint32, bases []string) {
			replaceFile(t, filepath.Join(st.Path(), "dovecot-uidlist"),
				fmt.Sprintf("3 V%d N4\n1 :%s\n2 :%s\n3 :%s\n", v+1000, bases[0], bases[1], bases[2]))
		}, false, true, []uint32{1, 2, 3}},
		{"UIDs given anew", func(t *testing.T, st *Store, v uint32, bases []string) {
			replaceFile(t, filepath.Join(st.Path(), "dovecot-uidlist"),
				fmt.Sprintf("3 V%d N14\n11 :%s\n12 :%s\n13 :%s\n", v, bases[0], bases[1], bases[2]))
		}, false, true, []uint32{11, 12, 13}},
		{"broken file", func(t *testing.T, st *Store, v uint32, bases []string) {
			replaceFile(t, filepath.Join(st.Path(), "dovecot-uidlist"), "garbage\n")
		}, false, false, []uint32{1, 2, 3}},
		{"unreadable file", func(t *testing.T, st *Store, v uint32, bases []string) {
			p := filepath.Join(st.Path(), "dovecot-uidlist")
			os.Remove(p)
			os.Mkdir(p, 0o700) // EISDIR, even for root
		}, true, false, []uint32{1, 2, 3}},
		{"a record appended by Dovecot", func(t *testing.T, st *Store, v uint32, bases []string) {
			name := "1700000099.M9P9.dovecot"
			os.WriteFile(filepath.Join(st.Path(), "cur", name+":2,S"), []byte("Subject: d\n\nd\n"), 0o600)
			f, _ := os.OpenFile(filepath.Join(st.Path(), "dovecot-uidlist"), os.O_APPEND|os.O_WRONLY, 0)
			fmt.Fprintf(f, "7 :%s\n", name)
			f.Close()
		}, false, false, []uint32{1, 2, 3, 7}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			st := testStore(t)
			for i := 1; i <= 3; i++ {
				deliverFile(t, st, "", i)
			}
			mb := openBox(t, NewRegistry(), st, "INBOX")
			w, _ := mb.Watch()
			defer w.Close()
			var bases []string
			for _, u := range mb.UIDs() {
				m, _ := mb.Get(u)
				bases = append(bases, m.Base)
			}
			time.Sleep(10 * time.Millisecond) // a distinct mtime on coarse clocks
			tc.change(t, st, mb.UIDValidity(), bases)
			err := mb.Sync(false)
			if (err != nil) != tc.syncErr {
				t.Fatalf("Sync: %v, want an error: %v", err, tc.syncErr)
			}
			ch := w.Changes(true)
			if got := slices.Contains(kinds(ch), Invalidated); got != tc.invalidated {
				t.Errorf("changes %v: Invalidated %v, want %v", kinds(ch), got, tc.invalidated)
			}
			if got := mb.UIDs(); !slices.Equal(got, tc.wantUIDs) {
				t.Errorf("UIDs %v, want %v", got, tc.wantUIDs)
			}
			if tc.syncErr {
				return
			}
			// The next write leaves a file Dovecot reads with these UIDs.
			uid, err := mb.Append(strings.NewReader("Subject: n\r\n\r\nn\r\n"), nil, time.Time{})
			if err != nil {
				t.Fatal(err)
			}
			l := readUIDList(t, st, "")
			if !strings.HasPrefix(l[0], fmt.Sprintf("3 V%d ", mb.UIDValidity())) {
				t.Errorf("uidlist header %q, UIDVALIDITY %d", l[0], mb.UIDValidity())
			}
			var listed []string
			for _, line := range l[1:] {
				listed = append(listed, strings.Fields(line)[0])
			}
			var want []string
			for _, u := range append(tc.wantUIDs, uid) {
				want = append(want, fmt.Sprint(u))
			}
			if !slices.Equal(listed, want) {
				t.Errorf("uidlist UIDs %v, want %v", listed, want)
			}
		})
	}
}

// A file another program renamed (mutt or Dovecot changed its flags: the
// base name stays) is still found by STORE, FETCH and EXPUNGE.
func TestRenamedByOtherProgram(t *testing.T) {
	t.Parallel()
	st := testStore(t)
	for i := 1; i <= 3; i++ {
		deliverFile(t, st, "", i)
	}
	mb := openBox(t, NewRegistry(), st, "INBOX")
	if _, _, err := mb.StoreFlags([]uint32{3}, StoreAdd, []string{Deleted}, nil); err != nil {
		t.Fatal(err)
	}
	w, _ := mb.Watch()
	defer w.Close()
	rename := func(uid uint32, flags string) {
		m, _ := mb.Get(uid)
		old := filepath.Join(st.Path(), mb.pathLocked(&m))
		if err := os.Rename(old, filepath.Join(st.Path(), "cur", m.Base+":2,"+flags)); err != nil {
			t.Fatal(err)
		}
	}
	rename(1, "S")  // read in mutt
	rename(2, "FS") // flagged and read
	rename(3, "ST") // read, still \Deleted
	if b, _, err := mb.ReadMessage(1, nil, 0); err != nil || string(b) != "Subject: 1\n\nbody 1\n" {
		t.Errorf("FETCH of a renamed file: %q %v", b, err)
	}
	fl, ok, err := mb.StoreFlags([]uint32{2}, StoreAdd, []string{Deleted}, nil)
	if err != nil || !ok[0] {
		t.Fatalf("STORE on a renamed file: %v %v", ok, err)
	}
	if got := mb.FlagNames(fl[0]); !slices.Equal(got, []string{Flagged, Deleted, Seen}) {
		t.Errorf("flags after STORE %q: the other program's \\Flagged and \\Seen lost", got)
	}
	gone, err := mb.Expunge(nil, true)
	if err != nil || !slices.Equal(gone, []uint32{2, 3}) {
		t.Fatalf("EXPUNGE = %v %v, want [2 3]", gone, err)
	}
	ents, _ := os.ReadDir(filepath.Join(st.Path(), "cur"))
	if len(ents) != 1 || !strings.HasSuffix(ents[0].Name(), ":2,S") {
		t.Errorf("cur/ after EXPUNGE: %v", ents)
	}
	// Nothing comes back as a new message.
	if err := mb.Sync(true); err != nil {
		t.Fatal(err)
	}
	for _, c := range w.Changes(true) {
		if c.Kind == Added {
			t.Errorf("message %d came back as new", c.UID)
		}
	}
	if got := mb.UIDs(); !slices.Equal(got, []uint32{1}) {
		t.Errorf("UIDs %v, want [1]", got)
	}
}
