package mailstore

import "fmt"

// locateLocked finds the files of messages that are not where the folder
// thinks: another program (Dovecot, mutt) changed their flags, which renames
// the file (the base name stays, the part after ":2," changes), or moved it
// from new/ to cur/. One listing of cur/ and new/ serves all of them. The
// messages found get their flags from the file name (logged as
// FlagsChanged for the sessions); the result says which bases were found,
// the others are gone.
func (mb *Mailbox) locateLocked(bases map[string]bool) (map[string]bool, error) {
	found := make(map[string]bool, len(bases))
	for _, sub := range []string{"new", "cur"} {
		f, err := mb.root.Open(sub)
		if err != nil {
			return nil, fmt.Errorf("mailstore: open %s: %w", sub, err)
		}
		names, err := f.Readdirnames(-1)
		f.Close()
		mb.listings++
		if err != nil {
			return nil, fmt.Errorf("mailstore: read %s: %w", sub, err)
		}
		for _, n := range names {
			base, fl := SplitName(n)
			if !bases[base] {
				continue
			}
			m := mb.baseMapLocked()[base]
			if m == nil {
				continue
			}
			found[base] = true
			mb.noteOddLocked(base, oddName(sub, n, base, fl))
			if sub == "new" {
				m.New = true
				continue
			}
			mb.noteBareLocked(base, n == base) // no info part: see bare
			m.New = false
			if mb.fileFlagsLocked(m, fl) {
				mb.appendChangeLocked(Change{Kind: FlagsChanged, UID: m.UID})
			}
		}
	}
	return found, nil
}
