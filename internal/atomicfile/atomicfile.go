// Package atomicfile replaces a small file as a whole: a reader sees the
// old content or the new, never half of it, and after Write returns the
// new one survives a crash.
package atomicfile

import (
	"os"
	"path/filepath"
)

// Write replaces path by data with mode perm: a temporary file beside it,
// written, fsynced and renamed over path, then the directory fsynced. A
// symbolic link at path is replaced, never followed.
func Write(path string, data []byte, perm os.FileMode) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	done := false
	defer func() {
		if !done {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if err := f.Chmod(perm); err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	done = true
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// SyncDir fsyncs the directory name of r ("." for r itself): what makes
// a rename or a creation in it survive a crash.
func SyncDir(r *os.Root, name string) error {
	f, err := r.Open(name)
	if err != nil {
		return err
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
