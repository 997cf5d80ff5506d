package move

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io/fs"
	"path"
	"strings"
)

// NewMoveID draws the id that ties a pre-copy to its deltas on the
// receiving node.
func NewMoveID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// validToken accepts a move id as NewMoveID draws them: 32 lowercase hex
// digits.
func validToken(s string) bool {
	return len(s) == 32 && validHex(s)
}

// Changed counts what a delta sends besides whole files: messages renamed
// (flags) and entries removed (or sent again).
func (a *Archive) Changed() (renamed, removed int) { return a.renamed, a.removed }

// Changes scans the home again and returns the changes since a (a
// pre-copy, or a delta after one) was sent, for the same move id: final,
// the user is held (the scan is strict, as Scan's) and the receiving node
// puts its staging directory in place after applying them; not final, the
// user still works (as PreCopy's) and the staging directory is kept.
//
// Message files (in cur/ and new/: never rewritten, by maildir's rules)
// present on both sides with the same name, size and mtime are not sent;
// one renamed in its folder (same base name before ":", size and mtime:
// its flags changed) is renamed on the receiving side; every other file
// and the Sieve link (dovecot-uidlist, dovecot-keywords, subscriptions,
// maildirsize, courriel-index, courriel-modseq, ~/sieve/, …) is removed
// there and sent again whole, as is any file sent stale.
func (a *Archive) Changes(final bool, lim Limits) (*Archive, error) {
	if a.kind == kindFull || a.token == "" {
		return nil, errors.New("move: changes are taken after a pre-copy only")
	}
	next, err := scan(a.login, a.home, lim, !final)
	if err != nil {
		return nil, err
	}
	d := delta(a.state, next.entries)
	d.login, d.home, d.token, d.live, d.state = a.login, a.home, a.token, !final, next.entries
	d.kind = kindDelta
	if final {
		d.kind = kindFinal
	}
	return d, nil
}

// delta computes the archive that turns old (what the receiving side
// holds) into cur: its ops, and the entries to send.
func delta(old, cur []*entry) *Archive {
	d := &Archive{}
	was := make(map[string]*entry, len(old))
	for _, e := range old {
		was[e.rel] = e
	}
	is := make(map[string]*entry, len(cur))
	for _, e := range cur {
		is[e.rel] = e
	}
	kept := func(o, n *entry) bool {
		switch {
		case o.mode != n.mode || o.stale:
			return false
		case o.mode == fs.ModeDir:
			return true
		case o.mode == 0:
			return isMessage(o.rel) && o.size == n.size && o.mtime.Equal(n.mtime)
		}
		return false // the Sieve link: sent again
	}
	var gone []*entry
	for _, o := range old {
		if n := is[o.rel]; n == nil || !kept(o, n) {
			gone = append(gone, o)
		}
	}
	var added []*entry
	for _, n := range cur {
		if o := was[n.rel]; o == nil || !kept(o, n) {
			added = append(added, n)
		}
	}

	// A message whose flags changed: one file gone and one new in the
	// same folder with the same base name, size and mtime, into a
	// directory both sides have.
	type pair struct{ from, to []*entry }
	pairs := map[string]*pair{}
	at := func(k string) *pair {
		if pairs[k] == nil {
			pairs[k] = &pair{}
		}
		return pairs[k]
	}
	for _, o := range gone {
		if o.mode == 0 && !o.stale && isMessage(o.rel) && is[o.rel] == nil {
			p := at(messageKey(o.rel))
			p.from = append(p.from, o)
		}
	}
	for _, n := range added {
		if n.mode == 0 && isMessage(n.rel) && was[n.rel] == nil {
			p := at(messageKey(n.rel))
			p.to = append(p.to, n)
		}
	}
	renamed := map[*entry]bool{}
	var ops strings.Builder
	for _, o := range gone { // in the old order: deterministic
		if o.mode != 0 || is[o.rel] != nil || !isMessage(o.rel) {
			continue
		}
		p := pairs[messageKey(o.rel)]
		if p == nil || len(p.from) != 1 || len(p.to) != 1 {
			continue
		}
		n := p.to[0]
		od, nd := was[path.Dir(n.rel)], is[path.Dir(n.rel)]
		if n.size != o.size || !n.mtime.Equal(o.mtime) || od == nil || nd == nil || od.mode != fs.ModeDir || nd.mode != fs.ModeDir {
			continue
		}
		renamed[o], renamed[n] = true, true
		ops.WriteString("R\t" + o.rel + "\t" + n.rel + "\n")
		d.renamed++
	}
	// Removals after the renames (a rename's source may sit in a
	// directory that goes); a directory's removal takes its tree.
	removedDir := map[string]bool{}
	for _, o := range gone {
		if renamed[o] || underRemoved(o.rel, removedDir) {
			continue
		}
		if o.mode == fs.ModeDir {
			removedDir[o.rel] = true
		}
		ops.WriteString("D\t" + o.rel + "\n")
		d.removed++
	}
	for _, n := range added {
		if renamed[n] {
			continue
		}
		d.entries = append(d.entries, n)
		if n.mode == 0 {
			d.files++
			d.bytes += n.size
		}
	}
	d.ops = []byte(ops.String())
	return d
}

func underRemoved(rel string, dirs map[string]bool) bool {
	for p := path.Dir(rel); p != "."; p = path.Dir(p) {
		if dirs[p] {
			return true
		}
	}
	return false
}

// isMessage: a file in a maildir's cur/ or new/.
func isMessage(rel string) bool {
	d := path.Base(path.Dir(rel))
	return (d == "cur" || d == "new") && path.Dir(rel) != "."
}

// messageKey names a message across its renames: its folder and its base
// name (the maildir unique name, before ":2," and its flags).
func messageKey(rel string) string {
	base, _, _ := strings.Cut(path.Base(rel), ":")
	return path.Dir(path.Dir(rel)) + "\x00" + base
}
