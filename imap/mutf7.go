package imap

import (
	"errors"

	"courriel/imap/mailstore"
)

// Modified UTF-7 (RFC 3501 §5.1.3): the mailbox-name form of clients that
// have not enabled UTF8=ACCEPT or IMAP4rev2. The coding itself is
// mailstore's, which names folder directories the same way.

var errBadMUTF7 = errors.New("mailbox name is not valid modified UTF-7")

// decodeMUTF7 decodes a mailbox name sent by a client. Only the canonical
// form is taken: printable ASCII, "&" as "&-", each run of other
// characters as one base64 run with zero padding bits. Anything else
// (8-bit bytes, two adjacent runs, ASCII encoded) would be stored under
// the name it decodes to, and the client that created X would list Y;
// Dovecot refuses the same names (it takes non-zero padding bits, which
// are refused here for the same reason).
func decodeMUTF7(s string) (string, error) {
	plain := true
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '&' {
			plain = false
			break
		}
	}
	if plain {
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
