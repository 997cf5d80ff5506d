package imap

import (
	"slices"
	"strings"
	"time"

	"courriel/imap/mailstore"
)

// parseFlagList reads "(" [flag *(SP flag)] ")"; system flags are
// normalised in case, keywords kept as sent.
func (s *session) parseFlagList() ([]string, error) {
	var out []string
	err := s.r.List(true, func() error {
		f, err := s.parseFlag()
		out = append(out, f)
		return err
	})
	return out, err
}

func (s *session) parseFlag() (string, error) {
	if ok, err := s.r.Is('\\'); err != nil {
		return "", err
	} else if ok {
		if star, err := s.r.Is('*'); err != nil || star {
			return `\*`, err
		}
		a, err := s.r.Atom()
		if err != nil {
			return "", err
		}
		for _, sf := range []string{`\Seen`, `\Answered`, `\Flagged`, `\Deleted`, `\Draft`, `\Recent`} {
			if strings.EqualFold(`\`+a, sf) {
				return sf, nil
			}
		}
		return "", bad("", "Unknown system flag \\"+sanitize(a))
	}
	return s.r.Atom()
}

// storableFlags refuses what a client may name but never set: \Recent
// (RFC 3501 §2.3.2) and \* (PERMANENTFLAGS only); Dovecot answers BAD too.
func storableFlags(names []string) error {
	for _, n := range names {
		if n == `\Recent` || n == `\*` {
			return bad("", "Invalid system flag "+n)
		}
	}
	return nil
}

// maxKeywordLen is Dovecot's mail_max_keyword_length.
const maxKeywordLen = 50

// checkKeywords refuses a keyword longer than maxKeywordLen that mb does
// not have yet, in Dovecot's words (its lib-storage error, a NO [CANNOT]
// in IMAP): the command stores nothing. Such a keyword was answered OK
// and dropped. One that mb has (written by an older courriel, or another
// program) stays usable, as in Dovecot, which checks only new keywords.
func checkKeywords(flags []string, mb *mailstore.Mailbox) error {
	var defined []string
	for _, f := range flags {
		if strings.HasPrefix(f, `\`) || len(f) <= maxKeywordLen {
			continue
		}
		if defined == nil {
			defined, _ = mb.DefinedFlags()
		}
		if !slices.ContainsFunc(defined, func(d string) bool { return strings.EqualFold(d, f) }) {
			return no("CANNOT", "Keyword length too long")
		}
	}
	return nil
}

func toFlags(names []string) []string {
	out := make([]string, 0, len(names))
	for _, n := range names {
		if n == `\Recent` || n == `\*` {
			continue // RFC 9051 §2.3.2: \Recent cannot be stored
		}
		out = append(out, n)
	}
	return out
}

// parseDateTime reads RFC 9051 date-time: "dd-Mon-yyyy hh:mm:ss +zzzz".
func parseDateTime(v string) (time.Time, error) {
	t, err := time.Parse("2-Jan-2006 15:04:05 -0700", strings.TrimPrefix(v, " "))
	if err != nil {
		return time.Time{}, bad("", "Invalid date-time")
	}
	return t, nil
}

// parseDate reads a SEARCH date: "d-Mon-yyyy", quoted or not.
func parseDate(v string) (time.Time, error) {
	t, err := time.Parse("2-Jan-2006", v)
	if err != nil {
		return time.Time{}, bad("", "Invalid date")
	}
	return t, nil
}
