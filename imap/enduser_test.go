package imap

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// EndUser (the user's home moving to another node) closes the folders
// kept loaded after the user's last session, at once: nothing of the home
// stays open here.
func TestEndUserDropsKeptFolders(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	for _, d := range []string{"cur", "new", "tmp"} {
		os.MkdirAll(filepath.Join(e.maildir, d), 0o700)
	}
	for i := range 1200 { // large enough to be kept
		name := fmt.Sprintf("%d.M%dP1.test,S=20:2,S", 1700000000+i, i)
		if err := os.WriteFile(filepath.Join(e.maildir, "cur", name), []byte("Subject: x\n\nx\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	c := e.login(nil)
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	c.Logout().Wait()
	// Kept once its stamps have settled (bounded wait).
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if n, _ := e.srv.reg.KeptFolders(); n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("INBOX not kept 10 s after the session ended")
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, release, err := e.srv.EndUser(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	if n, _ := e.srv.reg.KeptFolders(); n != 0 {
		t.Errorf("%d folders kept after EndUser, want 0", n)
	}
}
