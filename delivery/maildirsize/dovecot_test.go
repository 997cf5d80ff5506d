package maildirsize

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"courriel/internal/testenv"
)

// TestDovecotSharesMaildirsize: Dovecot 2.3's maildir++ quota reads the
// maildirsize we keep (a line of ours shows in its GETQUOTAROOT), and the
// line it appends for an APPEND shows in our next Read: switching between
// courriel and Dovecot keeps one count.
func TestDovecotSharesMaildirsize(t *testing.T) {
	testenv.NeedDovecot(t)
	root, dir := newMaildir(t, map[string]string{"new/1.M1.h,S=2048,W=2100": strings.Repeat("x", 2048)})
	lim := Limits{Bytes: 10 << 20}
	if _, err := Read(root, lim, Owner{-1, -1}, time.Now()); err != nil {
		t.Fatal(err)
	}
	// One megabyte that is only in our file: Dovecot counts it only if it
	// reads the file rather than the folders.
	if err := Add(root, 1<<20, 1); err != nil {
		t.Fatal(err)
	}
	out := testenv.RunDovecot(t, dir, quotaConf, "a GETQUOTAROOT INBOX\r\nb APPEND INBOX {11}\r\nfrom Dovec\r\nc LOGOUT\r\n")
	m := regexp.MustCompile(`\* QUOTA "User quota" \(STORAGE (\d+) (\d+)\)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no QUOTA in Dovecot's answer:\n%s", out)
	}
	if used, _ := strconv.Atoi(m[1]); used != (2048+1<<20)/1024 || m[2] != strconv.Itoa(10<<10) {
		t.Errorf("Dovecot sees STORAGE %s %s, want %d KiB of %d KiB", m[1], m[2], (2048+1<<20)/1024, 10<<10)
	}
	if !strings.Contains(out, "b OK") {
		t.Fatalf("Dovecot's APPEND failed:\n%s", out)
	}
	u, err := Read(root, lim, Owner{-1, -1}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if u.Messages != 3 || u.Bytes <= 2048+1<<20 {
		b, _ := os.ReadFile(filepath.Join(dir, FileName))
		t.Errorf("after Dovecot's APPEND we read %+v from %q", u, b)
	}
}

// quotaConf is Dovecot's maildir++ quota of 10 MiB, the limit of our file.
const quotaConf = `mail_plugins = quota
protocol imap {
  mail_plugins = $mail_plugins imap_quota
}
plugin {
  quota = maildir:User quota
  quota_rule = *:storage=10M
}
`
