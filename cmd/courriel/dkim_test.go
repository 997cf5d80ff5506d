package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// dkim keygen's table says what its text says: inactive until the records
// are published. Pasted as printed beside the domain's active selector (a
// rotation), the configuration stays valid: one active selector.
func TestDKIMKeygenInactive(t *testing.T) {
	t.Parallel()
	keys := t.TempDir()
	var tables []string
	for _, sel := range []string{"2026a", "2026b"} {
		code, out, errOut := runCmd(t, "", "dkim", "keygen", "-domain", "hosted-domain.com", "-selector", sel, "-dir", keys)
		if code != 0 {
			t.Fatalf("keygen %s: %d %q", sel, code, errOut)
		}
		_, table, ok := strings.Cut(out, "[[mailauth.dkim]]")
		if !ok || !strings.Contains(out, "set active = true here") || !strings.HasSuffix(table, "\nactive = false\n") {
			t.Fatalf("keygen %s printed:\n%s", sel, out)
		}
		tables = append(tables, "[[mailauth.dkim]]"+table)
	}
	// The first key's records published: it is made active.
	tables[0] = strings.Replace(tables[0], "active = false", "active = true", 1)
	cfg := queueConfig(t, filepath.Join(t.TempDir(), "queue"))
	b, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	data := string(b) + "[mailauth]\n" + strings.Join(tables, "\n")
	if _, err := ParseConfig(cfg, []byte(data)); err != nil {
		t.Errorf("the second table as printed beside the active first: %v\n%s", err, data)
	}
}
