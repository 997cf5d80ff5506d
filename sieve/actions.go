// Taking actions: their conflicts, merged repeats, checked folders and redirect addresses.

package sieve

import (
	"errors"
	"fmt"
	"net/mail"
	"regexp"
	"strings"
	"unicode/utf8"
)

var spaceAroundAt = regexp.MustCompile(`[ \t]*@[ \t]*`)

// reject adds the Reject, which no other delivery may accompany.
func (r *runner) reject(reason string, extended bool) error {
	for _, b := range r.actions {
		switch b.Kind {
		case Reject:
			return errors.New("a second reject/ereject")
		case Store, Redirect:
			return errors.New("reject/ereject conflicts with an earlier keep, fileinto or redirect")
		case Vacation:
			// both would answer the sender
			return errors.New("reject/ereject conflicts with an earlier vacation")
		}
	}
	return r.add(Action{Kind: Reject, Reason: reason, Extended: extended})
}

func (r *runner) add(a Action) error {
	if a.Kind == Store || a.Kind == Redirect {
		for _, b := range r.actions {
			if b.Kind == Reject {
				return errors.New("keep, fileinto or redirect conflicts with an earlier reject/ereject")
			}
		}
	}
	if a.Kind == Discard {
		for _, b := range r.actions {
			if b.Kind == Discard {
				return nil
			}
		}
	}
	// The implicit keep is never refused: it is what keeps mail from being lost.
	if !a.Implicit && len(r.actions) >= r.s.limits.MaxActions {
		return fmt.Errorf("more than %d actions", r.s.limits.MaxActions)
	}
	r.actions = append(r.actions, a)
	return nil
}

func sameFolder(a, b string) bool {
	inbox := func(f string) bool { return f == "" || strings.EqualFold(f, "INBOX") }
	return a == b || (inbox(a) && inbox(b))
}

// store adds a Store, or merges it into the Store to the same folder taken
// earlier: its place stays, the later flags win, and, as in Pigeonhole, the
// repeat does not cancel the implicit keep (added false), and the copy is
// the message as it was at the first (its Edit: RFC 5293 lets the
// implementation pick which of the repeats is carried out; Pigeonhole
// carries out the first).
func (r *runner) store(a Action) (added bool, err error) {
	a.Flags = append([]string(nil), a.Flags...)
	a.Edit = r.snapshot()
	for i, b := range r.actions {
		if b.Kind == Store && sameFolder(a.Folder, b.Folder) {
			if a.Implicit {
				return false, nil
			}
			r.actions[i].Folder = a.Folder // Pigeonhole names it as the later one
			r.actions[i].Flags = a.Flags
			r.actions[i].Create = b.Create || a.Create
			r.actions[i].Copy = b.Copy && a.Copy
			r.actions[i].Keep = b.Keep || a.Keep
			return false, nil
		}
	}
	return true, r.add(a)
}

func (r *runner) redirect(addr string, cp bool) (added bool, err error) {
	for i, b := range r.actions {
		if b.Kind == Redirect && b.Address == addr {
			// the message as it was at the first, as a Store's
			r.actions[i].Copy = b.Copy && cp
			return false, nil
		}
	}
	if r.redirs >= r.s.limits.MaxRedirects {
		return false, fmt.Errorf("more than %d redirects", r.s.limits.MaxRedirects)
	}
	r.redirs++
	return true, r.add(Action{Kind: Redirect, Address: addr, Copy: cp, Edit: r.snapshot()})
}

// checkFolder refuses names no mailbox can have; "" is the INBOX (Inbox).
func checkFolder(f string) error {
	switch {
	case !utf8.ValidString(f):
		return errors.New("folder name is not UTF-8")
	case len(f) > 255:
		return errors.New("folder name longer than 255 bytes")
	}
	for _, c := range f {
		if c < ' ' || c == 0x7f {
			return errors.New("control character in folder name")
		}
	}
	return nil
}

// parseRedirectAddress accepts an address (RFC 5228 §4.2; Pigeonhole also
// takes a display name or angle brackets) and returns its addr-spec in
// SMTP's form, as Pigeonhole redirects to it: the local part quoted only
// where it must be ("\"john doe\"@example.org", "plain@example.org" for
// "\"plain\"@example.org"), the domain in lower case.
func parseRedirectAddress(s string) (string, error) {
	s = strings.TrimSpace(s)
	a, err := mail.ParseAddress(s)
	if err != nil {
		// Pigeonhole takes white space around the @ (RFC 5322's CFWS).
		a, err = mail.ParseAddress(spaceAroundAt.ReplaceAllString(s, "@"))
		if err != nil {
			return "", err
		}
	}
	for i := 0; i < len(a.Address); i++ {
		if a.Address[i] >= 0x80 {
			return "", errors.New("not an ASCII address")
		}
	}
	at := strings.LastIndexByte(a.Address, '@')
	if at <= 0 || at == len(a.Address)-1 {
		return "", errors.New("missing local part or domain")
	}
	return quoteLocalPart(a.Address[:at]) + "@" + strings.ToLower(a.Address[at+1:]), nil
}
