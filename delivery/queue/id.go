package queue

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"strings"
	"time"
)

// idLen is the length of a queue id: 8 bytes of nanosecond time (so ids sort
// by arrival) and 8 random bytes, in upper-case hex.
const idLen = 32

// newID returns a fresh queue id. Uniqueness rests on the 64 random bits.
func newID(now time.Time) string {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], uint64(now.UnixNano()))
	rand.Read(b[8:]) // never fails (crypto/rand, Go ≥ 1.24)
	return strings.ToUpper(hex.EncodeToString(b[:]))
}

// ParseID checks an id given by a person or found as a file name: exactly
// idLen hex digits, so no path separator, dot, NUL or other trick can reach a
// file system call. Lower case is accepted and upper-cased.
func ParseID(s string) (string, error) {
	if len(s) != idLen {
		return "", ErrInvalidID
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'A' && c <= 'F' || c >= 'a' && c <= 'f') {
			return "", ErrInvalidID
		}
	}
	return strings.ToUpper(s), nil
}
