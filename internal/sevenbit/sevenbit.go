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
	out = downgradeEntity(msg, 0)
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

// downgradeEntity converts one entity: its header, then its body.
func downgradeEntity(ent []byte, depth int) []byte {
	head, body, ok := splitEntity(ent)
	if !ok || !Has8bit(body) || depth >= maxMIMEDepth {
		return ent
	}
	ctype, params, err := mime.ParseMediaType(fieldValue(head, "Content-Type"))
	if err != nil {
		ctype = "text/plain"
	}
	switch {
	case strings.HasPrefix(ctype, "multipart/") && params["boundary"] != "":
		return append(append([]byte{}, head...), downgradeMultipart(body, params["boundary"], depth)...)
	case ctype == "message/rfc822" || ctype == "message/global":
		// The encapsulated message's parts are converted; its own
		// Content-Transfer-Encoding stays 7bit-compatible.
		return append(append([]byte{}, head...), downgradeEntity(body, depth+1)...)
	}
	cte := strings.ToLower(strings.TrimSpace(fieldValue(head, "Content-Transfer-Encoding")))
	if cte == "base64" || cte == "quoted-printable" {
		return ent // already 7-bit: the octets over 127 are not in its body
	}
	var qp bytes.Buffer
	w := quotedprintable.NewWriter(&qp)
	w.Write(body)
	w.Close()
	// The line ends stay where they were: a part's last CRLF belongs
	// to the delimiter after it.
	return append(setCTE(head, "quoted-printable"), qp.Bytes()...)
}

// downgradeMultipart converts the parts between the delimiter lines of
// boundary, keeping every delimiter, the preamble and the epilogue.
func downgradeMultipart(body []byte, boundary string, depth int) []byte {
	delim := []byte("--" + boundary)
	var out bytes.Buffer
	partStart := -1 // where the current part begins, after its delimiter line
	pos := 0
	for pos < len(body) {
		end := bytes.IndexByte(body[pos:], '\n')
		next := len(body)
		if end >= 0 {
			next = pos + end + 1
		}
		line := bytes.TrimRight(body[pos:next], "\r\n")
		if bytes.HasPrefix(line, delim) {
			tail := bytes.TrimRight(line[len(delim):], " \t")
			if len(tail) == 0 || bytes.Equal(tail, []byte("--")) {
				if partStart >= 0 {
					// The CRLF before the delimiter belongs to it.
					partEnd := pos
					if partEnd >= partStart+2 && body[partEnd-2] == '\r' && body[partEnd-1] == '\n' {
						partEnd -= 2
					}
					out.Write(downgradeEntity(body[partStart:partEnd], depth+1))
					out.Write(body[partEnd:next])
				} else {
					out.Write(body[:next]) // the preamble and the first delimiter
				}
				if bytes.Equal(tail, []byte("--")) {
					out.Write(body[next:]) // the epilogue
					return out.Bytes()
				}
				partStart = next
			}
		}
		pos = next
	}
	if partStart >= 0 {
		out.Write(downgradeEntity(body[partStart:], depth+1)) // no close delimiter
	} else {
		out.Write(body)
	}
	return out.Bytes()
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
	var out bytes.Buffer
	for _, f := range headerFields(head) {
		if n, _, ok := strings.Cut(f, ":"); ok && strings.EqualFold(strings.TrimSpace(n), "Content-Transfer-Encoding") {
			continue
		}
		out.WriteString(f)
	}
	out.WriteString("Content-Transfer-Encoding: " + cte + "\r\n\r\n")
	return out.Bytes()
}
