package delivery

import (
	"fmt"
	"os"
	"testing"
)

// TestDeliverFollowsReplacedNew: a maildir held open between deliveries must
// not keep writing into a new/ that is no longer the maildir's new/.
func TestDeliverFollowsReplacedNew(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		replace func(t *testing.T, maildir string)
		want    int // files in new/ after the second delivery
	}{
		{"new renamed and recreated", func(t *testing.T, md string) {
			must(t, os.Rename(md+"new", md+"new.old"))
			must(t, os.Mkdir(md+"new", 0o700))
		}, 1},
		{"new removed", func(t *testing.T, md string) {
			must(t, os.Rename(md+"new", md+"new.old"))
		}, 1},
		{"whole maildir moved away", func(t *testing.T, md string) {
			must(t, os.Rename(md, md[:len(md)-1]+".old"))
		}, 1},
		{"home replaced by a symlink to the same place", func(t *testing.T, md string) {
			home := md[:len(md)-len("/mailbox/")]
			must(t, os.Rename(home, home+".real"))
			must(t, os.Symlink("u.real", home)) // relative: a fresh open accepts it too
		}, 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			base := t.TempDir()
			s := newStore(t, Options{AllowedBase: base})
			md := base + "/u/mailbox/"
			rcpt := Recipient{Address: "x@y.z", Maildir: md}
			deliverOK(t, s, testMessage("H1"), rcpt)
			tc.replace(t, md)
			deliverOK(t, s, testMessage("H2"), rcpt)
			if got := files(t, md+"new"); len(got) != tc.want {
				t.Errorf("new/ holds %v, want %d file(s)", got, tc.want)
			}
		})
	}
}

// TestMaildirCacheBounded: deliveries to many maildirs keep at most
// maildirCacheSize of them open, and Close releases them all.
func TestMaildirCacheBounded(t *testing.T) {
	t.Parallel()
	base := t.TempDir()
	s := newStore(t, Options{AllowedBase: base})
	for i := range maildirCacheSize + 40 {
		md := fmt.Sprintf("%s/u%d/mailbox/", base, i)
		deliverOK(t, s, testMessage("B"), Recipient{Address: "x@y.z", Maildir: md})
		if len(files(t, md+"new")) != 1 {
			t.Fatalf("maildir %d: no copy", i)
		}
	}
	s.maildirs.mu.Lock()
	n := len(s.maildirs.m)
	s.maildirs.mu.Unlock()
	if n > maildirCacheSize {
		t.Errorf("%d maildirs held open, limit %d", n, maildirCacheSize)
	}
	s.Close()
	s.maildirs.mu.Lock()
	n = len(s.maildirs.m)
	s.maildirs.mu.Unlock()
	if n != 0 {
		t.Errorf("%d maildirs held open after Close", n)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
