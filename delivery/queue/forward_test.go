package queue

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"

	"courriel/delivery"
)

// TestAcceptForward: the remote copy leaves with the rewritten sender
// (SRS), the local copies keep the original as Return-Path, and both
// survive a restart of the queue (the envelope keeps local_from).
func TestAcceptForward(t *testing.T) {
	s := newSink(t, sinkOptions{})
	ls := newLocalStore(t)
	dir := t.TempDir()
	o := baseOptions(t, dir, newClock())
	o.Routes = map[string]string{"remote.test": s.addr}
	o.Dialer = nil
	o.Local = ls
	h := start(t, o)
	_, errs, err := h.q.AcceptForward(context.Background(), "", "alice@orig.test", "SRS0=HASH=TT=orig.test=alice@local.test",
		[]string{"carol@remote.test"}, []delivery.Recipient{ls.rcpt("bob")}, bytes.NewReader([]byte(testMessage)))
	if err != nil || errs[0] != nil {
		t.Fatal(err, errs)
	}
	got := recv(t, s.delivs, "the remote copy")
	if got.from != "SRS0=HASH=TT=orig.test=alice@local.test" {
		t.Errorf("remote copy from <%s>", got.from)
	}
	files := ls.copies(t, "bob")
	b, _ := os.ReadFile(files[0])
	if !strings.HasPrefix(string(b), "Return-Path: <alice@orig.test>\n") {
		t.Errorf("local copy:\n%s", b)
	}
	// The null sender for the remote copies, with a local copy whose first
	// attempt fails: the retry, read back from the spool, still shows the
	// original sender.
	ls.mu.Lock()
	ls.after = func(call int, _ []delivery.Recipient, errs []error) {
		if call == 2 {
			errs[0] = &delivery.Error{Temporary: true, Reason: "test"}
		}
	}
	ls.mu.Unlock()
	if _, _, err := h.q.AcceptForward(context.Background(), "", "eve@orig.test", "", []string{"carol@remote.test"},
		[]delivery.Recipient{ls.rcpt("dave")}, bytes.NewReader([]byte(testMessage))); err != nil {
		t.Fatal(err)
	}
	if got := recv(t, s.delivs, "the second remote copy"); got.from != "" {
		t.Errorf("remote copy from <%s>, want <>", got.from)
	}
	ids, err := h.q.List()
	if err != nil || len(ids) != 1 {
		t.Fatalf("queue: %v %v", ids, err)
	}
	m, _, err := h.q.Show(ids[0].ID)
	if err != nil || m.From != "" || m.LocalFrom == nil || *m.LocalFrom != "eve@orig.test" {
		t.Errorf("envelope read back: %+v %v", m, err)
	}
}

// TestAcceptFolder: a local copy for a Maildir++ folder (quarantine) is
// stored there, and a copy still queued keeps its folder in the envelope.
func TestAcceptFolder(t *testing.T) {
	ls := newLocalStore(t)
	o := baseOptions(t, t.TempDir(), newClock())
	o.Local = ls
	h := start(t, o)
	alice, bob := ls.rcpt("alice"), ls.rcpt("bob")
	alice.Folder, bob.Folder = "Junk", "Junk"
	ls.after = func(_ int, rcpts []delivery.Recipient, errs []error) {
		for i, r := range rcpts {
			if strings.HasPrefix(r.Address, "bob@") {
				errs[i] = &delivery.Error{Temporary: true, Reason: "test"}
			}
		}
	}
	if _, _, err := h.q.Accept(context.Background(), "", "s@orig.test", nil, []delivery.Recipient{alice, bob}, bytes.NewReader([]byte(testMessage))); err != nil {
		t.Fatal(err)
	}
	if n := len(ls.copies(t, "alice")); n != 0 {
		t.Errorf("alice's INBOX has %d copies", n)
	}
	if ents, _ := os.ReadDir(alice.Maildir + ".Junk/new"); len(ents) != 1 {
		t.Errorf("alice's Junk has %d copies", len(ents))
	}
	ids, err := h.q.List()
	if err != nil || len(ids) != 1 {
		t.Fatalf("queue: %v %v", ids, err)
	}
	m, _, err := h.q.Show(ids[0].ID)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range m.Recipients {
		if r.Local == nil || r.Local.Folder != "Junk" {
			t.Errorf("recipient %s read back with %+v", r.Addr, r.Local)
		}
	}
}
