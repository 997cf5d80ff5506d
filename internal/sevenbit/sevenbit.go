// Package sevenbit converts a message's 8-bit body parts to
// quoted-printable (RFC 6152 §3, RFC 2045), leaving headers, delimiters,
// preambles and epilogues as they are: for a next hop without 8BITMIME, and
// before a DKIM signature, which RFC 6376 §5.3 asks to be made over a body
// that no later hop needs to convert.
package sevenbit

import (
	"bytes"
	"mime"
	"mime/quotedprintable"
	"strings"
	"unicode/utf8"

	"courriel/internal/mimepart"
)

// Downgrade returns msg with every body part that holds octets over
// 127 re-encoded as quoted-printable, for a server that does not offer
// 8BITMIME (RFC 6152 §3: convert, or return the message). Multiparts and
// message/rfc822 parts are walked to their leaves, at most maxMIMEDepth
// deep; the delimiters, preambles and headers stay as they are (an 8-bit
// header cannot be downgraded, and is sent as is, as Postfix does).
// changed is false when msg had nothing to convert.
func Downgrade(msg []byte) (out []byte, changed bool) {
	if !Has8bit(msg) {
		return msg, false
	}
	out = downgradeEntity(msg, parser().Parse(msg))
	if bytes.Equal(out, msg) {
		return msg, false // 8-bit in the header only: nothing to convert
	}
	if head, _, ok := splitEntity(out); ok && fieldValue(head, "MIME-Version") == "" {
		// The new Content-Transfer-Encoding means nothing without it.
		out = append([]byte("MIME-Version: 1.0\r\n"), out...)
	}
	return out, true
}

// maxMIMEDepth bounds the nesting walked; deeper parts go as they are.
const maxMIMEDepth = 50

// Has8bit reports whether b holds an octet over 127.
func Has8bit(b []byte) bool {
	for _, c := range b {
		if c >= 0x80 {
			return true
		}
	}
	return false
}

// parser cuts a message as a reader does (internal/mimepart: a delimiter
// line goes to the longest boundary of all the multiparts open around it),
// into the entities downgradeEntity converts.
func parser() mimepart.Parser {
	return mimepart.Parser{
		HeaderEnd: func(ent []byte) int {
			head, _, _ := splitEntity(ent)
			if head == nil {
				return len(ent)
			}
			return len(head)
		},
		Kind: func(head []byte, e *mimepart.Entity) mimepart.Kind {
			ctype, params := contentType(head)
			switch {
			case e.Depth >= maxMIMEDepth:
			case strings.HasPrefix(ctype, "multipart/") && hasBoundary(params):
				return mimepart.Kind{Multipart: true, Delimiter: mimepart.NewDelimiter(params["boundary"])}
			case ctype == "message/rfc822" || ctype == "message/global":
				return mimepart.Kind{Message: true}
			}
			return mimepart.Kind{}
		},
		MaxParts: maxParts,
	}
}

// maxParts bounds the parts of one multipart that are converted, the
// rest going as they are: ten times what a reader (Dovecot) splits of a
// whole message, and a bound on the spans a hostile message makes held.
const maxParts = 100000

// contentType is the type of an entity of header head, text/plain when
// it names none that parses.
func contentType(head []byte) (string, map[string]string) {
	ctype, params, err := mime.ParseMediaType(fieldValue(head, "Content-Type"))
	if err != nil {
		return "text/plain", nil
	}
	return ctype, params
}

// downgradeEntity converts e, an entity of msg: its header, then its body.
func downgradeEntity(msg []byte, e *mimepart.Entity) []byte {
	ent := msg[e.Start:e.End]
	head, body, ok := splitEntity(ent)
	if !ok || !Has8bit(body) || e.Depth >= maxMIMEDepth {
		return ent
	}
	ctype, params := contentType(head)
	switch {
	case strings.HasPrefix(ctype, "multipart/") && hasBoundary(params):
		return append(append([]byte{}, head...), downgradeMultipart(msg, e)...)
	case ctype == "message/rfc822" || ctype == "message/global":
		// The encapsulated message's parts are converted; its own
		// Content-Transfer-Encoding stays 7bit-compatible.
		return append(append([]byte{}, head...), downgradeEntity(msg, e.Message)...)
	}
	cte := strings.ToLower(strings.TrimSpace(fieldValue(head, "Content-Transfer-Encoding")))
	if cte == "base64" || cte == "quoted-printable" {
		return ent // already 7-bit: the octets over 127 are not in its body
	}
	var qp bytes.Buffer
	w := quotedprintable.NewWriter(&qp)
	w.Write(body)
	w.Close()
	if ct, ok := utf8Type(head, body); ok {
		head = setField(head, "Content-Type", ct)
	}
	// The line ends stay where they were: a part's last CRLF belongs
	// to the delimiter after it.
	return append(setCTE(head, "quoted-printable"), qp.Bytes()...)
}

