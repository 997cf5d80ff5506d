package imap

import (
	"bytes"
	"io"
	"strings"
	"unicode/utf8"

	"github.com/emersion/go-message/charset"
)

// searchCharsets are the charsets a BADCHARSET response lists (RFC 9051
// §6.4.4 and §7.1: the list is optional; if given, it lists the charsets
// supported): the ones mail is commonly written in, each of which
// validCharset takes (TestBadCharsetListsSupported). The decoder takes
// many more (every IANA name and alias it knows, as Dovecot takes what
// iconv knows, and lists none): listing them all would make a response
// of kilobytes that no client needs to pick a charset from.
const searchCharsets = "UTF-8 US-ASCII " +
	"ISO-8859-1 ISO-8859-2 ISO-8859-3 ISO-8859-4 ISO-8859-5 ISO-8859-6 ISO-8859-7 " +
	"ISO-8859-8 ISO-8859-9 ISO-8859-10 ISO-8859-13 ISO-8859-14 ISO-8859-15 ISO-8859-16 " +
	"windows-1250 windows-1251 windows-1252 windows-1253 windows-1254 windows-1255 " +
	"windows-1256 windows-1257 windows-1258 KOI8-R KOI8-U " +
	"ISO-2022-JP Shift_JIS EUC-JP EUC-KR GB2312 GBK GB18030 Big5"

// badCharset is the response code refusing a charset no decoder knows.
const badCharset = "BADCHARSET (" + searchCharsets + ")"

// readSearchCharset reads the charset of a SEARCH, SORT or THREAD into
// s.searchCS. UTF-8 and US-ASCII are read as UTF-8; any other charset a
// decoder knows (ISO-8859-1, windows-1252, KOI8-R…, as Dovecot takes
// what iconv knows) has its strings converted to UTF-8 as they are read;
// an unknown one is BADCHARSET, with the list of searchCharsets.
func (s *session) readSearchCharset() error {
	cs, err := s.r.AString()
	if err != nil {
		return err
	}
	switch {
	case isUTF8Charset(cs) && cs != "":
		s.searchCS = ""
	case validCharset(cs):
		s.searchCS = cs
	default:
		return no(badCharset, "Unsupported charset")
	}
	return nil
}

// validCharset says whether a decoder knows cs.
func validCharset(cs string) bool {
	if len(cs) > 64 {
		return false
	}
	_, err := charset.Reader(cs, strings.NewReader(""))
	return err == nil
}

// toUTF8 converts a search string from the charset cs to UTF-8.
func toUTF8(cs, v string) (string, error) {
	r, err := charset.Reader(cs, strings.NewReader(v))
	if err != nil {
		return "", no(badCharset, "Unsupported charset")
	}
	out, err := io.ReadAll(io.LimitReader(r, 4*int64(len(v))+4))
	// The decoders put U+FFFD for bytes the charset does not define
	// (0x81 in windows-1252, a lone UTF-16 half) where iconv fails, and
	// Dovecot answers BAD: a key the client did not mean is not searched.
	if err != nil || !utf8.Valid(out) || bytes.ContainsRune(out, utf8.RuneError) {
		return "", bad("", "Invalid search key: the string is not "+sanitize(cs))
	}
	return string(out), nil
}
