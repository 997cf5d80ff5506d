package mailstore

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// RENAME of a folder with children is all or nothing as far as the file
// system allows: each directory is renamed apart, and a failure half-way
// undoes the renames already made, where Dovecot 2.3 leaves the hierarchy
// split. Nothing another process made at a new name meanwhile is
// replaced; a child it deleted meanwhile is left out.
func TestRenameHierarchyAllOrNothing(t *testing.T) {
	t.Parallel()
	old := []string{"A", "A.B", "A.B.D", "A.C", "Other"}
	cases := []struct {
		name string
		// hook is called before each directory rename (from, to: the
		// directory names, the undoing's included).
		hook    func(t *testing.T, st *Store, from, to string) error
		wantErr error // nil: success
		want    []string
	}{
		{name: "all renamed", want: []string{"N", "N.B", "N.B.D", "N.C", "Other"}},
		{
			name: "a child fails",
			hook: func(t *testing.T, st *Store, from, to string) error {
				if from == ".A.B.D" {
					return os.ErrPermission
				}
				return nil
			},
			wantErr: os.ErrPermission,
			want:    old,
		},
		{
			name: "a folder made meanwhile at a child's new name",
			hook: func(t *testing.T, st *Store, from, to string) error {
				if to == ".N.C" {
					// Another process's CREATE: an empty directory,
					// which rename(2) would replace.
					if err := os.Mkdir(filepath.Join(st.Path(), ".N.C"), 0o700); err != nil {
						t.Fatal(err)
					}
				}
				return nil
			},
			wantErr: ErrFolderExists,
			want:    []string{"A", "A.B", "A.B.D", "A.C", "N.C", "Other"},
		},
		{
			name: "a child deleted meanwhile",
			hook: func(t *testing.T, st *Store, from, to string) error {
				if from == ".A.C" {
					if err := os.RemoveAll(filepath.Join(st.Path(), ".A.C")); err != nil {
						t.Fatal(err)
					}
				}
				return nil
			},
			want: []string{"N", "N.B", "N.B.D", "Other"},
		},
		{
			name: "the undo fails too",
			hook: func(t *testing.T, st *Store, from, to string) error {
				if from == ".A.C" || from == ".N.B" {
					return os.ErrPermission
				}
				return nil
			},
			wantErr: ErrRenameSplit,
			want:    []string{"A", "A.B.D", "A.C", "N.B", "Other"},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			st := testStore(t)
			for _, f := range old {
				if err := st.Create(f); err != nil {
					t.Fatal(err)
				}
			}
			if c.hook != nil {
				st.renameHook = func(from, to string) error { return c.hook(t, st, from, to) }
			}
			err := st.Rename("A", "N")
			if c.wantErr == nil && err != nil || c.wantErr != nil && !errors.Is(err, c.wantErr) {
				t.Errorf("Rename: %v, want %v", err, c.wantErr)
			}
			got, err := st.Folders()
			if err != nil {
				t.Fatal(err)
			}
			if slices.Sort(got); !slices.Equal(got, c.want) {
				t.Errorf("folders after the rename:\n%q\nwant\n%q", got, c.want)
			}
		})
	}
}
