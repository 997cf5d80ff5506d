package delivery

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// TestCreateTmp runs both ways of creating tmp/<name> (O_TMPFILE + link, and
// the plain exclusive create it falls back to) against what may already be
// at the name: neither may reuse a file or follow a symlink.
func TestCreateTmp(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name    string
		prepare func(t *testing.T, tmp, outside string) // puts something at tmp/x
		wantErr bool
	}{
		{"free name", func(*testing.T, string, string) {}, false},
		{"file there", func(t *testing.T, tmp, _ string) { writeFile(t, tmp+"/x", "old") }, true},
		{"symlink to a file outside", func(t *testing.T, tmp, out string) {
			writeFile(t, out+"/victim", "victim")
			symlink(t, out+"/victim", tmp+"/x")
		}, true},
		{"dangling symlink outside", func(t *testing.T, tmp, out string) { symlink(t, out+"/new", tmp+"/x") }, true},
		{"directory there", func(t *testing.T, tmp, _ string) { mkdir(t, tmp+"/x") }, true},
	}
	for _, plain := range []bool{false, true} {
		for _, tc := range cases {
			t.Run(map[bool]string{false: "tmpfile/", true: "plain/"}[plain]+tc.name, func(t *testing.T) {
				t.Parallel()
				tmp, out := t.TempDir(), t.TempDir()
				tc.prepare(t, tmp, out)
				d, err := os.Open(tmp)
				if err != nil {
					t.Fatal(err)
				}
				defer d.Close()
				f, err := createTmp(d, "x", plain)
				if tc.wantErr {
					if !errors.Is(err, fs.ErrExist) {
						t.Errorf("createTmp over %s: %v, want fs.ErrExist", tc.name, err)
					}
					if f != nil {
						f.Close()
					}
					if b, _ := os.ReadFile(out + "/victim"); len(b) > 0 && string(b) != "victim" {
						t.Errorf("file outside changed: %q", b)
					}
					if n := files(t, out); len(n) > 1 || (len(n) == 1 && n[0] != "victim") {
						t.Errorf("created outside tmp/: %v", n)
					}
					return
				}
				if err != nil {
					t.Fatalf("createTmp: %v", err)
				}
				if _, err := f.Write([]byte("hello")); err != nil {
					t.Fatal(err)
				}
				if err := f.Close(); err != nil {
					t.Fatal(err)
				}
				fi, err := os.Lstat(tmp + "/x")
				if err != nil {
					t.Fatal(err)
				}
				if !fi.Mode().IsRegular() || fi.Size() != 5 || fi.Sys().(*syscall.Stat_t).Nlink != 1 {
					t.Errorf("tmp/x: mode %v size %d links %d; want a regular file of 5 bytes, 1 link",
						fi.Mode(), fi.Size(), fi.Sys().(*syscall.Stat_t).Nlink)
				}
			})
		}
	}
}

// TestDeliverPlainCreate delivers through the fallback create, and checks
// that tmp/ is left empty as with O_TMPFILE.
func TestDeliverPlainCreate(t *testing.T) {
	t.Parallel()
	base := t.TempDir()
	s := newStore(t, Options{AllowedBase: base})
	s.plainCreate = true
	md := base + "/u/mailbox/"
	deliverOK(t, s, testMessage("P1"), Recipient{Address: "x@y.z", Maildir: md})
	name, body := onlyNew(t, md)
	if name == "" || len(body) == 0 {
		t.Errorf("new/ has %q with %d bytes", name, len(body))
	}
}

func writeFile(t *testing.T, p, s string) {
	t.Helper()
	if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
}

func mkdir(t *testing.T, p string) {
	t.Helper()
	if err := os.Mkdir(filepath.Clean(p), 0o700); err != nil {
		t.Fatal(err)
	}
}

func symlink(t *testing.T, target, link string) {
	t.Helper()
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
}
