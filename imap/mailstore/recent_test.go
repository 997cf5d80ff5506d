package mailstore

import (
	"os"
	"path/filepath"
	"testing"
)

// Two read-write sessions on one INBOX: each message is recent in exactly
// one of them, the first to claim it, and never again.
func TestClaimRecentTwoSessions(t *testing.T) {
	t.Parallel()
	st := testStore(t)
	for i := 1; i <= 3; i++ {
		deliverFile(t, st, "", i)
	}
	reg := NewRegistry()
	a := openBox(t, reg, st, "INBOX")
	b := openBox(t, reg, st, "INBOX")
	if a != b {
		t.Fatal("two opens of INBOX gave two Mailboxes")
	}
	if got := a.Status().Recent; got != 3 {
		t.Errorf("STATUS RECENT before any SELECT = %d, want 3", got)
	}
	steps := []struct {
		name      string
		mb        *Mailbox
		deliver   int // messages delivered before this step
		uidNext   uint32
		wantFirst uint32 // claimed: [wantFirst, uidNext)
	}{
		{"A selects", a, 0, 4, 1},
		{"B selects", b, 0, 4, 4},
		{"A selects again", a, 0, 4, 4},
		{"B learns of message 4 first", b, 1, 5, 4},
		{"A learns of message 4 late", a, 0, 5, 5},
		{"A claims beyond UIDNEXT: nothing", a, 0, 100, 5},
		{"two deliveries, B claims both", b, 2, 0, 5},
		{"A then finds nothing", a, 0, 7, 7},
	}
	n := 3
	for _, s := range steps {
		for range s.deliver {
			n++
			deliverFile(t, st, "", n)
		}
		if s.deliver != 0 {
			if err := s.mb.Sync(false); err != nil {
				t.Fatal(err)
			}
		}
		next := s.uidNext
		if next == 0 {
			next = s.mb.Status().UIDNext
		}
		first := s.mb.ClaimRecent(next)
		if first != s.wantFirst {
			t.Errorf("%s: ClaimRecent(%d) = %d, want %d", s.name, next, first, s.wantFirst)
		}
	}
	if got := a.Status().Recent; got != 0 {
		t.Errorf("STATUS RECENT after the claims = %d, want 0", got)
	}
}

// The claim boundary survives a restart: claimed messages are not recent
// again, messages delivered while nobody had the folder open are.
func TestClaimRecentPersists(t *testing.T) {
	t.Parallel()
	st := testStore(t)
	for i := 1; i <= 3; i++ {
		deliverFile(t, st, "", i)
	}
	reg := NewRegistry()
	mb, err := reg.Open(st, "INBOX")
	if err != nil {
		t.Fatal(err)
	}
	if first := mb.ClaimRecent(4); first != 1 {
		t.Fatalf("first claim = %d, want 1", first)
	}
	mb.Release()

	deliverFile(t, st, "", 4)
	reg = NewRegistry() // a restarted server
	mb = openBox(t, reg, st, "INBOX")
	if got := mb.Status().Recent; got != 1 {
		t.Errorf("after restart RECENT = %d, want 1 (only the message delivered meanwhile)", got)
	}
	if first := mb.ClaimRecent(5); first != 4 {
		t.Errorf("claim after restart = %d, want 4", first)
	}
}

// Without courriel's index (a maildir coming from elsewhere), the messages
// still in new/ are the recent ones.
func TestClaimRecentWithoutIndex(t *testing.T) {
	t.Parallel()
	st := testStore(t)
	cur := filepath.Join(st.Path(), "cur", "1600000000.M1P1.old:2,S")
	if err := os.WriteFile(cur, []byte("Subject: old\n\nx\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	deliverFile(t, st, "", 2)
	mb := openBox(t, NewRegistry(), st, "INBOX")
	s := mb.Status()
	if s.Messages != 2 || s.Recent != 1 {
		t.Fatalf("status = %+v, want 2 messages, 1 recent", s)
	}
	if first := mb.ClaimRecent(s.UIDNext); first != 2 {
		t.Errorf("claim = %d, want 2 (the one in new/)", first)
	}
}
