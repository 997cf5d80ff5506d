package mailstore

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"courriel/delivery/maildirsize"
)

// TestQuotaFollowsIMAP: where the maildir keeps a maildirsize (a quota is
// in use), APPEND and COPY add their messages to it and EXPUNGE takes them
// away, as Dovecot's maildir++ quota does, so the usage delivery checks
// drops when the user deletes mail; a move within the maildir changes
// nothing. Without the file nothing is written.
func TestQuotaFollowsIMAP(t *testing.T) {
	st := testStore(t)
	reg := NewRegistry()
	inbox := openBox(t, reg, st, "INBOX")
	body := "Subject: q\r\n\r\n" + strings.Repeat("x", 100) + "\r\n"
	if _, err := inbox.Append(strings.NewReader(body), nil, time.Now()); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(st.Path(), maildirsize.FileName)
	if _, err := os.Stat(path); err == nil {
		t.Fatal("maildirsize written for a maildir without quota")
	}
	root, err := os.OpenRoot(st.Path())
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	lim := maildirsize.Limits{Bytes: 1 << 20}
	usage := func() maildirsize.Usage {
		t.Helper()
		u, err := maildirsize.Read(root, lim, maildirsize.Owner{UID: -1, GID: -1}, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		return u
	}
	one := usage() // counted afresh: the message appended above
	if one.Messages != 1 || one.Bytes <= 100 {
		t.Fatalf("usage %+v", one)
	}
	uid, err := inbox.Append(strings.NewReader(body), nil, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if u := usage(); u != (maildirsize.Usage{Bytes: 2 * one.Bytes, Messages: 2}) {
		t.Errorf("after APPEND: %+v", u)
	}
	if err := st.Create("Archive"); err != nil {
		t.Fatal(err)
	}
	archive := openBox(t, reg, st, "Archive")
	if _, _, err := inbox.CopyTo(archive, []uint32{uid}); err != nil {
		t.Fatal(err)
	}
	if u := usage(); u.Messages != 3 {
		t.Errorf("after COPY: %+v", u)
	}
	if _, _, err := inbox.MoveTo(archive, []uint32{uid}); err != nil {
		t.Fatal(err)
	}
	if u := usage(); u.Messages != 3 {
		t.Errorf("after MOVE within the maildir: %+v", u)
	}
	if _, err := archive.Expunge(nil, false); err != nil {
		t.Fatal(err)
	}
	if u := usage(); u != one {
		t.Errorf("after EXPUNGE of the archive: %+v, want %+v", u, one)
	}
}