// utf8Type is the Content-Type a text part converted to quoted-printable
// needs when it names no charset and its 8-bit body is UTF-8 (a client,
// or a script, that sent UTF-8 text without MIME fields): RFC 2045 §5.2
// makes such a part us-ascii, which the raw 8-bit octets never were but
// which a reader applies once they are encoded, showing mojibake (the
// WHATWG encoding standard, which Thunderbird and webmails follow, reads
// us-ascii as windows-1252). Saying charset=utf-8 makes the reader show
// the text the sender wrote. A body that is not UTF-8 keeps its
// Content-Type: its charset cannot be told, and us-ascii read as
// windows-1252 is the best guess a reader makes of raw 8-bit text too.
// A Content-Type that does not parse is left alone.
func utf8Type(head, body []byte) (string, bool) {
	field := fieldValue(head, "Content-Type")
	ctype, params := "text/plain", map[string]string{}
	if field != "" {
		var err error
		if ctype, params, err = mime.ParseMediaType(field); err != nil {
			return "", false
		}
	}
	if !strings.HasPrefix(ctype, "text/") || params["charset"] != "" || !utf8.Valid(body) {
		return "", false
	}
	params["charset"] = "utf-8"
	ct := mime.FormatMediaType(ctype, params)
	return ct, ct != ""
}

// downgradeMultipart converts the parts of e's body, a multipart's,
// keeping every delimiter line, the preamble and the epilogue as they are.
func downgradeMultipart(msg []byte, e *mimepart.Entity) []byte {
	var out bytes.Buffer
	pos := e.BodyStart // octets of msg written
	for _, p := range e.Parts {
		out.Write(msg[pos:p.Start])
		out.Write(downgradeEntity(msg, p))
		pos = p.End
	}
	out.Write(msg[pos:e.End])
	return out.Bytes()
}

// hasBoundary tells a multipart with a boundary parameter, even an empty
// one (which readers split at every "--" line), from one without.
func hasBoundary(params map[string]string) bool {
	_, ok := params["boundary"]
	return ok
}

// splitEntity cuts an entity after the empty line that ends its header.
func splitEntity(ent []byte) (head, body []byte, ok bool) {
	if bytes.HasPrefix(ent, []byte("\r\n")) {
		return ent[:2], ent[2:], true
	}
	i := bytes.Index(ent, []byte("\r\n\r\n"))
	if i < 0 {
		return nil, nil, false
	}
	return ent[:i+4], ent[i+4:], true
}

// fieldValue is the unfolded value of the first field name of head.
func fieldValue(head []byte, name string) string {
	for _, f := range headerFields(head) {
		if n, v, ok := strings.Cut(f, ":"); ok && strings.EqualFold(strings.TrimSpace(n), name) {
			return strings.TrimSpace(strings.NewReplacer("\r\n", "", "\t", " ").Replace(v))
		}
	}
	return ""
}

// headerFields splits head into its fields, continuation lines included.
func headerFields(head []byte) []string {
	var fields []string
	for _, l := range strings.SplitAfter(string(head), "\r\n") {
		if l == "" || l == "\r\n" {
			continue
		}
		if (l[0] == ' ' || l[0] == '\t') && len(fields) > 0 {
			fields[len(fields)-1] += l
			continue
		}
		fields = append(fields, l)
	}
	return fields
}

// setCTE returns head with its Content-Transfer-Encoding fields replaced
// by one saying cte.
func setCTE(head []byte, cte string) []byte {
	return setField(head, "Content-Transfer-Encoding", cte)
}

// setField returns head with its fields called name replaced by one
// saying value, at the end of the header.
func setField(head []byte, name, value string) []byte {
	var out bytes.Buffer
	for _, f := range headerFields(head) {
		if n, _, ok := strings.Cut(f, ":"); ok && strings.EqualFold(strings.TrimSpace(n), name) {
			continue
		}
		out.WriteString(f)
	}
	out.WriteString(name + ": " + value + "\r\n\r\n")
	return out.Bytes()
}
