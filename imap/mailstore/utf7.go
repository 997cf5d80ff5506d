package mailstore

import "courriel/internal/mutf7"

// Modified UTF-7 (RFC 3501 §5.1.3) is how Dovecot names maildir folder
// directories by default, so courriel uses it on disk too. The codec is in
// internal/mutf7, shared with Sieve delivery's folder names.

// EncodeMUTF7 encodes a UTF-8 name in modified UTF-7: the folder
// directory's name on disk, and the mailbox name IMAP clients without
// UTF8=ACCEPT are sent.
func EncodeMUTF7(s string) string { return mutf7.Encode(s) }

// DecodeMUTF7 decodes modified UTF-7; printable ASCII sent encoded,
// unpaired surrogates and bytes outside printable ASCII are errors.
func DecodeMUTF7(s string) (string, error) { return mutf7.Decode(s) }
