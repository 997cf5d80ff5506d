package milter

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
)

// field is one header field. raw is its bytes as they will be written,
// CRLF-terminated, folding included.
type field struct {
	name string // as written
	raw  []byte
}

// value is the field's value as the milter protocol carries it: after the
// colon (a leading space removed unless leading says to keep it), folding
// as LF (Postfix sends CRLF as LF inside header values), no final line end.
func (f *field) value(leading bool) string {
	v := f.raw[len(f.name)+1:]
	v = bytes.TrimSuffix(v, []byte("\r\n"))
	if !leading && len(v) > 0 && (v[0] == ' ' || v[0] == '\t') {
		v = v[1:]
	}
	return strings.ReplaceAll(string(v), "\r\n", "\n")
}

// message is a message being filtered: header fields in memory, and the
// body, read in place, starting right after the blank line (sep says
// whether there was one). replaced is the body a milter sent, when one did.
type message struct {
	fields   []field
	sep      bool
	body     Content
	replaced *bodyBuffer
}

// maxHeaderBytes bounds the header section held in memory, as smtp's own
// scan of it: what follows a longer one is body for the milters (Postfix's
// cleanup also ends the header at header_size_limit). The bytes stored
// are the same either way.
const maxHeaderBytes = 256 << 10

// parseMessage reads the header of a CRLF message (as smtp checked it: no
// bare CR or LF). The header ends at the first empty line, or at the first
// line that is neither a field nor a continuation: that line and what
// follows are the body, as Postfix's cleanup treats them. Only the header
// is read.
func parseMessage(msg Content) (*message, error) {
	m := &message{}
	size := msg.Size()
	br := bufio.NewReaderSize(io.NewSectionReader(msg, 0, min(size, maxHeaderBytes)), 4096)
	var off int64 // bytes of msg in m.fields
	bodyFrom := func(o int64) (*message, error) {
		m.body = io.NewSectionReader(msg, o, size-o)
		return m, nil
	}
	var line []byte
	for {
		line = line[:0]
		eof := false
		for {
			frag, err := br.ReadSlice('\n')
			line = append(line, frag...)
			if errors.Is(err, bufio.ErrBufferFull) {
				continue
			}
			if errors.Is(err, io.EOF) {
				eof = true
				break
			}
			if err != nil {
				return nil, &localError{fmt.Errorf("reading the message header: %w", err)}
			}
			if bytes.HasSuffix(line, []byte("\r\n")) {
				break
			}
		}
		if eof && off+int64(len(line)) < size {
			// The header goes on past maxHeaderBytes: the rest is body.
			return bodyFrom(off)
		}
		switch {
		case len(line) == 0:
			return bodyFrom(off)
		case string(line) == "\r\n":
			m.sep = true
			return bodyFrom(off + 2)
		case (line[0] == ' ' || line[0] == '\t') && len(m.fields) > 0:
			f := &m.fields[len(m.fields)-1]
			f.raw = append(f.raw, line...)
		default:
			name, ok := fieldName(line)
			if !ok {
				return bodyFrom(off)
			}
			m.fields = append(m.fields, field{name: name, raw: bytes.Clone(line)})
		}
		off += int64(len(line))
		if eof {
			// A last line without CRLF is a field too; give it one.
			f := &m.fields[len(m.fields)-1]
			if !bytes.HasSuffix(f.raw, []byte("\r\n")) {
				f.raw = append(f.raw, '\r', '\n')
			}
			return bodyFrom(size)
		}
	}
}

// fieldName returns the name of a header line "Name: value", RFC 5322
// ftext (printable ASCII but colon), with no space before the colon.
func fieldName(line []byte) (string, bool) {
	i := bytes.IndexByte(line, ':')
	if i <= 0 {
		return "", false
	}
	if !validName(string(line[:i])) {
		return "", false
	}
	return string(line[:i]), true
}

// maxNameLen bounds a header name from a milter; maxValueLen its value.
const (
	maxNameLen  = 128
	maxValueLen = 64 << 10
)

func validName(n string) bool {
	if n == "" || len(n) > maxNameLen {
		return false
	}
	for i := 0; i < len(n); i++ {
		if c := n[i]; c <= ' ' || c >= 0x7f || c == ':' {
			return false
		}
	}
	return true
}

// newField builds a field a milter asked for. The value comes as the
// protocol carries it (LF or CRLF folding); every line after the first
// must begin with white space (else it would start a new field, which the
// milter has no right to do in one value) and no line may carry a CR, LF
// or NUL of its own. It reports false for a field it refuses.
func newField(name, value string, leading bool) (field, bool) {
	if !validName(name) || len(value) > maxValueLen {
		return field{}, false
	}
	value = strings.ReplaceAll(value, "\r\n", "\n")
	lines := strings.Split(value, "\n")
	var b bytes.Buffer
	b.WriteString(name)
	b.WriteByte(':')
	for i, l := range lines {
		if strings.ContainsAny(l, "\r\x00") {
			return field{}, false
		}
		if i > 0 {
			if l == "" || (l[0] != ' ' && l[0] != '\t') {
				return field{}, false
			}
			b.WriteString("\r\n")
		} else if !leading && l != "" {
			b.WriteByte(' ')
		}
		b.WriteString(l)
	}
	b.WriteString("\r\n")
	return field{name: name, raw: b.Bytes()}, true
}

// header is the header section as it is to be written, the empty line
// included when there is one.
func (m *message) header() []byte {
	n := 2
	for _, f := range m.fields {
		n += len(f.raw)
	}
	out := make([]byte, 0, n)
	for _, f := range m.fields {
		out = append(out, f.raw...)
	}
	if m.sep {
		out = append(out, '\r', '\n')
	}
	return out
}

// headerSize is the size of header(), the blank line included.
func (m *message) headerSize() int64 {
	var n int64
	for _, f := range m.fields {
		n += int64(len(f.raw))
	}
	if m.sep {
		n += 2
	}
	return n
}

// replaceBody makes b the body (a milter's SMFIR_REPLBODY), freeing the
// body an earlier milter sent.
func (m *message) replaceBody(b *bodyBuffer) {
	m.replaced.close()
	m.replaced = b
	m.body = b.content()
	if !m.sep && m.body.Size() > 0 {
		m.sep = true
	}
}

// add appends a field at the end of the header.
func (m *message) add(f field) { m.fields = append(m.fields, f) }

// insert puts f after the idx-th field (0: first of all).
func (m *message) insert(idx int, f field) {
	idx = min(max(idx, 0), len(m.fields))
	m.fields = append(m.fields, field{})
	copy(m.fields[idx+1:], m.fields[idx:])
	m.fields[idx] = f
}

// change replaces the idx-th (from 1) field called name (case-insensitive),
// or deletes it when f is nil. A change of a field that is not there adds
// it, as Postfix does; a deletion of one that is not there does nothing.
func (m *message) change(name string, idx int, f *field) {
	n := 0
	for i := range m.fields {
		if !strings.EqualFold(m.fields[i].name, name) {
			continue
		}
		n++
		if n != idx && !(idx == 0 && n == 1) {
			continue
		}
		if f == nil {
			m.fields = append(m.fields[:i], m.fields[i+1:]...)
		} else {
			m.fields[i] = *f
		}
		return
	}
	if f != nil {
		m.add(*f)
	}
}
