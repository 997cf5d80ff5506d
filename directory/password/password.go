package password

import (
	"crypto/rand"
	"crypto/sha1" //nolint:gosec // {SSHA}/{SHA} are SHA-1 by definition (RFC 2307, slappasswd).
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"hash"
	"strings"
)

// Scheme is an RFC 2307 userPassword scheme tag, braces included, in
// canonical upper case, e.g. "{SSHA}".
type Scheme string

// Schemes Hash can produce.
const (
	SSHA    Scheme = "{SSHA}"    // salted SHA-1, what slappasswd writes by default
	SSHA256 Scheme = "{SSHA256}" // salted SHA-256; slapd needs the pw-sha2 module
	SSHA512 Scheme = "{SSHA512}" // salted SHA-512; slapd needs the pw-sha2 module
)

// Schemes Verify accepts in addition (unsalted, never produced).
const (
	SHA    Scheme = "{SHA}"
	SHA256 Scheme = "{SHA256}"
	SHA512 Scheme = "{SHA512}"
)

// DefaultScheme is what Hash uses for the zero Scheme.
const DefaultScheme = SSHA

// saltLen is the salt Hash generates. slappasswd uses 4 bytes; 8 costs
// nothing and makes precomputation harder. Verify accepts any length.
const saltLen = 8

// maxStoredLen bounds a stored value Verify will decode. The longest real
// value ({SSHA512} with a generous salt) is far below it.
const maxStoredLen = 4096

var (
	// ErrUnknownScheme: the stored value's {SCHEME} is not supported.
	ErrUnknownScheme = errors.New("password: unknown scheme")
	// ErrMalformed: the stored value has a known scheme but cannot be decoded.
	ErrMalformed = errors.New("password: malformed stored value")
	// ErrEmptyPassword: Hash refuses an empty password.
	ErrEmptyPassword = errors.New("password: empty password")
)

type schemeInfo struct {
	newHash func() hash.Hash
	size    int
	salted  bool
}

// schemeFor describes the schemes Hash and Verify know.
func schemeFor(s Scheme) (schemeInfo, bool) {
	switch s {
	case SSHA:
		return schemeInfo{sha1.New, sha1.Size, true}, true
	case SSHA256:
		return schemeInfo{sha256.New, sha256.Size, true}, true
	case SSHA512:
		return schemeInfo{sha512.New, sha512.Size, true}, true
	case SHA:
		return schemeInfo{sha1.New, sha1.Size, false}, true
	case SHA256:
		return schemeInfo{sha256.New, sha256.Size, false}, true
	case SHA512:
		return schemeInfo{sha512.New, sha512.Size, false}, true
	}
	return schemeInfo{}, false
}

// ParseScheme turns a user-supplied scheme name ("ssha", "{SSHA512}") into a
// Scheme Hash accepts.
func ParseScheme(name string) (Scheme, error) {
	n := strings.ToUpper(strings.TrimSpace(name))
	if !strings.HasPrefix(n, "{") {
		n = "{" + n + "}"
	}
	s := Scheme(n)
	if info, ok := schemeFor(s); ok && info.salted {
		return s, nil
	}
	return "", fmt.Errorf("%w: %q (want {SSHA}, {SSHA256} or {SSHA512})", ErrUnknownScheme, name)
}

// Hash returns a userPassword value for password in scheme (DefaultScheme
// when scheme is empty). Only salted schemes are produced.
func Hash(scheme Scheme, password []byte) (string, error) {
	if len(password) == 0 {
		return "", ErrEmptyPassword
	}
	if scheme == "" {
		scheme = DefaultScheme
	}
	info, ok := schemeFor(Scheme(strings.ToUpper(string(scheme))))
	if !ok || !info.salted {
		return "", fmt.Errorf("%w: cannot hash with %q", ErrUnknownScheme, scheme)
	}
	salt := make([]byte, saltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("password: reading salt: %w", err)
	}
	h := info.newHash()
	h.Write(password)
	h.Write(salt)
	sum := h.Sum(nil)
	return strings.ToUpper(string(scheme)) + base64.StdEncoding.EncodeToString(append(sum, salt...)), nil
}

// Verify reports whether password matches the stored userPassword value.
// A wrong password is (false, nil); an unsupported scheme or an undecodable
// value is (false, error). An empty password never matches: RFC 4513 §5.1.2
// makes an empty-password bind an unauthenticated one, never a login.
func Verify(stored string, password []byte) (bool, error) {
	if len(stored) > maxStoredLen {
		return false, fmt.Errorf("%w: %d bytes", ErrMalformed, len(stored))
	}
	scheme, rest, tagged := splitScheme(stored)
	if !tagged {
		if len(password) == 0 || stored == "" {
			return false, nil
		}
		// Compare digests so the comparison's time does not depend on
		// where the values differ nor on their lengths.
		a, b := sha256.Sum256([]byte(stored)), sha256.Sum256(password)
		return subtle.ConstantTimeCompare(a[:], b[:]) == 1, nil
	}
	info, ok := schemeFor(scheme)
	if !ok {
		return false, fmt.Errorf("%w: %s", ErrUnknownScheme, sanitizeTag(scheme))
	}
	raw, err := decodeBase64(rest)
	if err != nil {
		return false, fmt.Errorf("%w: %s: %v", ErrMalformed, scheme, err)
	}
	switch {
	case info.salted && len(raw) < info.size:
		return false, fmt.Errorf("%w: %s: %d bytes, want at least %d", ErrMalformed, scheme, len(raw), info.size)
	case !info.salted && len(raw) != info.size:
		return false, fmt.Errorf("%w: %s: %d bytes, want %d", ErrMalformed, scheme, len(raw), info.size)
	}
	if len(password) == 0 {
		return false, nil
	}
	digest, salt := raw[:info.size], raw[info.size:]
	h := info.newHash()
	h.Write(password)
	h.Write(salt)
	return subtle.ConstantTimeCompare(h.Sum(nil), digest) == 1, nil
}

// splitScheme splits "{ssha}xyz" into ("{SSHA}", "xyz", true). A value that
// does not start with a well-formed tag is plain text, as in OpenLDAP.
func splitScheme(stored string) (Scheme, string, bool) {
	if !strings.HasPrefix(stored, "{") {
		return "", stored, false
	}
	end := strings.IndexByte(stored, '}')
	if end < 0 {
		return "", stored, false
	}
	return Scheme(strings.ToUpper(stored[:end+1])), stored[end+1:], true
}

// sanitizeTag keeps error messages printable: the tag comes from the
// directory and may hold anything.
func sanitizeTag(s Scheme) string {
	const maxTag = 32
	t := string(s)
	if len(t) > maxTag {
		t = t[:maxTag] + "..."
	}
	return fmt.Sprintf("%q", t)
}

func decodeBase64(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	if b, err := base64.StdEncoding.DecodeString(s); err == nil {
		return b, nil
	}
	return base64.RawStdEncoding.DecodeString(s)
}
