package maildrop

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"courriel/internal/xtext"
)

// magic is the first line of every file; the number is the format's
// version, changed only with a reader for the old one.
const magic = "courriel-maildrop 1"

// Bounds of an envelope, far above what sendmail writes (a command line's
// recipients, RFC 5321's 256-octet paths) and small enough that a hostile
// file costs little to refuse.
const (
	// MaxRecipients bounds the rcpt lines of one file.
	MaxRecipients = 10000
	// maxValue bounds one decoded value (an address, a full name, ENVID).
	maxValue = 2048
	// maxLine bounds one envelope line: a key and a value, each octet of
	// which may take three in xtext.
	maxLine = 16 + 3*maxValue
	// MaxEnvelope bounds the envelope's lines together.
	MaxEnvelope = 1 << 20
)

// ErrMalformed is wrapped by every error of a file that is not a
// well-formed maildrop file (or not a plain file of its owner's at all):
// the caller sets it aside rather than try it again.
var ErrMalformed = errors.New("maildrop: malformed file")

// Envelope is what sendmail's command line asked for, beside the message.
// The invoking user is not in it: the reader names the file's owner.
type Envelope struct {
	// From is the envelope sender of -f or -r ("" with FromSet: the null
	// sender); without FromSet the server uses the owner's login.
	From    string
	FromSet bool
	// FullName goes into a From: the message lacks (-F, $NAME or GECOS).
	FullName string
	// Extract: -t, recipients from To, Cc and Bcc too.
	Extract bool
	// Recipients are those of the command line, as given (unqualified
	// "root" included: the server qualifies them).
	Recipients []string
	// Notify, Ret and EnvID are the DSN parameters of -N, -R and -V; ""
	// none.
	Notify, Ret, EnvID string
}

// marshal is the envelope's lines, the empty line included, for a message
// of size octets.
func (e *Envelope) marshal(size int) ([]byte, error) {
	if len(e.Recipients) > MaxRecipients {
		return nil, fmt.Errorf("maildrop: %d recipients, at most %d", len(e.Recipients), MaxRecipients)
	}
	var b bytes.Buffer
	b.WriteString(magic + "\n")
	line := func(key, v string) error {
		if len(v) > maxValue {
			return fmt.Errorf("maildrop: %s value of %d octets, at most %d", key, len(v), maxValue)
		}
		b.WriteString(key)
		b.WriteByte(' ')
		b.WriteString(xtext.Encode(v))
		b.WriteByte('\n')
		return nil
	}
	var err error
	if e.FromSet {
		err = errors.Join(err, line("from", e.From))
	}
	if e.FullName != "" {
		err = errors.Join(err, line("fullname", e.FullName))
	}
	if e.Extract {
		b.WriteString("extract\n")
	}
	if e.Notify != "" {
		err = errors.Join(err, line("notify", e.Notify))
	}
	if e.Ret != "" {
		err = errors.Join(err, line("ret", e.Ret))
	}
	if e.EnvID != "" {
		err = errors.Join(err, line("envid", e.EnvID))
	}
	for _, r := range e.Recipients {
		err = errors.Join(err, line("rcpt", r))
	}
	if err != nil {
		return nil, err
	}
	b.WriteString("size " + strconv.Itoa(size) + "\n\n")
	if b.Len() > MaxEnvelope {
		return nil, fmt.Errorf("maildrop: envelope of %d octets, at most %d", b.Len(), MaxEnvelope)
	}
	return b.Bytes(), nil
}

// keyOrder is the order of the envelope's keys; each appears once but
// rcpt, and size ends the envelope.
var keyOrder = map[string]int{"from": 1, "fullname": 2, "extract": 3, "notify": 4, "ret": 5, "envid": 6, "rcpt": 7, "size": 8}

// parse reads a whole file's bytes: its envelope and its message, which
// must be exactly the size the envelope says. maxMessage bounds that size.
func parse(data []byte, maxMessage int64) (*Envelope, []byte, error) {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: %s", ErrMalformed, fmt.Sprintf(format, a...))
	}
	e := &Envelope{}
	rest := data
	last := 0
	first := true
	var want int64
	for {
		if len(data)-len(rest) > MaxEnvelope {
			return nil, nil, bad("envelope longer than %d octets", MaxEnvelope)
		}
		i := bytes.IndexByte(rest, '\n')
		if i < 0 {
			return nil, nil, bad("envelope truncated")
		}
		if i > maxLine {
			return nil, nil, bad("envelope line of %d octets, at most %d", i, maxLine)
		}
		line := string(rest[:i])
		rest = rest[i+1:]
		if first {
			if line != magic {
				return nil, nil, bad("not a maildrop file (first line %q)", printable(line))
			}
			first = false
			continue
		}
		if line == "" {
			if last != keyOrder["size"] {
				return nil, nil, bad("envelope without size")
			}
			break
		}
		key, raw, hasValue := strings.Cut(line, " ")
		n, ok := keyOrder[key]
		switch {
		case !ok:
			return nil, nil, bad("unknown envelope key %q", printable(key))
		case last == keyOrder["size"]:
			return nil, nil, bad("%s after size", key)
		case n < last || n == last && key != "rcpt":
			return nil, nil, bad("%s out of order or repeated", key)
		case hasValue == (key == "extract"):
			return nil, nil, bad("%s: value missing or unexpected", key)
		}
		last = n
		if key == "extract" {
			e.Extract = true
			continue
		}
		if key == "size" {
			size, err := strconv.ParseInt(raw, 10, 64)
			if err != nil || size < 0 || strconv.FormatInt(size, 10) != raw {
				return nil, nil, bad("size %q", printable(raw))
			}
			if size > maxMessage {
				return nil, nil, bad("message of %d octets, at most %d", size, maxMessage)
			}
			want = size
			continue
		}
		v, err := xtext.Decode(raw)
		if err != nil {
			return nil, nil, bad("%s: %v", key, err)
		}
		if len(v) > maxValue {
			return nil, nil, bad("%s value of %d octets, at most %d", key, len(v), maxValue)
		}
		switch key {
		case "from":
			e.From, e.FromSet = v, true
		case "fullname":
			e.FullName = v
		case "notify":
			e.Notify = v
		case "ret":
			e.Ret = v
		case "envid":
			e.EnvID = v
		case "rcpt":
			if len(e.Recipients) >= MaxRecipients {
				return nil, nil, bad("more than %d recipients", MaxRecipients)
			}
			if v == "" {
				return nil, nil, bad("empty recipient")
			}
			e.Recipients = append(e.Recipients, v)
		}
	}
	if int64(len(rest)) != want {
		return nil, nil, bad("message of %d octets where the envelope says %d (truncated or extended)", len(rest), want)
	}
	return e, rest, nil
}

// printable is a hostile string bounded and made safe for an error
// message (which the caller logs).
func printable(s string) string {
	const n = 64
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if i == n {
			b.WriteString("...")
			break
		}
		if c := s[i]; c < ' ' || c > '~' {
			b.WriteByte('?')
		} else {
			b.WriteByte(c)
		}
	}
	return b.String()
}
