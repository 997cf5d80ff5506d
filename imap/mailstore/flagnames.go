package mailstore

import (
	"bytes"
	"errors"
	"strings"

	"courriel/imap/uidlist"
)

// errKeywordsChanged: another program gave a slot of dovecot-keywords we
// were about to fill another name.
var errKeywordsChanged = errors.New("mailstore: keyword table changed concurrently")

// ErrTooManyKeywords: a STORE would give the folder more than
// MaxExtraKeywords keywords beyond the 26 maildir letters.
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

// HasKeywords reports whether f has a keyword, whose name is the folder's
// (FlagNamesOf).
func (f Flags) HasKeywords() bool { return f&(keywordMask|flagExtra) != 0 }

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
// as `\Seen`, then the folder's keywords as they were first written). It
// names the lettered keywords only: FlagNamesOf names a message's keywords
// beyond the letters too.
func (mb *Mailbox) FlagNames(f Flags) []string {
	mb.mu.Lock()
	defer mb.mu.Unlock()
	return mb.flagNamesLocked(f)
}

// FlagNamesOf is FlagNames of the flags f of message uid, as FlagsOf or a
// STORE gave them, with its keywords beyond the 26 letters (see
// ExtraKeywordsFileName) when f says it has some: those it has now.
func (mb *Mailbox) FlagNamesOf(uid uint32, f Flags) []string {
	mb.mu.Lock()
	defer mb.mu.Unlock()
	out := mb.flagNamesLocked(f)
	if f&flagExtra != 0 {
		if m := mb.findLocked(uid); m != nil {
			out = mb.appendExtraLocked(out, m.Base)
		}
	}
	return out
}

// appendExtraLocked appends the keywords beyond the letters of the message
// of base name base to names, but those names has.
func (mb *Mailbox) appendExtraLocked(names []string, base string) []string {
	for _, n := range mb.extraOfLocked(base) {
		if !containsFold(names, n) {
			names = append(names, n)
		}
	}
	return names
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

// DefinedFlags lists the flags for the FLAGS response and PERMANENTFLAGS:
// the system flags, the lettered keywords, those beyond the letters that a
// message has. PERMANENTFLAGS adds \* while a new keyword can be created:
// a free letter, or room beyond them (MaxExtraKeywords).
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
	for _, k := range mb.extraOrder {
		if !containsFold(flags, k) {
			flags = append(flags, k)
		}
	}
	permanent = append(permanent, flags...)
	if free || len(mb.extraNames) < MaxExtraKeywords {
		permanent = append(permanent, Wildcard)
	}
	return flags, permanent
}

// flagBitsLocked maps IMAP flags to bits, creating keywords (and rewriting
// dovecot-keywords) when create is set. \Recent and unknown system flags are
// ignored (RFC 9051 §2.3.2: \Recent cannot be stored). The keywords that
// have no letter (create: the table is full; else: the table does not have
// them) are returned in extra, to be kept beyond the letters (see
// ExtraKeywordsFileName): a full table never fails a command. A table
// another program changed meanwhile leaves the new keywords beyond the
// letters too; a table that cannot be written (a full disk) is an error,
// no keyword added: the command fails, rather than lose a keyword.
func (mb *Mailbox) flagBitsLocked(flags []string, create bool) (f Flags, extra []string, err error) {
	var added bool
	var seen map[string]bool // extra's, lower-case
	before := mb.keywords    // a refused STORE must leave no keyword behind
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
			added = added || isNew
		}
		if idx >= 0 {
			f |= KeywordFlag(idx)
		} else if k := strings.ToLower(s); !seen[k] {
			if seen == nil {
				seen = make(map[string]bool)
			}
			seen[k] = true
			extra = append(extra, s)
		}
	}
	if added {
		if err := mb.writeKeywordsLocked(); err != nil {
			mb.keywords = before
			if errors.Is(err, errKeywordsChanged) {
				f, extra, _ = mb.flagBitsLocked(flags, false)
				return f, extra, nil
			}
			return 0, nil, err
		}
	}
	return f, extra, nil
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
					return errKeywordsChanged
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
