package mailstore

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// listNames gives the names Readdirnames gives (long ones, many reads'
// worth), with an allocation a read rather than one a name.
func TestListNames(t *testing.T) {
	dir := t.TempDir()
	var want []string
	for i := range 3000 {
		name := fmt.Sprintf("%d.M%dP1.host,S=%d:2,S", 1700000000+i, i, i)
		if i%100 == 0 {
			name += strings.Repeat("x", 255-len(name)) // the longest a name may be
		}
		want = append(want, name)
		if err := os.WriteFile(filepath.Join(dir, name), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, ".hidden"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	want = append(want, ".hidden")
	list := func(hint int) []string {
		f, err := os.Open(dir)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		names, err := listNames(f, hint, nil)
		if err != nil {
			t.Fatal(err)
		}
		return names
	}
	for _, hint := range []int{0, 4000} {
		got := list(hint)
		slices.Sort(got)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Errorf("hint %d: %d names, want %d (first %q)", hint, len(got), len(want), got[:min(3, len(got))])
		}
		if allocs := testing.AllocsPerRun(5, func() { list(hint) }); allocs > 300 {
			t.Errorf("hint %d: %.0f allocations listing %d names, want at most 300", hint, allocs, len(want))
		}
	}
}
