package directory

import "errors"

var (
	// ErrNotFound: the directory answered and the key is unknown. Permanent.
	ErrNotFound = errors.New("directory: not found")
	// ErrUnavailable: the directory could not answer (down, timeout, TLS
	// failure, busy, bad reader credentials). Temporary: retry later.
	ErrUnavailable = errors.New("directory: unavailable")
	// ErrInvalidCredentials: a user bind was refused (LDAP result 49), or the
	// login or password is unacceptable (empty, NUL, unknown user).
	ErrInvalidCredentials = errors.New("directory: invalid credentials")
)
