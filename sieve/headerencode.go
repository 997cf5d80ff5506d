package sieve

import (
	"encoding/base64"
	"fmt"
	"strings"
	"unicode/utf8"
)

// addheader writes its field as Pigeonhole does (edit_mail's
// edit_mail_header_field_create): the value RFC 2047 encoded by Dovecot's
// message_header_encode_data (only from the first word that needs it to
// the last, Q or B, whichever is shorter, encoded words of at most 76
// columns), then folded by Pigeonhole's rfc2822_header_append (at white
// space, lines of at most 80 columns where the words allow; a line break
// in the value a fold, the white space around it one TAB). A line break
// never starts a line of its own: no field can be injected.

// headerWrapperLen is strlen("=?utf-8?q?" "?="), headerMaxLine Dovecot's
// MIME_MAX_LINE_LEN.
const (
	headerWrapperLen = 12
	headerMaxLine    = 76
	fieldMaxLine     = 80
)

func isLWSP(c byte) bool { return c == ' ' || c == '\t' || c == '\n' }

// needsEncoding is Dovecot's input_idx_need_encoding.
func needsEncoding(in string, i int) bool {
	switch c := in[i]; c {
	case '\r':
		if i+1 == len(in) || in[i+1] != '\n' {
			return true
		}
		i++
		fallthrough
	case '\n':
		if i+1 == len(in) {
			return true // a trailing line break: dropped
		}
		return in[i+1] != '\t' && in[i+1] != ' ' // a TAB is to be added
	case '\t':
		return false
	case '=':
		return (i == 0 || isLWSP(in[i-1])) && strings.HasPrefix(in[i:], "=?")
	default:
		return c >= 0x80 || c < 32
	}
}

// encodeHeaderValue is Dovecot's message_header_encode_data: out gets in
// with the words that need it encoded, line by line.
func encodeHeaderValue(out *strings.Builder, in string) {
	i := 0
	for i < len(in) && !needsEncoding(in, i) {
		i++
	}
	if i == len(in) {
		out.WriteString(in)
		return
	}
	// the whole word
	if in[i] != '\r' && in[i] != '\n' {
		for i > 0 && !isLWSP(in[i-1]) {
			i--
		}
	}
	out.WriteString(in[:i])
	// as Dovecot: the offset of the prefix's last line, not its length
	firstLineLen, j := i, i
	for j > 0 && in[j-1] != '\n' {
		j--
	}
	if j != 0 {
		firstLineLen = j
	}
	in = in[i:]
	// this line; the rest after its line break, on a line of its own
	line, next, more := in, "", false
	if k := strings.IndexByte(in, '\n'); k >= 0 {
		if k > 0 && in[k-1] == '\r' {
			k--
		}
		line, next, more = in[:k], in[k:], true
	}
	last, encChars := 0, 0
	for k := range len(line) {
		if needsEncoding(line, k) {
			last, encChars = k+1, encChars+1
		}
	}
	for last < len(line) && !isLWSP(line[last]) {
		last++
	}
	b64Len := (last + 2) / 3 * 4
	qLen := last + encChars*3
	switch {
	case last == 0:
	case qLen*2/3 <= b64Len:
		encodeQ(out, line[:last], firstLineLen)
	default:
		encodeB(out, line[:last], firstLineLen)
	}
	out.WriteString(line[last:])
	if !more {
		return
	}
	k := 0
	cr := next[0] == '\r'
	if cr {
		k++
	}
	k++ // the LF
	if k == len(next) {
		return // the trailing line break dropped
	}
	if cr {
		out.WriteByte('\r')
	}
	out.WriteByte('\n')
	if next[k] == ' ' || next[k] == '\t' {
		out.WriteByte(next[k])
		k++
	} else {
		out.WriteByte('\t') // folding white space made
	}
	encodeHeaderValue(out, next[k:])
}

// runeAt is the UTF-8 character at the start of s: its length, 0 when
// it is none (an invalid or cut octet).
func runeAt(s string) int {
	r, n := utf8.DecodeRuneInString(s)
	if r == utf8.RuneError && n <= 1 {
		return 0
	}
	return n
}

// startEncodedWord opens an encoded word after firstLineLen columns of
// its line, on a folded line when too little room is left there, and
// returns the columns left for its encoded text.
func startEncodedWord(out *strings.Builder, open string, firstLineLen int) int {
	left := headerMaxLine - headerWrapperLen
	if firstLineLen >= headerMaxLine-headerWrapperLen-3 {
		out.WriteString("\n\t")
		left--
	} else {
		left -= firstLineLen
	}
	out.WriteString(open)
	return left
}

