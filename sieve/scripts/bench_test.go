package scripts

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"courriel/internal/testenv"
)

// BenchmarkPut is the storage's share of PUTSCRIPT: a 6 KB script
// written to tmp/, fsynced, renamed, the directory fsynced.
//
//	go test -run XXX -bench Put -benchtime 500x ./sieve/scripts/
func BenchmarkPut(b *testing.B) {
	home := filepath.Join(testenv.BenchDir(b), "home")
	if err := os.Mkdir(home, 0o700); err != nil {
		b.Fatal(err)
	}
	s, err := Open(home, Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	script := []byte(strings.Repeat("if header :contains \"subject\" \"x\" { fileinto \"X\"; stop; }\r\n", 100))
	b.SetBytes(int64(len(script)))
	b.ResetTimer()
	for range b.N {
		if err := s.Put("filters", script); err != nil {
			b.Fatal(err)
		}
	}
}
