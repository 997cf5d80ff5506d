package sieve

import (
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// decodeEncodedCharacters replaces ${hex:…} and ${unicode:…} (RFC 5228
// §2.4.2.4, extension "encoded-character") in a string of the script. Text
// that is not a well-formed encoding stays as it is; a Unicode value that is
// no character (a surrogate, above 10FFFF) is an error.
func decodeEncodedCharacters(s string) (string, error) {
	if !strings.Contains(s, "${") {
		return s, nil
	}
	var b strings.Builder
	for {
		i := strings.Index(s, "${")
		if i < 0 {
			b.WriteString(s)
			return b.String(), nil
		}
		b.WriteString(s[:i])
		end := strings.IndexByte(s[i:], '}')
		if end < 0 {
			b.WriteString(s[i:])
			return b.String(), nil
		}
		inner := s[i+2 : i+end]
		decoded, ok, err := decodeEncoding(inner)
		if err != nil {
			return "", err
		}
		if !ok {
			b.WriteString("${")
			s = s[i+2:]
			continue
		}
		b.WriteString(decoded)
		s = s[i+end+1:]
	}
}

func decodeEncoding(inner string) (string, bool, error) {
	colon := strings.IndexByte(inner, ':')
	if colon < 0 {
		return "", false, nil
	}
	kind := strings.ToLower(inner[:colon])
	if kind != "hex" && kind != "unicode" {
		return "", false, nil
	}
	fields := strings.FieldsFunc(inner[colon+1:], func(r rune) bool {
		return r == ' ' || r == '\t' || r == '\r' || r == '\n'
	})
	if len(fields) == 0 {
		return "", false, nil
	}
	var b strings.Builder
	for _, f := range fields {
		for _, c := range f {
			if !strings.ContainsRune("0123456789abcdefABCDEF", c) {
				return "", false, nil
			}
		}
		if kind == "hex" {
			if len(f) > 2 {
				return "", false, nil
			}
			v, _ := strconv.ParseUint(f, 16, 8)
			b.WriteByte(byte(v))
			continue
		}
		v, err := strconv.ParseUint(strings.TrimLeft(f, "0")+"0", 16, 64)
		v >>= 4 // the "0" appended keeps an all-zero field parseable
		if err != nil || v > utf8.MaxRune || (v >= 0xD800 && v <= 0xDFFF) {
			return "", false, fmt.Errorf("invalid Unicode character ${unicode:%s}", f)
		}
		b.WriteRune(rune(v))
	}
	return b.String(), true, nil
}
