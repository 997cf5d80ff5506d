package filter

import (
	"fmt"
	"os"
	"strings"
	"testing"
)

// A delivery's Sieve imap4flags keyword is never a reason to fail the
// copy: past the 26 letters of the folder's dovecot-keywords it is
// dropped (the IMAP server keeps such keywords only for what it stores
// itself, see mailstore.ExtraKeywordsFileName), the known ones keep
// their letters, and the table is left as it was.
func TestKeywordLettersFullTable(t *testing.T) {
	t.Parallel()
	dir, err := os.OpenRoot(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer dir.Close()
	var b strings.Builder
	for i := range 26 {
		fmt.Fprintf(&b, "%d k%d\n", i, i)
	}
	if err := dir.WriteFile("dovecot-keywords", []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	letters, err := KeywordLetters(dir, []string{"k2", "brandnew", "K0"}, -1, -1)
	if err != nil || letters != "ca" {
		t.Errorf("letters %q, %v; want \"ca\" and no error", letters, err)
	}
	if data, _ := dir.ReadFile("dovecot-keywords"); string(data) != b.String() {
		t.Errorf("dovecot-keywords changed: %q", data)
	}
}
