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

// decodeMUTF7 decodes a mailbox name sent by a client.
func decodeMUTF7(s string) (string, error) {
	if !strings.Contains(s, "&") {
		for i := 0; i < len(s); i++ {
			if s[i] >= 0x80 {
				if utf8.ValidString(s) {
					return s, nil // 8-bit names: taken as UTF-8, as Dovecot does
				}
				return "", errBadMUTF7
			}
		}
		return s, nil
	}
	d, err := mailstore.DecodeMUTF7(s)
	if err != nil {
		return "", errBadMUTF7
	}
	return d, nil
}

// encodeMUTF7 encodes a UTF-8 mailbox name for a client.
func encodeMUTF7(s string) string { return mailstore.EncodeMUTF7(s) }
