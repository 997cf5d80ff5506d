package move

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// openParent opens the directory holding home (absolute and clean, from
// the directory) and returns it with home's last component. With base
// (delivery's AllowedBase) set, home must be strictly under it and no
// component between the base and the parent may be a symlink, as delivery
// requires of maildirs; the base itself may be reached through links.
func openParent(base, home string) (*os.Root, string, error) {
	if !filepath.IsAbs(home) || filepath.Clean(home) != home || home == "/" {
		return nil, "", fmt.Errorf("home %q is not an absolute clean path", home)
	}
	parent, name := filepath.Split(home)
	parent = filepath.Clean(parent)
	if base == "" {
		r, err := os.OpenRoot(parent)
		if err != nil {
			return nil, "", fmt.Errorf("open the parent of the home: %w", err)
		}
		return r, name, nil
	}
	base = filepath.Clean(base)
	rel, ok := strings.CutPrefix(parent, base)
	if !ok || (rel != "" && rel[0] != '/' && base != "/") {
		return nil, "", fmt.Errorf("home %s is outside the maildir base %s", home, base)
	}
	rel = strings.TrimPrefix(rel, "/")
	br, err := os.OpenRoot(base)
	if err != nil {
		return nil, "", fmt.Errorf("open the maildir base: %w", err)
	}
	defer br.Close()
	if rel == "" {
		r, err := br.OpenRoot(".")
		return r, name, err
	}
	comps := strings.Split(rel, "/")
	for i := range comps {
		fi, err := br.Lstat(strings.Join(comps[:i+1], "/"))
		if err != nil {
			return nil, "", fmt.Errorf("the parent of the home: %w", err)
		}
		if !fi.IsDir() {
			return nil, "", fmt.Errorf("the parent of the home: %s is not a directory (a symlink?)", strings.Join(comps[:i+1], "/"))
		}
	}
	r, err := br.OpenRoot(rel)
	if err != nil {
		return nil, "", fmt.Errorf("open the parent of the home: %w", err)
	}
	return r, name, nil
}

// stamp names a kept copy of a home: UTC, to the second, sortable.
func stamp(t time.Time) string { return t.UTC().Format("20060102T150405Z") }

// setAside renames name in parent to name.<what>-<stamp> (a free name) and
// returns the new name.
func setAside(parent *os.Root, name, what string, now time.Time) (string, error) {
	aside := name + "." + what + "-" + stamp(now)
	for i := 0; ; i++ {
		cand := aside
		if i > 0 {
			cand = fmt.Sprintf("%s.%d", aside, i)
		}
		if _, err := parent.Lstat(cand); err == nil {
			if i >= 100 {
				return "", fmt.Errorf("no free name beside %s", name)
			}
			continue
		} else if !errors.Is(err, os.ErrNotExist) {
			return "", err
		}
		if err := parent.Rename(name, cand); err != nil {
			return "", err
		}
		return cand, nil
	}
}

func randomSuffix() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
