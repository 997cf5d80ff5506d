package mailstore

import "strings"

// Flags is the set of maildir info flags of a message: bit i for the
// keyword letter 'a'+i, bit 32+i for the upper-case letter 'A'+i.
type Flags uint64

// The maildir letters of IMAP's system flags (maildir spec; Dovecot maps them
// the same way). P ("passed") has no IMAP flag and is kept as found.
const (
	FlagDraft    = Flags(1) << (32 + 'D' - 'A')
	FlagFlagged  = Flags(1) << (32 + 'F' - 'A')
	FlagPassed   = Flags(1) << (32 + 'P' - 'A')
	FlagAnswered = Flags(1) << (32 + 'R' - 'A')
	FlagSeen     = Flags(1) << (32 + 'S' - 'A')
	FlagDeleted  = Flags(1) << (32 + 'T' - 'A')
)

// KeywordFlag is the bit of keyword index i (0 = 'a').
func KeywordFlag(i int) Flags { return Flags(1) << uint(i) }

// ParseFlags reads the characters after ":2,", up to a ',' (what follows
// it is another set, no flags: Dovecot's maildir_filename_flags_get).
// Unknown characters are ignored, as Dovecot does.
func ParseFlags(s string) Flags {
	var f Flags
	for i := 0; i < len(s) && s[i] != ','; i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z':
			f |= Flags(1) << (c - 'a')
		case c >= 'A' && c <= 'Z':
			f |= Flags(1) << (32 + c - 'A')
		}
	}
	return f
}

// String renders the flags in ASCII order, as the maildir spec requires.
func (f Flags) String() string {
	var b [52]byte
	return string(f.appendLetters(b[:0]))
}

// appendLetters appends the flags' letters in ASCII order.
func (f Flags) appendLetters(b []byte) []byte {
	for c := byte('A'); c <= 'Z'; c++ {
		if f&(Flags(1)<<(32+c-'A')) != 0 {
			b = append(b, c)
		}
	}
	for c := byte('a'); c <= 'z'; c++ {
		if f&(Flags(1)<<(c-'a')) != 0 {
			b = append(b, c)
		}
	}
	return b
}

// SplitName splits a maildir file name into its base (the unique part,
// up to the first ':') and its flags, read as Dovecot reads them: in the
// info part after the last ':', when it is a "2," one. A name without
// one has no flags.
func SplitName(name string) (base string, flags Flags) {
	i := strings.IndexByte(name, ':')
	if i < 0 {
		return name, 0
	}
	base, info := name[:i], name[strings.LastIndexByte(name, ':')+1:]
	if strings.HasPrefix(info, "2,") {
		flags = ParseFlags(info[2:])
	}
	return base, flags
}

// withFlags is the name name gets with flags f, the rest of its info kept
// as Dovecot keeps it when it changes flags (maildir_filename_flags_full_set):
// the letters of the "2," info after its last ':' replaced by f's, in
// ASCII order, and what is no flag letter there (other characters, a ','
// and what follows) kept after them; a name without a "2," info gets one.
// For a usual name it is FileName(base, f).
func withFlags(name string, f Flags) string {
	i := strings.LastIndexByte(name, ':')
	if i < 0 || !strings.HasPrefix(name[i+1:], "2,") {
		return name + ":2," + f.String()
	}
	info := name[i+3:]
	end := strings.IndexByte(info, ',')
	if end < 0 {
		end = len(info)
	}
	b := f.appendLetters([]byte(name[:i+3]))
	for j := 0; j < end; j++ {
		if c := info[j]; !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z') {
			b = append(b, c)
		}
	}
	return string(append(b, info[end:]...))
}

// named reports whether info, the part of a name after its ':', is the
// one FileName gives f, without building the name (a listing asks it of
// every file).
func (f Flags) named(info string) bool {
	var buf [64]byte
	return string(f.appendLetters(append(buf[:0], "2,"...))) == info
}

// FileName is the cur/ name of a message.
func FileName(base string, f Flags) string { return base + ":2," + f.String() }

// sizeField returns the value of ",S=" or ",W=" in a base name.
func sizeField(base string, key byte) (int64, bool) {
	for i := 0; i+3 < len(base); i++ {
		if base[i] == ',' && base[i+1] == key && base[i+2] == '=' {
			var n int64
			j := i + 3
			for ; j < len(base) && base[j] >= '0' && base[j] <= '9'; j++ {
				n = n*10 + int64(base[j]-'0')
				if n > 1<<40 {
					return 0, false
				}
			}
			if j == i+3 {
				return 0, false
			}
			return n, true
		}
	}
	return 0, false
}
