package wire

import (
	"errors"
	"strings"

	"courriel/internal/envaddr"
	"courriel/internal/xtext"
)

// Errors of the parsers.
var (
	ErrEmpty  = errors.New("smtp/wire: empty command line")
	ErrVerb   = errors.New("smtp/wire: malformed command verb")
	ErrPath   = errors.New("smtp/wire: malformed path")
	ErrParams = errors.New("smtp/wire: malformed parameters")
	ErrXtext  = errors.New("smtp/wire: malformed xtext")
)

const (
	maxVerb      = 16 // longer than any command: a line that is not one
	maxParamKeys = 16 // more ESMTP parameters than any client sends
)

// ParseCommand splits a command line into its verb, upper-cased, and its
// argument, without the spaces around it.
func ParseCommand(line []byte) (verb, arg string, err error) {
	s := strings.TrimRight(string(line), " \t")
	if s == "" {
		return "", "", ErrEmpty
	}
	v, a, _ := strings.Cut(s, " ")
	if len(v) > maxVerb {
		return "", "", ErrVerb
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return "", "", ErrVerb
		}
	}
	return strings.ToUpper(v), strings.TrimSpace(a), nil
}

// CutPrefixFold is strings.CutPrefix without regard to ASCII case ("FROM:",
// "TO:").
func CutPrefixFold(s, prefix string) (string, bool) {
	if len(s) < len(prefix) || !strings.EqualFold(s[:len(prefix)], prefix) {
		return s, false
	}
	return s[len(prefix):], true
}

// ParseReversePath reads the path of MAIL FROM at the start of s: "<>"
// (returned as ""), or a path as ParseForwardPath reads it. rest is what
// follows it (the parameters).
func ParseReversePath(s string) (addr, rest string, err error) {
	if strings.HasPrefix(s, "<>") {
		return "", s[2:], nil
	}
	addr, rest, err = parsePath(s)
	if err == ErrPath {
		return laxPath(s)
	}
	return addr, rest, err
}

// ParseForwardPath reads the path of RCPT TO at the start of s:
// "<Postmaster>" without a domain (RFC 5321 §4.1.1.3, any case, returned
// as sent), or "<" [source route ":"] mailbox ">", the source route
// dropped (RFC 5321 §4.1.1.3 says to ignore it) and a quoted local part
// unquoted when its content is a dot-atom ("john.doe"@z is john.doe@z),
// otherwise quoted again in one canonical form (QuoteLocal: "x@y"@z stays
// so, for the caller's checks to refuse, "a\ b"@z is "a b"@z). The angle brackets may be missing, as lax clients send.
//
// The domain is every octet up to a space, a tab or '>': the caller
// checks it.
func ParseForwardPath(s string) (addr, rest string, err error) {
	const postmaster = "<postmaster>"
	if len(s) >= len(postmaster) && strings.EqualFold(s[:len(postmaster)], postmaster) {
		return s[1 : len(postmaster)-1], s[len(postmaster):], nil
	}
	addr, rest, err = parsePath(s)
	if err == ErrPath {
		// "<user>" without a domain, which Postfix takes for
		// user@$myorigin: a plain local part, returned without "@" for
		// the caller to qualify.
		if in, ok := strings.CutPrefix(s, "<"); ok {
			if i := strings.IndexByte(in, '>'); i > 0 && envaddr.DotAtom(in[:i], false) {
				return in[:i], in[i+1:], nil
			}
		}
		return laxPath(s)
	}
	return addr, rest, err
}

// laxPath reads the bracketed paths that broken clients send and Postfix
// takes (its strict_rfc821_envelopes = no), once the strict reading has
// failed: spaces inside the brackets ("< a@b.example >"), brackets
// doubled ("<<a@b.example>>"), and a display name inside them
// ("<Joe <a@b.example>>", scripts that put a From field where the
// address goes). The address is the innermost bracketed one, read
// strictly, so nothing the strict reading refuses (a space in a local
// part, a relay trick) gets in this way: only the wrapping is forgiven.
func laxPath(s string) (string, string, error) {
	if !strings.HasPrefix(s, "<") {
		return "", "", ErrPath
	}
	end := strings.IndexByte(s, '>')
	if end < 0 {
		return "", "", ErrPath
	}
	in, rest := s[1:end], s[end+1:]
	if i := strings.LastIndexByte(in, '<'); i >= 0 {
		// "<Name <addr>>" or "<<addr>>": the outer bracket closes
		// after the inner one.
		in = in[i+1:]
		r := strings.TrimLeft(rest, " \t")
		if !strings.HasPrefix(r, ">") {
			return "", "", ErrPath
		}
		rest = r[1:]
	}
	in = strings.Trim(in, " \t")
	if in == "" || strings.ContainsAny(in, "<>") {
		return "", "", ErrPath
	}
	addr, tail, err := parsePath("<" + in + ">")
	if err != nil || tail != "" {
		return "", "", ErrPath
	}
	return addr, rest, nil
}

