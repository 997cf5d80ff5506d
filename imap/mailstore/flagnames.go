package mailstore

import (
	"bytes"
	"errors"
	"strings"

	"courriel/imap/uidlist"
)

// ErrTooManyKeywords: maildir file names hold at most 26 keywords per folder.
var ErrTooManyKeywords = errors.New("mailstore: too many keywords in this folder")

// The IMAP system flags a maildir stores, by name (RFC 9051 §2.3.2).
const (
	Answered = `\Answered`
	Flagged  = `\Flagged`
	Deleted  = `\Deleted`
	Seen     = `\Seen`
	Draft    = `\Draft`
	// Wildcard in PERMANENTFLAGS says new keywords may be created.
	Wildcard = `\*`
)

var systemFlags = []struct {
	bit  Flags
	flag string
}{
	{FlagAnswered, Answered},
	{FlagFlagged, Flagged},
	{FlagDeleted, Deleted},
	{FlagSeen, Seen},
	{FlagDraft, Draft},
}

// HasKeywords reports whether f has a keyword, whose name is the folder's.
func (f Flags) HasKeywords() bool { return f&keywordMask != 0 }

// SystemNames is FlagNames of flags without keywords, into the caller's
// array: no allocation and no lock for each of the 100,000 FETCH lines of
// a STORE or FETCH FLAGS over a large folder.
func (f Flags) SystemNames(buf *[5]string) []string {
	out := buf[:0]
	for _, sf := range systemFlags {
		if f&sf.bit != 0 {
			out = append(out, sf.flag)
		}
	}
	return out
}

// SystemMask covers the bits IMAP clients may change.
const systemMask = FlagAnswered | FlagFlagged | FlagDeleted | FlagSeen | FlagDraft

// FlagNames converts maildir flags to IMAP flag names (system flags first,
// as `\Seen`, then the folder's keywords as they were first written).
func (mb *Mailbox) FlagNames(f Flags) []string {
	mb.mu.Lock()
	defer mb.mu.Unlock()
	return mb.flagNamesLocked(f)
}

func (mb *Mailbox) flagNamesLocked(f Flags) []string {
	out := make([]string, 0, 4)
	for _, sf := range systemFlags {
		if f&sf.bit != 0 {
			out = append(out, sf.flag)
		}
	}
	for i := 0; i < uidlist.MaxKeywords; i++ {
		if f&KeywordFlag(i) != 0 && mb.keywords[i] != "" {
			out = append(out, mb.keywords[i])
		}
	}
	return out
}

// DefinedFlags lists the flags for the FLAGS response and PERMANENTFLAGS
// (the latter adds \* while keyword slots remain).
func (mb *Mailbox) DefinedFlags() (flags, permanent []string) {
	mb.mu.Lock()
	defer mb.mu.Unlock()
	for _, sf := range systemFlags {
		flags = append(flags, sf.flag)
	}
	free := false
	for _, k := range mb.keywords {
		if k != "" {
			flags = append(flags, k)
		} else {
			free = true
		}
	}
	permanent = append(permanent, flags...)
	if free {
		permanent = append(permanent, Wildcard)
	}
	return flags, permanent
}

// flagBitsLocked maps IMAP flags to bits, creating keywords (and rewriting
// dovecot-keywords) when create is set. \Recent and unknown system flags are
// ignored (RFC 9051 §2.3.2: \Recent cannot be stored).
func (mb *Mailbox) flagBitsLocked(flags []string, create bool) (Flags, error) {
	var f Flags
	var added bool
	before := mb.keywords // a refused STORE must leave no keyword behind
	for _, fl := range flags {
		s := fl
		if strings.HasPrefix(s, `\`) {
			for _, sf := range systemFlags {
				if strings.EqualFold(s, sf.flag) {
					f |= sf.bit
				}
			}
			continue
		}
		if !uidlist.ValidKeyword(s) {
			continue
		}
		idx := mb.keywords.Index(s)
		if idx < 0 && create {
			var isNew bool
			idx, isNew = mb.keywords.Add(s)
			if idx < 0 {
				mb.keywords = before
				return 0, ErrTooManyKeywords
			}
			added = added || isNew
		}
		if idx >= 0 {
			f |= KeywordFlag(idx)
		}
	}
	if added {
		if err := mb.writeKeywordsLocked(); err != nil {
			mb.keywords = before
			return 0, err
		}
	}
	return f, nil
}

func (mb *Mailbox) writeKeywordsLocked() error {
	lk, err := mb.lockLocked(uidlist.KeywordsFileName)
	if err != nil {
		return err
	}
	defer lk.Release()
	// Another process may have added keywords meanwhile: keep theirs.
	if data, err := mb.root.ReadFile(uidlist.KeywordsFileName); err == nil {
		disk, _ := uidlist.ParseKeywords(bytes.NewReader(data))
		for i, k := range disk {
			if k != "" && mb.keywords[i] != k {
				if mb.keywords[i] != "" {
					return errors.New("mailstore: keyword table changed concurrently")
				}
				mb.keywords[i] = k
			}
		}
	}
	if err := lk.Commit(mb.keywords.Marshal()); err != nil {
		return err
	}
	mb.kwStamp = mb.statLocked(uidlist.KeywordsFileName)
	return nil
}
