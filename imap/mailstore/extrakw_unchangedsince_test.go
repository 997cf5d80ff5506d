package mailstore

import (
	"slices"
	"testing"
	"time"

	"courriel/imap/uidlist"
)

// STORE UNCHANGEDSINCE while another process holds dovecot-uidlist.lock:
// the first try changes message 1's keywords beyond the letters (no
// rename, no lock needed) before message 2 finds the lock busy; the retry
// once the lock is free must not report message 1 MODIFIED for the change
// this STORE made. It did.
func TestExtraUnchangedSinceRetryNotModified(t *testing.T) {
	st := testStore(t)
	deliverFile(t, st, "", 1)
	deliverFile(t, st, "", 2)
	mb := openBox(t, NewRegistry(), st, "INBOX")
	fillLetters(t, mb, 1, false) // dovecot-keywords full
	if _, _, err := mb.StoreFlags([]uint32{1}, StoreAdd, []string{Seen}, nil); err != nil {
		t.Fatal(err)
	}
	ms := mb.ModSeqsOf([]uint32{1, 2})
	since := max(ms[0], ms[1])
	lk, err := uidlist.Acquire(mb.root, uidlist.FileName, 0, 0o600, -1, -1)
	if err != nil {
		t.Fatal(err)
	}
	go func() { time.Sleep(200 * time.Millisecond); lk.Release() }()
	_, _, ok, modified, err := mb.StoreFlagsUnchangedSincePiece(nil, []uint32{1, 2}, StoreAdd, []string{Seen, "beyond"}, nil, since)
	if err != nil {
		t.Fatal(err)
	}
	if len(modified) > 0 {
		t.Errorf("UID %v reported MODIFIED (UNCHANGEDSINCE %d) though only this STORE changed it", modified, since)
	}
	if !ok[0] || !ok[1] {
		t.Errorf("ok %v", ok)
	}
	for _, uid := range []uint32{1, 2} {
		if got := namesOf(t, mb, uid); !slices.Contains(got, "beyond") || !slices.Contains(got, Seen) {
			t.Errorf("UID %d: FLAGS %q", uid, got)
		}
	}
}

// A message changed by another session between the tries is still
// MODIFIED: what the first try changed is told from later changes.
func TestExtraUnchangedSinceRetryOtherChange(t *testing.T) {
	st := testStore(t)
	deliverFile(t, st, "", 1)
	deliverFile(t, st, "", 2)
	reg := NewRegistry()
	mb := openBox(t, reg, st, "INBOX")
	fillLetters(t, mb, 1, false)
	if _, _, err := mb.StoreFlags([]uint32{1}, StoreAdd, []string{Seen}, nil); err != nil {
		t.Fatal(err)
	}
	ms := mb.ModSeqsOf([]uint32{1, 2})
	since := max(ms[0], ms[1])
	lk, err := uidlist.Acquire(mb.root, uidlist.FileName, 0, 0o600, -1, -1)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		time.Sleep(100 * time.Millisecond)
		// Another session: message 1 only, beyond the letters (no lock).
		_, _, err := mb.StoreFlags([]uint32{1}, StoreAdd, []string{"other"}, nil)
		done <- err
		time.Sleep(100 * time.Millisecond)
		lk.Release()
	}()
	_, _, _, modified, err := mb.StoreFlagsUnchangedSincePiece(nil, []uint32{1, 2}, StoreAdd, []string{Seen, "beyond"}, nil, since)
	if err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(modified, []uint32{1}) {
		t.Errorf("MODIFIED %v, want [1] (changed by another session between the tries)", modified)
	}
}
