package uidlist

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

func TestNextUIDValidity(t *testing.T) {
	t.Parallel()
	now := time.Unix(0x60000000, 0)
	const future = 0x70000000 // a counter ahead of the clock
	tests := []struct {
		name       string
		main       string   // content of dovecot-uidvalidity, "-" for none
		companions []uint32 // dovecot-uidvalidity.<hex> files
		floor      uint32
		want       uint32
	}{
		{"fresh maildir: the time", "-", nil, 0, 0x60000000},
		{"fresh maildir, floor above the time", "-", nil, 0x60000005, 0x60000006},
		{"Dovecot's counter ahead of the clock", fmt.Sprintf("%08x", future), []uint32{future}, 0, future + 1},
		{"counter behind the clock jumps to it", "00000010", []uint32{0x10}, 0, 0x60000000},
		{"main file missing", "-", []uint32{future}, 0, future + 1},
		{"main file broken", "zz", []uint32{future}, 0, future + 1},
		{"main file stale", fmt.Sprintf("%08x", future), []uint32{future + 3}, 0, future + 4},
		{"duplicate companions: the greatest wins", "-", []uint32{future, future + 5}, 0, future + 6},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			if tc.main != "-" {
				os.WriteFile(filepath.Join(dir, UIDValidityFileName), []byte(tc.main), 0o600)
			}
			for _, c := range tc.companions {
				os.WriteFile(filepath.Join(dir, fmt.Sprintf("%s.%08x", UIDValidityFileName, c)), nil, 0o444)
			}
			root, err := os.OpenRoot(dir)
			if err != nil {
				t.Fatal(err)
			}
			defer root.Close()
			got := NextUIDValidity(root, now, tc.floor, -1, -1)
			if got != tc.want {
				t.Errorf("value = %#x, want %#x", got, tc.want)
			}
			// What Dovecot reads next: the main file and exactly one
			// companion, both naming the value given out.
			main, _ := os.ReadFile(filepath.Join(dir, UIDValidityFileName))
			if want := fmt.Sprintf("%08x", tc.want); string(main) != want {
				t.Errorf("%s = %q, want %q", UIDValidityFileName, main, want)
			}
			ents, _ := os.ReadDir(dir)
			var names []string
			for _, e := range ents {
				names = append(names, e.Name())
			}
			want := []string{UIDValidityFileName, fmt.Sprintf("%s.%08x", UIDValidityFileName, tc.want)}
			if !slices.Equal(names, want) {
				t.Errorf("files = %q, want %q", names, want)
			}
			// And the next call gives a greater value.
			if again := NextUIDValidity(root, now, 0, -1, -1); again != tc.want+1 {
				t.Errorf("next value = %#x, want %#x", again, tc.want+1)
			}
		})
	}
}

// Concurrent takers (other processes, other servers on the maildir) never
// get the same value.
func TestNextUIDValidityConcurrent(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	now := time.Unix(0x60000000, 0)
	const n = 8
	vals := make(chan uint32, n*5)
	done := make(chan struct{})
	for range n {
		go func() {
			defer func() { done <- struct{}{} }()
			root, err := os.OpenRoot(dir)
			if err != nil {
				return
			}
			defer root.Close()
			for range 5 {
				vals <- NextUIDValidity(root, now, 0, -1, -1)
			}
		}()
	}
	for range n {
		<-done
	}
	close(vals)
	seen := map[uint32]bool{}
	for v := range vals {
		if seen[v] {
			t.Errorf("value %#x given out twice", v)
		}
		seen[v] = true
	}
}