// encodeQ is Dovecot's message_header_encode_q: invalid UTF-8 one
// replacement character for each run of invalid octets.
func encodeQ(out *strings.Builder, in string, firstLineLen int) {
	left := startEncodedWord(out, "=?utf-8?q?", firstLineLen)
	invalid := false
	for len(in) > 0 {
		nIn, nOut := 1, 1
		valid := true
		switch c := in[0]; {
		case c == ' ':
		case c == '=' || c == '?' || c == '_':
			nOut = 3
		default:
			n := runeAt(in)
			switch {
			case n == 0:
				valid = false
				nOut = 0
				if !invalid {
					nOut = 9 // U+FFFD
				}
			case n > 1:
				nIn, nOut = n, 3*n
			case c < 0x20 || c > 0x7e:
				nOut = 3
			}
		}
		invalid = !valid
		if left < nOut {
			out.WriteString("?=\n\t=?utf-8?q?")
			left = headerMaxLine - headerWrapperLen - 1
		}
		switch {
		case in[0] == ' ':
			out.WriteByte('_')
		case !valid:
			if nOut > 0 {
				out.WriteString("=EF=BF=BD")
			}
		case nOut > 1:
			for k := range nIn {
				fmt.Fprintf(out, "=%02X", in[k])
			}
		default:
			out.WriteByte(in[0])
		}
		left -= nOut
		in = in[nIn:]
	}
	out.WriteString("?=")
}

// encodeB is Dovecot's message_header_encode_b: each encoded word as
// many whole characters as its line has room for.
func encodeB(out *strings.Builder, in string, firstLineLen int) {
	in = strings.ToValidUTF8(in, "\uFFFD")
	left := startEncodedWord(out, "=?utf-8?b?", firstLineLen)
	for {
		room := min(left/4*3, len(in))
		n := 0
		for n < room {
			k := max(runeAt(in[n:]), 1)
			if n+k > room {
				break
			}
			n += k
		}
		out.WriteString(base64.StdEncoding.EncodeToString([]byte(in[:n])))
		in = in[n:]
		if len(in) == 0 {
			break
		}
		out.WriteString("?=\n\t=?utf-8?b?")
		left = headerMaxLine - headerWrapperLen - 1
	}
	out.WriteString("?=")
}

// foldField is Pigeonhole's rfc2822_header_append: "name: body" folded,
// CRLF line ends, without the last one.
func foldField(name, body string) string {
	var out strings.Builder
	out.WriteString(name + ": ")
	bp, sp, wp, nlp := 0, 0, -1, -1
	lineLen := len(name) + 2
	lines := 0
	for bp < len(body) {
		wsFirst := true
		for bp < len(body) && nlp < 0 && (wp < 0 || lineLen < fieldMaxLine) {
			switch c := body[bp]; {
			case c == ' ' || c == '\t':
				if wsFirst {
					wp = bp
				}
				wsFirst = false
			case c == '\r' || c == '\n':
				if wsFirst {
					nlp = bp
				} else {
					nlp = wp
				}
			default:
				wsFirst = true
			}
			if nlp >= 0 {
				break
			}
			bp++
			lineLen++
		}
		if bp >= len(body) {
			break
		}
		if nlp >= 0 {
			// a line break of the value: the white space and line
			// breaks around it one fold
			for bp < len(body) && strings.IndexByte(" \t\r\n", body[bp]) >= 0 {
				bp++
			}
			out.WriteString(body[sp:nlp] + "\r\n")
			if bp < len(body) {
				out.WriteByte('\t')
			}
			sp = bp
		} else {
			// fold at the last white space within the line
			out.WriteString(body[sp:wp] + "\r\n\t")
			for wp < len(body) && (body[wp] == ' ' || body[wp] == '\t') {
				wp++
			}
			sp = wp
			if sp > bp {
				bp = sp
			}
		}
		lines++
		lineLen = bp - sp
		wp, nlp = -1, -1
	}
	if bp != sp || lines == 0 {
		out.WriteString(body[sp:bp])
	} else {
		// the value ended in a line break, or in white space past a
		// fold (Pigeonhole ends the field there, "\n\t" without a
		// line end): the field's own line end is the caller's
		f := strings.TrimSuffix(out.String(), "\t")
		return strings.TrimSuffix(f, "\r\n")
	}
	return out.String()
}
