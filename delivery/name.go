package delivery

import (
	"crypto/rand"
	"encoding/hex"
	"strconv"
	"strings"
	"time"
)

// escapeHostname makes a host name safe for a maildir file name. The maildir
// spec (cr.yp.to/proto/maildir.html) escapes "/" as \057 and ":" as \072;
// we also escape "," as \054 because Dovecot's ",S=" and ",W=" fields follow
// the host name, and "\" itself as \134 so the escaping is reversible.
// Control bytes and spaces are escaped the same way (octal).
func escapeHostname(h string) string {
	var b strings.Builder
	for i := 0; i < len(h); i++ {
		c := h[i]
		switch {
		case c == '/' || c == ':' || c == ',' || c == '\\' || c <= ' ' || c == 0x7f:
			b.WriteByte('\\')
			b.WriteByte('0' + c>>6)
			b.WriteByte('0' + (c>>3)&7)
			b.WriteByte('0' + c&7)
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// newName returns a maildir base name, unique across processes and hosts:
//
//	<sec>.M<usec>P<pid>Q<counter>R<random>.<host>,S=<size>,W=<wsize>
//
// sec/usec: the time; P: our pid (unique on this host at this instant); Q: a
// per-Store counter (unique within the process); R: 64 random bits (unique
// across Stores in one process, pid reuse, and clock steps); host: unique
// across hosts sharing the file system. S is the file's size on disk, W its
// size with CRLF line endings (RFC822.SIZE); Dovecot reads both from the
// name so an IMAP server never has to stat or read the file.
func newName(now time.Time, pid int, counter uint64, host string, size, wsize int64) string {
	var r [8]byte
	_, _ = rand.Read(r[:]) // crypto/rand.Read never fails (Go ≥ 1.24)
	b := make([]byte, 0, 96+len(host))
	b = strconv.AppendInt(b, now.Unix(), 10)
	b = append(b, ".M"...)
	b = strconv.AppendInt(b, int64(now.Nanosecond()/1000), 10)
	b = append(b, 'P')
	b = strconv.AppendInt(b, int64(pid), 10)
	b = append(b, 'Q')
	b = strconv.AppendUint(b, counter, 10)
	b = append(b, 'R')
	b = hex.AppendEncode(b, r[:])
	b = append(b, '.')
	b = append(b, host...)
	b = append(b, ",S="...)
	b = strconv.AppendInt(b, size, 10)
	b = append(b, ",W="...)
	b = strconv.AppendInt(b, wsize, 10)
	return string(b)
}

// keyedName is the base name of a copy with a CopyKey:
//
//	<sec>.K<key>.<host>,S=<size>,W=<wsize>
//
// sec is the message's arrival, so every attempt at the copy computes the
// same name (size and wsize follow from the same bytes). The key is unique
// per copy (queue id and recipient), the K keeps it apart from newName's
// M<usec> names.
func keyedName(arrived time.Time, key, host string, size, wsize int64) string {
	b := make([]byte, 0, 64+len(key)+len(host))
	b = strconv.AppendInt(b, arrived.Unix(), 10)
	b = append(b, ".K"...)
	b = append(b, key...)
	b = append(b, '.')
	b = append(b, host...)
	b = append(b, ",S="...)
	b = strconv.AppendInt(b, size, 10)
	b = append(b, ",W="...)
	b = strconv.AppendInt(b, wsize, 10)
	return string(b)
}

// validCopyKey: the key goes into a file name; letters, digits, '_' and '-'
// only, bounded.
func validCopyKey(k string) bool {
	if k == "" || len(k) > 64 {
		return false
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// SizesFromName returns Dovecot's S= (size on disk) and W= (size with CRLF
// line endings) fields of a maildir file name, as written by this package
// and by Dovecot. The fields sit between the unique part and the ":2,"
// flags; ok is false when either is missing or malformed, and the caller
// must then stat or read the file. The name is untrusted (anyone with access
// to the maildir can create files).
func SizesFromName(name string) (size, wsize int64, ok bool) {
	if i := strings.IndexByte(name, ':'); i >= 0 {
		name = name[:i] // flags (":2,FS") follow the sizes
	}
	size, wsize = -1, -1
	fields := strings.Split(name, ",")
	for _, f := range fields[1:] { // fields[0] is the unique part
		k, v, found := strings.Cut(f, "=")
		if !found || len(k) != 1 {
			continue // other extension fields are allowed and ignored
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 || (len(v) > 1 && v[0] == '0') || v[0] == '+' {
			return 0, 0, false
		}
		switch k {
		case "S":
			size = n
		case "W":
			wsize = n
		}
	}
	if size < 0 || wsize < 0 || wsize < size {
		return 0, 0, false
	}
	return size, wsize, true
}
