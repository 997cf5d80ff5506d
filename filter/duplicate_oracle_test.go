package filter

import (
	"os"
	"path/filepath"
	"testing"
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
