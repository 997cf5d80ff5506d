package uidlist

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// FileName is the name Dovecot gives the UID list inside each maildir folder.
const FileName = "dovecot-uidlist"

// ErrCorrupt reports a uidlist that cannot be trusted; the caller rebuilds it
// with a new UIDVALIDITY, as Dovecot does after unlinking a broken file.
var ErrCorrupt = errors.New("uidlist: corrupt")

// maxLine bounds one line: a maildir base name is far shorter (NAME_MAX 255)
// plus a few extension fields.
const maxLine = 64 * 1024

// Record is one message line: "<uid> [<ext> ...] :<basename>".
type Record struct {
	UID uint32
	// Ext holds extension fields verbatim ("W2049", "GXXXX"), key letter
	// first, kept so that Dovecot finds them again after we rewrite the file.
	Ext []string
	// Name is the maildir base name, without the ":2,<flags>" info part.
	Name string
}

// List is a parsed dovecot-uidlist.
type List struct {
	UIDValidity uint32
	NextUID     uint32
	GUID        string   // mailbox GUID, 32 hex digits, may be empty
	HeaderExt   []string // other header fields, verbatim
	Records     []Record // ascending UIDs
}

// Parse reads a dovecot-uidlist. Version 1 files ("1 <validity> <next>") are
// accepted too; they are written back as version 3. The file is read into
// one string that every record's name is a slice of: a 100,000-message
// folder's list costs a few allocations, not one per line.
func Parse(r io.Reader) (*List, error) {
	var b strings.Builder
	if _, err := io.Copy(&b, r); err != nil {
		return nil, fmt.Errorf("uidlist: read: %w", err)
	}
	return parse(b.String())
}

func parse(data string) (*List, error) {
	// nextLine cuts the next line (without its newline, or "\r\n");
	// unterminated says it ended the file without a newline. A record cut
	// short by a crash during an append (no newline at the end of the
	// file) is dropped; only a complete line that does not parse makes
	// the file corrupt.
	nextLine := func() (line string, unterminated, ok bool, err error) {
		if data == "" {
			return "", false, false, nil
		}
		i := strings.IndexByte(data, '\n')
		if i < 0 {
			line, data, unterminated = data, "", true
		} else {
			line, data = data[:i], data[i+1:]
		}
		if len(line) > maxLine {
			return "", false, false, fmt.Errorf("uidlist: read: %w", bufio.ErrTooLong)
		}
		return strings.TrimSuffix(line, "\r"), unterminated, true, nil
	}
	hdr, _, ok, err := nextLine()
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("%w: empty file", ErrCorrupt)
	}
	l := &List{}
	if len(hdr) < 2 || hdr[1] != ' ' {
		return nil, fmt.Errorf("%w: invalid version", ErrCorrupt)
	}
	version := hdr[0]
	switch version {
	case '1':
		f := strings.Fields(hdr[2:])
		if len(f) < 2 {
			return nil, fmt.Errorf("%w: version 1 header", ErrCorrupt)
		}
		v, err1 := strconv.ParseUint(f[0], 10, 32)
		n, err2 := strconv.ParseUint(f[1], 10, 32)
		if err1 != nil || err2 != nil {
			return nil, fmt.Errorf("%w: version 1 header", ErrCorrupt)
		}
		l.UIDValidity, l.NextUID = uint32(v), uint32(n)
	case '3':
		for _, f := range strings.Fields(hdr[2:]) {
			key, val := f[0], f[1:]
			switch key {
			case 'V', 'N':
				n, err := strconv.ParseUint(val, 10, 32)
				if err != nil {
					return nil, fmt.Errorf("%w: header field %q", ErrCorrupt, f)
				}
				if key == 'V' {
					l.UIDValidity = uint32(n)
				} else {
					l.NextUID = uint32(n)
				}
			case 'G':
				l.GUID = val
			default:
				l.HeaderExt = append(l.HeaderExt, f)
			}
		}
	default:
		return nil, fmt.Errorf("%w: unsupported version %c", ErrCorrupt, version)
	}
	if l.UIDValidity == 0 || l.NextUID == 0 {
		return nil, fmt.Errorf("%w: uidvalidity %d, nextuid %d", ErrCorrupt, l.UIDValidity, l.NextUID)
	}
	l.Records = make([]Record, 0, strings.Count(data, "\n")+1)
	var prev uint32
	lineNo := 1
	for {
		line, unterminated, ok, err := nextLine()
		if err != nil {
			return nil, err
		}
		if !ok {
			break
		}
		lineNo++
		if line == "" {
			continue
		}
		rec, err := parseRecord(line, version == '3')
		if err != nil && unterminated {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%w: line %d: %v", ErrCorrupt, lineNo, err)
		}
		if rec.UID <= prev && unterminated {
			break
		}
		if rec.UID <= prev {
			return nil, fmt.Errorf("%w: line %d: UIDs not ascending", ErrCorrupt, lineNo)
		}
		prev = rec.UID
		l.Records = append(l.Records, rec)
	}
	// Dovecot: next_uid is at least one past the last record.
	if prev >= l.NextUID {
		l.NextUID = prev + 1
	}
	return l, nil
}

