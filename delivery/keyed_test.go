package delivery

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"testing"
	"time"
)

// A keyed copy is found again whatever sizes its name carries: one stored
// by an earlier version (whose added fields differed in length, so its
// S=/W= did), in new/ or seen in cur/, is not stored a second time; a copy
// under another key is.
func TestKeyedCopyFoundWhateverItsSizes(t *testing.T) {
	t.Parallel()
	sizes := regexp.MustCompile(`,S=\d+,W=\d+`)
	for _, c := range []struct {
		name   string
		rename func(old string) string // where the earlier version's copy is
		key    string
		copies int
	}{
		{"in new/ with other sizes", func(old string) string { return "new/" + sizes.ReplaceAllString(old, ",S=1,W=2") }, "q1-0", 1},
		{"in cur/ with other sizes and flags", func(old string) string { return "cur/" + sizes.ReplaceAllString(old, ",S=1,W=2") + ":2,S" }, "q1-0", 1},
		{"another key", func(old string) string { return "new/" + old }, "q1-1", 2},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			base := t.TempDir()
			s := newStore(t, Options{AllowedBase: base})
			maildir := base + "/u/mailbox/"
			arrived := time.Unix(1700000000, 0)
			m := func(retry bool) *Message {
				return &Message{ID: "Q1", From: "a@b.c", Arrived: arrived, Retry: retry, Body: bytes.NewReader([]byte("Subject: x\r\n\r\nbody\r\n"))}
			}
			deliverOK(t, s, m(false), Recipient{Address: "u@x.y", Maildir: maildir, CopyKey: "q1-0"})
			old, _ := onlyNew(t, maildir)
			if err := os.Rename(filepath.Join(maildir, "new", old), filepath.Join(maildir, c.rename(old))); err != nil {
				t.Fatal(err)
			}
			deliverOK(t, s, m(true), Recipient{Address: "u@x.y", Maildir: maildir, CopyKey: c.key})
			n := len(files(t, filepath.Join(maildir, "new"))) + len(files(t, filepath.Join(maildir, "cur")))
			if n != c.copies {
				t.Errorf("%d copies in the maildir, want %d", n, c.copies)
			}
		})
	}
}