func parsePath(s string) (string, string, error) {
	bracket := strings.HasPrefix(s, "<")
	if bracket {
		s = s[1:]
	}
	if strings.HasPrefix(s, "@") { // a-d-l ":"
		i := strings.IndexByte(s, ':')
		if i < 0 {
			return "", "", ErrPath
		}
		s = s[i+1:]
	}
	var b strings.Builder
	if strings.HasPrefix(s, `"`) {
		s = s[1:]
		closed := false
		var q strings.Builder
		for len(s) > 0 && !closed {
			c := s[0]
			s = s[1:]
			switch c {
			case '"':
				closed = true
				continue
			case '\\':
				if len(s) == 0 {
					return "", "", ErrPath
				}
				c, s = s[0], s[1:]
			}
			q.WriteByte(c)
		}
		if !closed || q.Len() == 0 {
			return "", "", ErrPath
		}
		// A quoted dot-atom is the dot-atom ("john.doe"@x is john.doe@x);
		// any other content stays quoted, in one canonical form ('\\' and
		// '"' as quoted-pairs), so the caller tells "a..b"@x from a..b@x.
		if content := q.String(); envaddr.DotAtom(content, true) {
			b.WriteString(content)
		} else {
			b.WriteString(QuoteLocal(content))
		}
	} else {
		i := strings.IndexAny(s, "@()<>[]:;\\,\" \t")
		if i < 0 || s[i] != '@' {
			return "", "", ErrPath
		}
		b.WriteString(s[:i])
		s = s[i:]
	}
	if b.Len() == 0 || !strings.HasPrefix(s, "@") {
		return "", "", ErrPath
	}
	s = s[1:]
	i := strings.IndexAny(s, " \t>")
	if i < 0 {
		i = len(s)
	}
	if i == 0 {
		return "", "", ErrPath
	}
	b.WriteByte('@')
	b.WriteString(s[:i])
	s = s[i:]
	if bracket {
		if !strings.HasPrefix(s, ">") {
			return "", "", ErrPath
		}
		s = s[1:]
	}
	return b.String(), s, nil
}

// QuoteLocal is a local part's Quoted-string (RFC 5321 §4.1.2), with '\'
// and '"' as quoted-pairs, the one form ParseForwardPath returns a quoted
// local part in.
func QuoteLocal(local string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(local) + `"`
}

// UnquoteLocal undoes QuoteLocal: the content of a quoted local part, ok
// false when local is not one.
func UnquoteLocal(local string) (string, bool) {
	if len(local) < 2 || local[0] != '"' || local[len(local)-1] != '"' {
		return "", false
	}
	var b strings.Builder
	in := local[1 : len(local)-1]
	for i := 0; i < len(in); i++ {
		c := in[i]
		switch c {
		case '\\':
			if i+1 == len(in) {
				return "", false
			}
			i++
			c = in[i]
		case '"':
			return "", false
		}
		b.WriteByte(c)
	}
	return b.String(), true
}

// Param is one ESMTP parameter of MAIL or RCPT: KEY or KEY=value.
type Param struct {
	Key   string // upper-cased
	Value string
}

// ParseParams reads the ESMTP parameters after a path: space-separated
// KEY or KEY=value, at most maxParamKeys of them.
func ParseParams(s string) ([]Param, error) {
	if s != "" && s[0] != ' ' && s[0] != '\t' {
		return nil, ErrParams // "<a@b>SIZE=1"
	}
	var out []Param
	for _, f := range strings.Fields(s) {
		k, v, hasValue := strings.Cut(f, "=")
		if k == "" || strings.Contains(v, "=") || (hasValue && v == "") || len(out) == maxParamKeys {
			return nil, ErrParams
		}
		out = append(out, Param{Key: strings.ToUpper(k), Value: v})
	}
	return out, nil
}

// DecodeXtext decodes RFC 3461 §4's xtext strictly (internal/xtext):
// ErrXtext for anything else.
func DecodeXtext(s string) (string, error) {
	v, err := xtext.Decode(s)
	if err != nil {
		return "", ErrXtext
	}
	return v, nil
}
