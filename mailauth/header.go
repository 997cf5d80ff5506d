package mailauth

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net/mail"
	"strings"
)

// maxHeaderBytes bounds the header block read to find From and our own
// Authentication-Results: past it the message is treated as having no
// more fields (signing and verification still read the whole message).
const maxHeaderBytes = 1 << 20

// field is one header field as received: Raw has its folded lines and the
// final CRLF.
type field struct {
	Name string // as written, without the colon
	Raw  []byte
}

// readHeader reads the header block of msg: its fields and where the last
// one ends (the empty line, if any, and the body follow). Lines may end in
// LF alone (dkimpy and Go's mail writers differ).
func readHeader(msg io.Reader) ([]field, int64, error) {
	br := bufio.NewReaderSize(io.LimitReader(msg, maxHeaderBytes), 4<<10)
	var fields []field
	var n int64
	for {
		line, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			// A line over 4 KiB: take it whole.
			rest, err2 := br.ReadBytes('\n')
			line = append(append([]byte(nil), line...), rest...)
			err = err2
		}
		if len(line) == 0 || (err != nil && !errors.Is(err, io.EOF)) {
			return fields, n, nil
		}
		if bytes.Equal(line, []byte("\r\n")) || bytes.Equal(line, []byte("\n")) {
			return fields, n, nil
		}
		n += int64(len(line))
		if (line[0] == ' ' || line[0] == '\t') && len(fields) > 0 {
			f := &fields[len(fields)-1]
			f.Raw = append(f.Raw, line...)
		} else {
			name, _, ok := bytes.Cut(line, []byte(":"))
			if !ok { // not a header field: the body starts without an empty line
				return fields, n - int64(len(line)), nil
			}
			fields = append(fields, field{Name: string(bytes.TrimRight(name, " \t")), Raw: append([]byte(nil), line...)})
		}
		if err != nil {
			return fields, n, nil
		}
	}
}

// value is the unfolded value of f.
func (f field) value() string {
	_, v, _ := strings.Cut(string(f.Raw), ":")
	v = strings.NewReplacer("\r\n", "", "\n", "").Replace(v)
	return strings.TrimSpace(v)
}

// fromDomain is the domain of the message's author (RFC 5322.From) for
// DMARC and for choosing a signing key: "" unless there is exactly one From
// field with exactly one address (RFC 7489 §6.6.1 lets a receiver give up on
// the others).
func fromDomain(fields []field) string {
	var from []field
	for _, f := range fields {
		if strings.EqualFold(f.Name, "From") {
			from = append(from, f)
		}
	}
	if len(from) != 1 {
		return ""
	}
	addrs, err := mail.ParseAddressList(from[0].value())
	if err != nil || len(addrs) != 1 {
		return ""
	}
	_, d, ok := strings.Cut(addrs[0].Address, "@")
	if !ok {
		return ""
	}
	d = strings.ToLower(strings.TrimSuffix(d, "."))
	if !validDomain(d) {
		return ""
	}
	return d
}
