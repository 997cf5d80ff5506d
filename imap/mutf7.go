package imap

import (
	"errors"
	"strings"
	"unicode/utf8"

	"courriel/imap/mailstore"
)

// Modified UTF-7 (RFC 3501 §5.1.3): the mailbox-name form of clients that
// have not enabled UTF8=ACCEPT or IMAP4rev2. The coding itself is
// mailstore's, which names folder directories the same way.

var errBadMUTF7 = errors.New("mailbox name is not valid modified UTF-7")

// decodeMUTF7 decodes a mailbox name sent by a client. Only the canonical
// form is taken: printable ASCII, "&" as "&-", each run of other
// characters as one base64 run with zero padding bits. Anything else (two
// adjacent runs, ASCII encoded, non-zero padding bits) would be stored
// under the name it decodes to, and the client that created X would list
// Y; Dovecot refuses them too (padding bits aside). A name of valid UTF-8
// without "&" is taken as UTF-8, which Dovecot 2.3 refuses: go-imap's
// client, told IMAP4rev2, sends UTF-8 names without ENABLE, and LIST
// gives such a name back in the form that decodes to what it wrote.
func decodeMUTF7(s string) (string, error) {
	plain, eightBit := true, false
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c >= 0x80:
			eightBit = true
		case c < 0x20 || c == 0x7f || c == '&':
			plain = false
		}
	}
	if plain && !eightBit {
		return s, nil
	}
	if plain {
		if !utf8.ValidString(s) || strings.ContainsFunc(s, func(r rune) bool { return r >= 0x80 && r < 0xa0 || r == 0xfeff }) {
			return "", errBadMUTF7
		}
		return s, nil
	}
	d, err := mailstore.DecodeMUTF7(s)
	if err != nil || mailstore.EncodeMUTF7(d) != s {
		return "", errBadMUTF7
	}
	return d, nil
}

// encodeMUTF7 encodes a UTF-8 mailbox name for a client.
func encodeMUTF7(s string) string { return mailstore.EncodeMUTF7(s) }
