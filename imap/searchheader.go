// The address and header keys of SEARCH: FROM, TO, CC, BCC, SUBJECT, HEADER.

package imap

import (
	"bytes"
	"strings"

	"github.com/emersion/go-message/textproto"

	"courriel/imap/mailstore"
	"courriel/internal/envaddr"
)

// containsFold says whether sub is in s, both folded as appendFold folds.
func containsFold(s, sub string) bool {
	return bytes.Contains(appendFold(nil, s), appendFold(nil, sub))
}

// matchAddress matches the field's addresses written back in one
// canonical form, as Dovecot 2.3 does (message_address_write, then MIME
// words decoded): `name <local@domain>` or `<local@domain>`, a name or a
// local part that is not all atext quoted, groups as `group: a, b;`, the
// addresses joined by ", ". So `"x@y"@example.net` and `"Smith, Ann"`
// match what a client sees in the header, and `x@y@example.net` does not.
// An empty value asks whether the field exists.
func (m *searchMsg) matchAddress(field, value string) bool {
	env := m.envelope()
	if env == nil {
		return false
	}
	var l []mailstore.Address
	switch field {
	case "FROM":
		l = env.From
	case "TO":
		l = env.To
	case "CC":
		l = env.Cc
	case "BCC":
		l = env.Bcc
	}
	if len(l) == 0 {
		// No address parsed: the field may still be there (empty, or
		// beyond parsing); the header itself decides.
		return m.matchRawHeader(field, value)
	}
	if value == "" {
		return true
	}
	return containsFold(decodeWords(writeAddresses(l)), value)
}

// writeAddresses writes an envelope's address list the way Dovecot's
// message_address_write does, for SEARCH to match on.
func writeAddresses(l []mailstore.Address) string {
	var b strings.Builder
	inGroup := false
	for i, a := range l {
		if a.Host == "" {
			if !inGroup { // a group's start: its name is the mailbox
				if i > 0 {
					b.WriteString(", ")
				}
				writePhrase(&b, a.Mailbox, true)
				b.WriteString(":")
				inGroup = true
				continue
			}
			b.WriteString(";") // the group's end
			inGroup = false
			continue
		}
		switch {
		case i > 0 && l[i-1].Host == "" && inGroup:
			b.WriteString(" ") // the group's first member
		case i > 0:
			b.WriteString(", ")
		}
		adl, name := splitADL(a.Name)
		if name != "" {
			writePhrase(&b, name, true)
			b.WriteByte(' ')
		}
		b.WriteByte('<')
		if adl != "" {
			b.WriteString(adl)
			b.WriteByte(':')
		}
		writePhrase(&b, a.Mailbox, false)
		b.WriteByte('@')
		b.WriteString(a.Host)
		b.WriteByte('>')
	}
	return b.String()
}

// writePhrase writes s as is when it is all atext (dots allowed in a
// local part, not in a name), or holds encoded words (which a quoted
// string would hide from decoding); quoted otherwise.
func writePhrase(b *strings.Builder, s string, name bool) {
	plain := s != "" || !name
	if name && strings.Contains(s, "=?") {
		b.WriteString(s)
		return
	}
	for i := 0; i < len(s) && plain; i++ {
		c := s[i]
		plain = c >= 0x80 || envaddr.IsAtext(c) || c == '.' && !name
	}
	if plain {
		b.WriteString(s)
		return
	}
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		if s[i] == '"' || s[i] == '\\' {
			b.WriteByte('\\')
		}
		b.WriteByte(s[i])
	}
	b.WriteByte('"')
}

// matchHeader is a case-insensitive substring match on the decoded field
// (RFC 9051 §6.4.4); an empty value matches every message having the
// field. Address fields and a plain Subject are answered from the cached
// envelope, so SEARCH FROM does not reopen every file.
func (m *searchMsg) matchHeader(key, value string) bool {
	switch strings.ToUpper(key) {
	case "FROM", "TO", "CC", "BCC":
		return m.matchAddress(strings.ToUpper(key), value)
	case "SUBJECT":
		if env := m.envelope(); env != nil && env.Subject != "" && !strings.Contains(env.Subject, "=?") {
			return value == "" || containsFold(env.Subject, value)
		}
	}
	return m.matchRawHeader(key, value)
}

// matchHeader is a case-insensitive substring match on the decoded field
// (RFC 9051 §6.4.4); an empty value matches every message having the
// field.
func (m *searchMsg) matchRawHeader(key, value string) bool {
	h := m.loadHeader()
	if h == nil {
		return false
	}
	fields := h.FieldsByKey(key)
	if value == "" {
		return fields.Len() > 0
	}
	for fields.Next() {
		if containsFold(decodeWords(fields.Value()), value) || containsFold(fields.Value(), value) {
			return true
		}
	}
	return false
}

func (m *searchMsg) loadHeader() *textproto.Header {
	if m.header == nil && !m.failed {
		h, err := m.s.readHeader(m.uid)
		if err != nil {
			m.failed = true
			return nil
		}
		m.header = &h
	}
	return m.header
}
