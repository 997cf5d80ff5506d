// Package xtext is RFC 3461 §4's xtext, the encoding of DSN parameter
// values (ORCPT, ENVID) on the SMTP wire and in files that carry them: the
// one encoder and strict decoder of smtp, the queue, the maildrop and
// sendmail.
package xtext

import (
	"errors"
	"strings"
)

// ErrInvalid: a value that is not xtext.
var ErrInvalid = errors.New("invalid xtext")

const hexDigits = "0123456789ABCDEF"

// Encode writes '+', '=' and every octet outside '!'..'~' as "+HH".
func Encode(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '!' || c > '~' || c == '+' || c == '=' {
			b.WriteByte('+')
			b.WriteByte(hexDigits[c>>4])
			b.WriteByte(hexDigits[c&15])
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

// Decode decodes strictly: every character is an xchar ('!' to '~' but
// '+' and '=') or "+" and two upper-case hex digits ("+2B" is '+').
func Decode(s string) (string, error) {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '+':
			if i+2 >= len(s) {
				return "", ErrInvalid
			}
			hi, ok1 := unhex(s[i+1])
			lo, ok2 := unhex(s[i+2])
			if !ok1 || !ok2 {
				return "", ErrInvalid
			}
			b.WriteByte(hi<<4 | lo)
			i += 2
		case c < '!' || c > '~' || c == '=':
			return "", ErrInvalid
		default:
			b.WriteByte(c)
		}
	}
	return b.String(), nil
}

func unhex(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}
