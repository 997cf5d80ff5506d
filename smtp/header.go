package smtp

import (
	"bufio"
	"bytes"
	"io"
	"strings"

	"courriel/delivery"
)

// Bounds of scanHeader: a header section larger than maxHeaderScan is read
// no further (Postfix's header_size_limit is 100 KiB: beyond it, lines are
// body), and a field's value is kept up to maxFieldScan octets.
const (
	maxHeaderScan = 256 << 10
	maxFieldScan  = 4 << 10
	maxLoopAddrs  = 200 // Delivered-To and "for <...>" values kept
)

// hopLimit is Postfix's hopcount_limit: a message that already has more
// Received: fields than this is refused with 554 5.4.6 (RFC 5321 §6.3).
const hopLimit = 50

// headerInfo is what the policy needs of a message's header section.
type headerInfo struct {
	received  int  // Received: fields
	messageID bool // Message-ID: present
	date      bool
	from      bool
	// seen holds, lower-cased, the Delivered-To: addresses and the "for
	// <addr>" of Received: fields this host wrote (by <host> (courriel)):
	// the recipients this message already reached once.
	seen map[string]bool
	// bodyAt is where the empty line that separates header and body is
	// missing (RFC 5322 §2.1: it is not optional): at 0 when the message
	// has no header field at all, at a line that is no field, or at the
	// end of a message that is all header. -1 when the separator is there,
	// or the header is too long to tell.
	bodyAt int64
	// drops are the [start, end) ranges of the fields nobody downstream
	// may see (dropFields), in order.
	drops [][2]int64
	// utf8: some field holds an octet over 127 (RFC 6532 UTF-8).
	utf8 bool
}

// dropFields are removed from every message, as Postfix's default
// message_drop_headers removes them: a Bcc: would tell every recipient
// who was copied in secret, and Return-Path: and Content-Length: are the
// delivery's to write, never the sender's.
var dropFields = [][]byte{[]byte("Bcc"), []byte("Resent-Bcc"), []byte("Return-Path"), []byte("Content-Length")}

// maxDrops bounds the fields removed from one message (the rest stay).
const maxDrops = 1000

// scanHeader reads the header section of c (up to the first empty line,
// at most maxHeaderScan octets) and unfolds its fields.
func scanHeader(c delivery.Content, hostname string) headerInfo {
	return scanHeaderWith(c, hostname, bufio.NewReaderSize(nil, headerBuffer))
}

// headerBuffer is the buffer scanHeader reads the header through.
const headerBuffer = 4096

// scanHeaderWith is scanHeader reading through br (reset here), a
// Server's pooled one.
func scanHeaderWith(c delivery.Content, hostname string, br *bufio.Reader) headerInfo {
	h := headerInfo{seen: map[string]bool{}, bodyAt: -1}
	br.Reset(io.NewSectionReader(c, 0, min(c.Size(), maxHeaderScan)))
	var field []byte // the current field, unfolded, bounded
	var start int64  // where it starts in c
	flush := func(end int64) {
		if len(field) > 0 && h.field(field, hostname) && len(h.drops) < maxDrops {
			h.drops = append(h.drops, [2]int64{start, end})
		}
		field = field[:0]
	}
	var off int64 // where line starts in c
	for {
		line, n, err := readLineStart(br, maxFieldScan)
		if len(line) == 0 && err != nil {
			if c.Size() <= maxHeaderScan {
				h.bodyAt = c.Size() // all header, no empty line
			}
			break
		}
		if len(line) == 0 { // the empty line: the body starts
			break
		}
		cont := line[0] == ' ' || line[0] == '\t'
		if (cont && len(field) == 0) || (!cont && !isFieldLine(line)) {
			h.bodyAt = off
			break // not a header line: the body starts here (RFC 5322 §2.2)
		}
		lineStart := off
		off += int64(n)
		if !h.utf8 {
			h.utf8 = hasHigh(line)
		}
		if cont {
			// Unfolded with one space for the fold's white space, so
			// that "id X\r\n\tfor <a>" reads "id X for <a>".
			line = append([]byte{' '}, bytes.TrimLeft(line, " \t")...)
			if room := maxFieldScan - len(field); room > 0 {
				field = append(field, line[:min(len(line), room)]...)
			}
		} else {
			flush(lineStart)
			start = lineStart
			field = append(field, line...)
		}
		if err != nil {
			if c.Size() <= maxHeaderScan {
				h.bodyAt = c.Size()
			}
			break
		}
	}
	flush(off)
	return h
}

