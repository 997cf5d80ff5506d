package filter

import (
	"context"
	"crypto/md5"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"courriel/delivery"
	"courriel/sieve"
)

// duplicateScripts are duplicate tests whose ids Pigeonhole makes in
// different ways (handle or not, :last, :header, :uniqueid): courriel
// must make the same.
var duplicateScripts = []struct{ name, script string }{
	{"message-id", `require ["duplicate", "fileinto", "mailbox"];
if duplicate { fileinto :create "Dups"; }
`},
	{"handle and seconds", `require ["duplicate", "fileinto", "mailbox"];
if duplicate :handle "lists" :seconds 3600 { fileinto :create "Dups"; }
`},
	{"last", `require ["duplicate", "fileinto", "mailbox"];
if duplicate :last { fileinto :create "Dups"; }
`},
	{"header", `require ["duplicate", "fileinto", "mailbox"];
if duplicate :header "message-id" :handle "h" { fileinto :create "Dups"; }
`},
	{"uniqueid", `require ["duplicate", "fileinto", "mailbox", "variables"];
if header :matches "message-id" "<*@*>" { set "u" "${1}"; }
if duplicate :uniqueid "${u}" { fileinto :create "Dups"; }
`},
}

// dups counts the copies filed into Dups by dovecot-lda (its maildir
// in the home) and by courriel (its own).
func (h *ldaHome) dups() (lda, courriel int) {
	a, _ := os.ReadDir(filepath.Join(h.home, "mailbox", ".Dups", "new"))
	b, _ := os.ReadDir(filepath.Join(h.dir, "courriel-mailbox", ".Dups", "new"))
	return len(a), len(b)
}

// A message the real Pigeonhole (dovecot-lda 2.3.19) delivered is a
// duplicate to courriel's duplicate test, and one courriel delivered is
// to Pigeonhole's: both keep the ids in ~/.dovecot.lda-dupes. Another
// Message-ID is none.
func TestDuplicateSharedWithPigeonhole(t *testing.T) {
	for _, c := range duplicateScripts {
		t.Run(c.name+"/pigeonhole then courriel", func(t *testing.T) {
			h := newLDAHome(t, c.script)
			h.lda(t, "bob@z.z", ldaMessage("bob@z.z", "m1"))
			h.courriel(t, "bob@z.z", ldaMessage("bob@z.z", "m1"))
			if lda, co := h.dups(); lda != 0 || co != 1 {
				t.Fatalf("Dups: dovecot-lda %d, courriel %d; want 0, 1 (courriel sees Pigeonhole's mark)", lda, co)
			}
			h.courriel(t, "bob@z.z", ldaMessage("bob@z.z", "m2"))
			if _, co := h.dups(); co != 1 {
				t.Errorf("another Message-ID filed into Dups by courriel")
			}
		})
		t.Run(c.name+"/courriel then pigeonhole", func(t *testing.T) {
			h := newLDAHome(t, c.script)
			h.courriel(t, "bob@z.z", ldaMessage("bob@z.z", "m1"))
			_, log := h.lda(t, "bob@z.z", ldaMessage("bob@z.z", "m1"))
			if lda, co := h.dups(); lda != 1 || co != 0 {
				t.Fatalf("Dups: dovecot-lda %d, courriel %d; want 1, 0 (Pigeonhole sees courriel's mark)\n%s", lda, co, log)
			}
			_, log = h.lda(t, "bob@z.z", ldaMessage("bob@z.z", "m2"))
			if lda, _ := h.dups(); lda != 1 {
				t.Errorf("another Message-ID filed into Dups by dovecot-lda\n%s", log)
			}
		})
	}
}

// The duplicate test's id is recorded whenever the script's actions
// succeed (Pigeonhole's act_duplicate_mark_finish: status OK), whatever
// they are: a message rejected or discarded was seen, and its second
// delivery is a duplicate, under dovecot-lda as under courriel, and from
// one to the other.
func TestDuplicateMarkedWhateverTheOutcome(t *testing.T) {
	outcomes := []struct{ name, action string }{
		{"reject", `reject "not now";`},
		{"discard", `discard;`},
		{"redirect", `redirect "elsewhere@z.z";`},
	}
	script := func(action string) string {
		return `require ["duplicate", "fileinto", "mailbox", "reject"];
if duplicate { fileinto :create "Dups"; stop; }
` + action + "\n"
	}
	deliver := map[string]func(t *testing.T, h *ldaHome, msg string){
		"pigeonhole": func(t *testing.T, h *ldaHome, msg string) { h.lda(t, "bob@z.z", msg) },
		"courriel": func(t *testing.T, h *ldaHome, msg string) {
			if _, log, err := h.courrielRun(t, "bob@z.z", msg); err != nil && !errors.Is(err, delivery.ErrRejected) {
				t.Fatalf("courriel: %v\n%s", err, log)
			}
		},
	}
	for _, o := range outcomes {
		for _, first := range []string{"pigeonhole", "courriel"} {
			for _, second := range []string{"pigeonhole", "courriel"} {
				t.Run(o.name+"/"+first+" then "+second, func(t *testing.T) {
					h := newLDAHome(t, script(o.action))
					deliver[first](t, h, ldaMessage("bob@z.z", "m1"))
					if lda, co := h.dups(); lda+co != 0 {
						t.Fatalf("the first delivery filed into Dups")
					}
					deliver[second](t, h, ldaMessage("bob@z.z", "m1"))
					lda, co := h.dups()
					if lda+co != 1 {
						log, _ := os.ReadFile(filepath.Join(h.dir, "lda.log"))
						t.Errorf("the second delivery of a message the first %s did not file it into Dups (dovecot-lda %d, courriel %d)\n%s", o.name, lda, co, log)
					}
				})
			}
		}
	}
}

// The duplicate test's lock is Dovecot's: while courriel holds the id a
// duplicate test locked (a delivery between its test and its record),
// dovecot-lda's test of the same message waits, then finds the record
// courriel made meanwhile and files the message into Dups.
func TestDuplicateIDLockWithPigeonhole(t *testing.T) {
	h := newLDAHome(t, duplicateScripts[0].script)
	f, root := h.lockingFilter(t)
	sum := md5.Sum([]byte("sieve duplicate+default<m1@z.z>"))
	holds := &dupHolds{f: f, ctx: context.Background()}
	defer holds.release()
	if err := holds.lock(root, h.home, string(sum[:]), h.uid, h.gid); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, _, err := h.ldaRun("bob@z.z", ldaMessage("bob@z.z", "m1"))
		done <- err
	}()
	// Give dovecot-lda the time to reach the lock (were it not waiting,
	// the test would pass without proving anything, never fail wrongly).
	time.Sleep(500 * time.Millisecond)
	if lda, _ := h.dups(); lda != 0 {
		t.Fatal("dovecot-lda filed into Dups before courriel recorded the id")
	}
	marks := []sieve.DuplicateMark{{ID: sieve.DuplicateID{Pigeonhole: string(sum[:])}, Expires: time.Now().Add(time.Hour)}}
	if problem, err := f.markDuplicates(context.Background(), h.home, h.user, marks, h.uid, h.gid); err != nil || problem != "" {
		t.Fatalf("courriel's record: %q, %v", problem, err)
	}
	holds.release()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("dovecot-lda still waits for the id's lock after courriel released it")
	}
	if lda, _ := h.dups(); lda != 1 {
		log, _ := os.ReadFile(filepath.Join(h.dir, "lda.log"))
		t.Errorf("dovecot-lda filed %d copies into Dups after courriel's record, want 1\n%s", lda, log)
	}
}
