package mailauth

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net/mail"
	"strings"

	"courriel/internal/envaddr"
)

// maxHeaderBytes bounds the header block read to find From and our own
// Authentication-Results. A header larger than that is neither verified
// nor signed: go-msgauth keeps every field of the header in memory, and a
// 10 MB message of one-word fields cost about 75 MiB, for any client of
// port 25 (Postfix keeps 100 KiB, header_size_limit).
const maxHeaderBytes = 1 << 20

// maxHeaderFields bounds the fields of a header read whole, for the same
// reason: a megabyte of "X: y" lines is 130,000 fields. Real mail has a
// few dozen, a long-travelled list message a few hundred.
const maxHeaderFields = 5000

// field is one header field as received: Raw has its folded lines and the
// final CRLF.
type field struct {
	Name string // as written, without the colon
	Raw  []byte
}

// readHeader reads the header block of msg: its fields and where the last
// one ends (the empty line, if any, and the body follow). Lines may end in
// LF alone (dkimpy and Go's mail writers differ). whole is false when the
// header goes on past maxHeaderBytes or maxHeaderFields: fields are then
// the first ones.
func readHeader(msg io.Reader) (fields []field, end int64, whole bool, err error) {
	lr := &io.LimitedReader{R: msg, N: maxHeaderBytes + 1}
	fields, end, atEOF, full := readFields(bufio.NewReaderSize(lr, 4<<10))
	// The reader reads ahead into the body: only a header that ran into
	// the end of what was read was cut by the limit.
	return fields, end, !full && (!atEOF || lr.N > 0), nil
}

// readFields is readHeader's loop; atEOF says that the last line read
// ended at the end of br, full that it stopped at maxHeaderFields with
// more to come (end is then where the next field starts).
func readFields(br *bufio.Reader) (fields []field, n int64, atEOF, full bool) {
	for {
		line, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			// A line over 4 KiB: take it whole.
			rest, err2 := br.ReadBytes('\n')
			line = append(append([]byte(nil), line...), rest...)
			err = err2
		}
		atEOF = err != nil
		if len(line) == 0 || (err != nil && !errors.Is(err, io.EOF)) {
			return fields, n, atEOF, false
		}
		if bytes.Equal(line, []byte("\r\n")) || bytes.Equal(line, []byte("\n")) {
			return fields, n, atEOF, false
		}
		n += int64(len(line))
		if (line[0] == ' ' || line[0] == '\t') && len(fields) > 0 {
			f := &fields[len(fields)-1]
			f.Raw = append(f.Raw, line...)
		} else {
			name, _, ok := bytes.Cut(line, []byte(":"))
			if !ok { // not a header field: the body starts without an empty line
				return fields, n - int64(len(line)), atEOF, false
			}
			if len(fields) == maxHeaderFields {
				return fields, n - int64(len(line)), atEOF, true
			}
			fields = append(fields, field{Name: string(bytes.TrimRight(name, " \t")), Raw: append([]byte(nil), line...)})
		}
		if err != nil {
			return fields, n, atEOF, false
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
	// net/mail gives the internal form: "x@y"@example.org is
	// x@y@example.org.
	_, d, ok := envaddr.Split(addrs[0].Address)
	if !ok {
		return ""
	}
	d = strings.ToLower(strings.TrimSuffix(d, "."))
	if !validDomain(d) {
		return ""
	}
	return d
}
