package delivery

import (
	"bufio"
	"bytes"
	"errors"
	"io"
)

// copyParts are the four pieces of one stored copy, in file order. The
// prefix lines are built here from validated addresses; header and body are
// the message as received, converted from CRLF to LF while writing (what
// Postfix virtual(8) and Dovecot's LDA store).
type copyParts struct {
	prefix []byte // "Return-Path: <from>\nDelivered-To: addr\n", already LF
	header []byte // trace header lines, CRLF (or LF) terminated
	body   []byte // the message, CRLF line endings
}

// errBadAddress: an envelope address cannot be written into a header line.
var errBadAddress = errors.New("address contains control characters")

// validAddress refuses what would break or inject header lines. go-smtp
// already refuses CR/LF in addresses, and the directory's maildrop is
// normally clean, but both are untrusted here: a bare CR or LF would let the
// sender append headers above the trace fields.
func validAddress(a string) error {
	for i := 0; i < len(a); i++ {
		if c := a[i]; c < ' ' || c == 0x7f {
			return errBadAddress
		}
	}
	return nil
}

// buildPrefix returns the Return-Path and Delivered-To lines (RFC 5321
// §4.4: the final delivery adds Return-Path; "<>" for the null sender).
func buildPrefix(from, to string) []byte {
	b := make([]byte, 0, 40+len(from)+len(to))
	b = append(b, "Return-Path: <"...)
	b = append(b, from...)
	b = append(b, ">\nDelivered-To: "...)
	b = append(b, to...)
	b = append(b, '\n')
	return b
}

// lfSize is the length of p once every CRLF is written as LF.
func lfSize(p []byte) int64 {
	return int64(len(p) - bytes.Count(p, []byte("\r\n")))
}

// sizes returns the size on disk (LF) and the size with every line ending
// as CRLF (Dovecot's W=, the IMAP RFC822.SIZE, RFC 3501 §6.4.5).
func (c *copyParts) sizes() (size, wsize int64) {
	size = int64(len(c.prefix)) + lfSize(c.header) + lfSize(c.body)
	// CRLF→LF keeps one '\n' per line, and a bare LF already counts once:
	// every '\n' on disk is one CRLF for an IMAP client.
	lines := int64(bytes.Count(c.prefix, []byte{'\n'}) +
		bytes.Count(c.header, []byte{'\n'}) + bytes.Count(c.body, []byte{'\n'}))
	return size, size + lines
}

// writeTo writes the copy, size bytes once converted (sizes), to w with LF
// line endings. A lone CR (not before LF) is kept as is. The buffer fits the
// copy up to 64 KiB: one write(2) for a typical message, and no 64 KiB
// allocation to clear for a 4 KiB one.
func (c *copyParts) writeTo(w io.Writer, size int64) error {
	bw := bufio.NewWriterSize(w, int(min(max(size, 512), 64<<10)))
	if _, err := bw.Write(c.prefix); err != nil {
		return err
	}
	if err := writeLF(bw, c.header); err != nil {
		return err
	}
	if err := writeLF(bw, c.body); err != nil {
		return err
	}
	return bw.Flush()
}

// writeLF writes p to w with every CRLF replaced by LF.
func writeLF(w *bufio.Writer, p []byte) error {
	for len(p) > 0 {
		i := bytes.Index(p, []byte("\r\n"))
		if i < 0 {
			_, err := w.Write(p)
			return err
		}
		if _, err := w.Write(p[:i]); err != nil {
			return err
		}
		if err := w.WriteByte('\n'); err != nil {
			return err
		}
		p = p[i+2:]
	}
	return nil
}
