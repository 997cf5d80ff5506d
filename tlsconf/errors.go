package tlsconf

import (
	"errors"
	"fmt"
)

// Kinds of start-up and reload failures, tested with errors.Is. Each is
// wrapped in a *FileError naming the file at fault.
var (
	// ErrMissing: the file does not exist (also matches fs.ErrNotExist).
	ErrMissing = errors.New("file missing")
	// ErrUnreadable: the file exists but cannot be read (permissions, a
	// directory, an I/O error).
	ErrUnreadable = errors.New("file unreadable")
	// ErrBadPEM: no usable PEM block, or a block that does not parse.
	ErrBadPEM = errors.New("bad PEM")
	// ErrKeyMismatch: the private key is not the key of the certificate.
	ErrKeyMismatch = errors.New("private key does not match certificate")
	// ErrExpired: the leaf certificate's NotAfter is in the past.
	ErrExpired = errors.New("certificate expired")
	// ErrNotYetValid: the leaf certificate's NotBefore is in the future.
	ErrNotYetValid = errors.New("certificate not yet valid")
)

// FileError says which file failed to load and why. Kind is one of the Err*
// variables above; Err, when set, is the underlying cause (an *fs.PathError,
// an x509 parse error...). errors.Is matches both.
type FileError struct {
	File string
	Kind error
	Err  error
}

func (e *FileError) Error() string {
	if e.Err == nil {
		return fmt.Sprintf("tls: %s: %v", e.File, e.Kind)
	}
	return fmt.Sprintf("tls: %s: %v: %v", e.File, e.Kind, e.Err)
}

// Unwrap returns both the kind and the cause so errors.Is(err, ErrMissing)
// and errors.Is(err, fs.ErrNotExist) both hold.
func (e *FileError) Unwrap() []error {
	if e.Err == nil {
		return []error{e.Kind}
	}
	return []error{e.Kind, e.Err}
}

// ErrWeakKey: an RSA key shorter than 2048 bits (RFC 9325 §4.3 asks for at
// least 2048; Go refuses to sign with fewer than 1024 at handshake time, so
// such a key would load and then fail every connection).
var ErrWeakKey = errors.New("RSA key shorter than 2048 bits")
