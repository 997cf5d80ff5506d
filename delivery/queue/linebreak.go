package queue

import (
	"bytes"
	"io"
)

// smtpLineLimit is the longest line sent in DATA, CRLF not counted: RFC
// 5321 §4.5.3.1.6's 1,000 octets with the CRLF, Postfix's
// smtp_line_length_limit. The SMTP server takes longer lines (as Postfix
// takes them) and stores them whole; a copy that leaves has them broken,
// as Postfix's smtp(8) breaks them, since a server that holds to the
// limit refuses the message, or cuts the lines itself; but not in a
// signed message (carriesSignature).
const smtpLineLimit = 998

// signaturePeek is how much of a message's top carriesSignature reads:
// signatures are put on top of the header, above what the hops after
// them add.
const signaturePeek = 16 << 10

// carriesSignature says whether the header that top begins holds a DKIM
// or ARC message signature. Such a message goes with its lines whole,
// where Postfix breaks them: a broken line changes what the signature
// covers (relaxed canonicalization joins no lines), so the receiver
// finds it invalid, DMARC fails for the author's domain (for ours when
// we signed, for the original author's on a forward) and a p=reject
// policy refuses the message, where few servers refuse a long line.
func carriesSignature(top []byte) bool {
	for len(top) > 0 {
		line, rest, _ := bytes.Cut(top, []byte("\n"))
		if len(bytes.TrimRight(line, "\r")) == 0 {
			return false // the end of the header
		}
		name, _, ok := bytes.Cut(line, []byte(":"))
		if ok && (bytes.EqualFold(bytes.TrimRight(name, " \t"), []byte("DKIM-Signature")) ||
			bytes.EqualFold(bytes.TrimRight(name, " \t"), []byte("ARC-Message-Signature"))) {
			return true
		}
		top = rest
	}
	return false
}

// lineBreaker writes to w what is written to it, with every line longer
// than max octets broken by CRLF SPACE, as Postfix's smtp_text_out: the
// space makes the rest a continuation in a header and changes least of a
// body's MIME structure (a line that began with "--" stays one line).
type lineBreaker struct {
	w     io.Writer
	max   int
	col   int    // octets of the current line written
	cr    bool   // a CR was read and not written: it may end the line
	out   []byte // reused output buffer
	broke bool   // a line was broken
}

func (b *lineBreaker) Write(p []byte) (int, error) {
	b.out = b.out[:0]
	for _, c := range p {
		if b.cr {
			b.cr = false
			if c == '\n' {
				b.out = append(b.out, '\r', '\n')
				b.col = 0
				continue
			}
			b.put('\r') // a CR alone is content
		}
		switch c {
		case '\r':
			b.cr = true
		case '\n':
			b.out = append(b.out, '\n')
			b.col = 0
		default:
			b.put(c)
		}
	}
	if _, err := b.w.Write(b.out); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (b *lineBreaker) put(c byte) {
	if b.col == b.max {
		b.out = append(b.out, '\r', '\n', ' ')
		b.col = 1
		b.broke = true
	}
	b.out = append(b.out, c)
	b.col++
}

// Flush writes a CR held back at the end of what was written.
func (b *lineBreaker) Flush() error {
	if !b.cr {
		return nil
	}
	b.cr = false
	b.out = append(b.out[:0], '\r')
	_, err := b.w.Write(b.out)
	return err
}
