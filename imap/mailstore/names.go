package mailstore

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// Delimiter is the IMAP hierarchy separator. Maildir++ (Dovecot's default
// maildir layout) stores "Archive/2024" as the directory ".Archive.2024", so
// the separator clients see is '.' too, as with Dovecot.
const Delimiter = '.'

// InboxName is the one folder name compared case-insensitively (RFC 9051 §5.1).
const InboxName = "INBOX"

// maxNameLen bounds a folder's directory name: NAME_MAX is 255 bytes and the
// modified UTF-7 form can be longer than the UTF-8 one.
const maxNameLen = 255

// ErrBadName rejects a folder name that cannot be stored safely.
var ErrBadName = errors.New("mailstore: invalid folder name")

// IsInbox reports whether name designates INBOX.
func IsInbox(name string) bool { return strings.EqualFold(name, InboxName) }

// CanonicalName spells INBOX, and INBOX as the first level of a hierarchy
// ("inbox.Sub"), in capitals, as Dovecot's namespace with inbox=yes does:
// the same folder, ".INBOX.Sub" on disk, whoever names it.
func CanonicalName(name string) string {
	if IsInbox(name) {
		return InboxName
	}
	if first, rest, ok := strings.Cut(name, string(Delimiter)); ok && IsInbox(first) {
		return InboxName + string(Delimiter) + rest
	}
	return name
}

// FolderDir maps an IMAP folder name (UTF-8, as decoded by the IMAP library)
// to its directory relative to the maildir root: "" for INBOX, ".Sent",
// ".Archive.2024". Names that could escape the maildir, collide with the
// maildir's own tmp/new/cur, or confuse a file system are refused. The
// list wildcards '*' and '%' and the backslash are not: Dovecot creates
// such folders (".50% off"), and a maildir it served must show them all;
// NewFolderDir refuses them in the names courriel makes.
func FolderDir(name string) (string, error) { return folderDir(name, false) }

// NewFolderDir is FolderDir for a folder about to be made (CREATE, the new
// name of RENAME): a name with a list wildcard or a backslash is refused
// too, as hard to name in LIST patterns and quoted strings (RFC 9051
// §5.1).
func NewFolderDir(name string) (string, error) { return folderDir(name, true) }

func folderDir(name string, fresh bool) (string, error) {
	if IsInbox(name) {
		return "", nil
	}
	name = CanonicalName(name)
	if name == "" || !utf8.ValidString(name) {
		return "", fmt.Errorf("%w: empty or not UTF-8", ErrBadName)
	}
	parts := strings.Split(name, string(Delimiter))
	enc := make([]string, len(parts))
	for i, p := range parts {
		if p == "" {
			return "", fmt.Errorf("%w: empty hierarchy level", ErrBadName)
		}
		for _, r := range p {
			if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) || r == '/' || r == utf8.RuneError ||
				fresh && (r == '\\' || r == '*' || r == '%') {
				return "", fmt.Errorf("%w: forbidden character %q", ErrBadName, r)
			}
		}
		enc[i] = EncodeMUTF7(p)
	}
	dir := "." + strings.Join(enc, ".")
	if len(dir) > maxNameLen {
		return "", fmt.Errorf("%w: too long", ErrBadName)
	}
	// Maildir++ folders always begin with '.', so "tmp", "new" and "cur"
	// cannot be produced; ".." cannot either because levels are non-empty.
	// Check anyway: this is the one place that guards the layout.
	switch dir {
	case ".", "..", "tmp", "new", "cur":
		return "", fmt.Errorf("%w: reserved", ErrBadName)
	}
	return dir, nil
}

// FolderName maps a directory name found in the maildir root back to the IMAP
// name; ok is false for anything that is not a valid Maildir++ folder.
func FolderName(dir string) (name string, ok bool) {
	if len(dir) < 2 || dir[0] != '.' || dir == ".." {
		return "", false
	}
	parts := strings.Split(dir[1:], string(Delimiter))
	for i, p := range parts {
		d, err := DecodeMUTF7(p)
		if err != nil || d == "" {
			return "", false
		}
		parts[i] = d
	}
	name = strings.Join(parts, string(Delimiter))
	if back, err := FolderDir(name); err != nil || back != dir {
		return "", false
	}
	return name, true
}

// ParentNames returns the ancestors of name, nearest last: "a.b.c" gives
// "a", "a.b".
func ParentNames(name string) []string {
	var out []string
	for i := 0; i < len(name); i++ {
		if name[i] == Delimiter {
			out = append(out, name[:i])
		}
	}
	return out
}