func hasHigh(b []byte) bool {
	for _, c := range b {
		if c >= 0x80 {
			return true
		}
	}
	return false
}

// isFieldLine: the line starts with a field name (printable ASCII but
// ':', RFC 5322 §3.6.8) and a colon.
func isFieldLine(l []byte) bool {
	for i, c := range l {
		switch {
		case c == ':':
			return i > 0
		case c < 33 || c > 126:
			// "Name :" (white space before the colon) is obsolete syntax
			// (RFC 5322 §4.5.3) still met in the wild.
			return i > 0 && bytes.HasPrefix(bytes.TrimLeft(l[i:], " \t"), []byte(":"))
		}
	}
	return false
}

// readLineStart returns up to n octets of the next line without its line
// ending, skipping the rest of a longer line. A line that fits br's buffer
// is returned in it, valid until br's next read.
func readLineStart(br *bufio.Reader, n int) (line []byte, read int, err error) {
	for {
		frag, err := br.ReadSlice('\n')
		read += len(frag)
		if line == nil && err != bufio.ErrBufferFull {
			return bytes.TrimRight(frag[:min(len(frag), n)], "\r\n"), read, err
		}
		if room := n - len(line); room > 0 {
			line = append(line, frag[:min(len(frag), room)]...)
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		line = bytes.TrimRight(line, "\r\n")
		return line, read, err
	}
}

// field records one unfolded header field, and says whether it is one of
// dropFields.
func (h *headerInfo) field(f []byte, hostname string) (drop bool) {
	colon := bytes.IndexByte(f, ':')
	if colon <= 0 {
		return false
	}
	// The name and value stay bytes: only the two fields whose values are
	// kept become strings (every message has a handful of fields).
	name := bytes.TrimRight(f[:colon], " \t")
	value := bytes.TrimSpace(f[colon+1:])
	switch {
	case bytes.EqualFold(name, []byte("Received")):
		h.received++
		if a, ok := ownReceivedFor(string(value), hostname); ok {
			h.addSeen(a)
		}
	case bytes.EqualFold(name, []byte("Delivered-To")):
		h.addSeen(strings.Trim(string(value), "<>"))
	case bytes.EqualFold(name, []byte("Message-ID")):
		h.messageID = true
	case bytes.EqualFold(name, []byte("Date")):
		h.date = true
	case bytes.EqualFold(name, []byte("From")):
		h.from = true
	}
	for _, d := range dropFields {
		if bytes.EqualFold(name, d) {
			return true
		}
	}
	return false
}

func (h *headerInfo) addSeen(addr string) {
	if addr != "" && len(h.seen) < maxLoopAddrs {
		h.seen[dedupeKey(addr)] = true
	}
}

// ownReceivedFor finds the recipient in a Received: field this host wrote
// (received: "by <host> (courriel) with ... for <addr>;").
func ownReceivedFor(v, hostname string) (string, bool) {
	i := strings.Index(v, "by "+hostname+" (courriel) ")
	if i < 0 {
		return "", false
	}
	rest := v[i:]
	if semi := strings.LastIndexByte(rest, ';'); semi >= 0 {
		rest = rest[:semi]
	}
	j := strings.Index(rest, " for <")
	if j < 0 {
		return "", false
	}
	addr, _, ok := strings.Cut(rest[j+len(" for <"):], ">")
	return addr, ok
}