func parseRecord(line string, v3 bool) (Record, error) {
	uidStr, rest, ok := strings.Cut(line, " ")
	if !ok {
		return Record{}, errors.New("no separator")
	}
	uid, ok := parseUID(uidStr)
	if !ok || uid == 0 || uid == 0xffffffff {
		return Record{}, fmt.Errorf("bad uid %q", uidStr)
	}
	rec := Record{UID: uint32(uid)}
	rest = strings.TrimLeft(rest, " ")
	if v3 {
		for rest != "" && rest[0] != ':' {
			var f string
			f, rest, _ = strings.Cut(rest, " ")
			rest = strings.TrimLeft(rest, " ")
			if f[0] < 'A' || f[0] > 'Z' {
				return Record{}, fmt.Errorf("bad extension %q", f)
			}
			rec.Ext = append(rec.Ext, f)
		}
		rest = strings.TrimPrefix(rest, ":")
	}
	if rest == "" || strings.ContainsAny(rest, "/\x00") {
		return Record{}, fmt.Errorf("bad file name %q", rest)
	}
	if i := strings.IndexByte(rest, ':'); i >= 0 {
		rest = rest[:i] // tolerate an info part: the base name is the key
	}
	if rest == "" || rest[0] == '.' {
		return Record{}, errors.New("empty or hidden file name")
	}
	rec.Name = rest
	return rec, nil
}

// parseUID reads a decimal UID as strconv.ParseUint(s, 10, 32) does, but
// without its error value (an allocation per call that fails, and a
// slower path per record).
func parseUID(s string) (uint64, bool) {
	if s == "" || len(s) > 10 {
		return 0, false
	}
	var n uint64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + uint64(c-'0')
	}
	return n, n <= 0xffffffff
}

// Ext returns the value of the extension field with the given key letter.
func (r Record) ExtValue(key byte) (string, bool) {
	for _, f := range r.Ext {
		if f[0] == key {
			return f[1:], true
		}
	}
	return "", false
}

// Marshal renders l in version 3 format, the one Dovecot 2.x writes.
func (l *List) Marshal() []byte {
	var b bytes.Buffer
	b.Grow(64 + len(l.Records)*64)
	fmt.Fprintf(&b, "3 V%d N%d", l.UIDValidity, l.NextUID)
	if l.GUID != "" {
		b.WriteString(" G")
		b.WriteString(l.GUID)
	}
	for _, f := range l.HeaderExt {
		b.WriteByte(' ')
		b.WriteString(f)
	}
	b.WriteByte('\n')
	var line []byte
	for _, r := range l.Records {
		line = AppendRecord(line[:0], r)
		b.Write(line)
	}
	return b.Bytes()
}

// AppendRecord appends r's line to b. Dovecot adds records to the end of an
// existing dovecot-uidlist under its lock rather than rewriting it, and
// reads such a file with the next UID past its last record; courriel does
// the same for new messages.
func AppendRecord(b []byte, r Record) []byte {
	b = strconv.AppendUint(b, uint64(r.UID), 10)
	for _, f := range r.Ext {
		b = append(b, ' ')
		b = append(b, f...)
	}
	b = append(b, " :"...)
	b = append(b, r.Name...)
	return append(b, '\n')
}
