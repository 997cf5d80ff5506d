package imap

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"
)

// An APPEND message that cannot go from the connection to the folder's
// tmp/ as it comes is spooled to a file first, never held in memory: a
// literal8, whose binary parts are encoded once its structure is known,
// and a CATENATE, built part by part. The file is in the user's maildir
// tmp/ (the user's file system and quota, not /tmp, which may be memory)
// and unlinked at once: nothing to clean up, whatever happens. QA: ten
// literal8 APPENDs of 60 MB held 1.2 GiB, ten CATENATEs 595 MiB.

// spool creates an unlinked temporary file in the maildir's tmp/, through
// an os.Root, so that a tmp/ that is a symbolic link leads nowhere else.
func (s *session) spool() (*os.File, error) {
	root, err := os.OpenRoot(s.store.Path())
	if err != nil {
		return nil, fmt.Errorf("imap: spool: %w", err)
	}
	defer root.Close()
	name := "tmp/courriel-spool." + s.id + "." + newID()
	f, err := root.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("imap: spool: %w", err)
	}
	if err := root.Remove(name); err != nil {
		f.Close()
		return nil, fmt.Errorf("imap: spool: %w", err)
	}
	return f, nil
}

// binaryEncoded is encodeBinaryParts for a message of size bytes in a
// file (a spooled literal8): the same bytes, read from the file as they
// go out, the binary parts base64-encoded on the way. hold is asked for
// memory when the structure is beyond the scanner's bounds and the
// message must be encoded in memory after all.
func binaryEncoded(f *os.File, size int64, hold func(n int64) error) (io.Reader, error) {
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, fmt.Errorf("imap: spool: %w", err)
	}
	root, _, err := scanMIME(f, false) // the bytes as they came, as encodeBinaryParts takes them
	if errors.Is(err, errScanBounds) {
		// The literal, and its encoded copy a third larger.
		if err := hold(3 * size); err != nil {
			return nil, err
		}
		raw := make([]byte, size)
		if _, err := f.ReadAt(raw, 0); err != nil {
			return nil, fmt.Errorf("imap: spool: %w", err)
		}
		return bytes.NewReader(encodeBinaryParts(raw)), nil
	}
	if err != nil {
		return nil, err
	}
	var segs []encSeg
	var pos int64 // bytes of the file already in segs
	root.eachLeaf(func(p *mpart) {
		if !p.storedBase64() {
			return
		}
		s := p.span
		segs = append(segs,
			encSeg{off: pos, n: s.start - pos},
			encSeg{off: s.start, n: s.headerLen(), kind: segHeader},
			encSeg{off: s.bodyStart, n: s.bodyLen(), kind: segBase64})
		pos = s.end
	})
	segs = append(segs, encSeg{off: pos, n: size - pos})
	return &encReader{f: f, segs: segs}, nil
}

// encSeg is a piece of an encoded message: a range of the file as it is,
// a header to give Content-Transfer-Encoding: base64, or a body to encode.
type encSeg struct {
	off, n int64
	kind   int
}

const (
	segCopy = iota
	segHeader
	segBase64
)

// encReader reads the segments one after the other, each made when it is
// reached: one header in memory at a time.
type encReader struct {
	f    *os.File
	segs []encSeg
	cur  io.Reader
}

func (r *encReader) Read(p []byte) (int, error) {
	for {
		if r.cur == nil {
			if len(r.segs) == 0 {
				return 0, io.EOF
			}
			sg := r.segs[0]
			r.segs = r.segs[1:]
			src := io.NewSectionReader(r.f, sg.off, sg.n)
			switch sg.kind {
			case segCopy:
				r.cur = src
			case segHeader:
				h := make([]byte, sg.n)
				if _, err := io.ReadFull(src, h); err != nil {
					return 0, fmt.Errorf("imap: spool: %w", err)
				}
				r.cur = bytes.NewReader(withCTE(h, "base64"))
			case segBase64:
				r.cur = &base64Lines{src: src}
			}
		}
		n, err := r.cur.Read(p)
		if errors.Is(err, io.EOF) {
			r.cur = nil
			if n == 0 {
				continue
			}
			err = nil
		}
		return n, err
	}
}

// base64Lines encodes src in base64 lines of 76 characters, each ended
// by CRLF (the last one shorter), as encodeBinaryParts writes them.
type base64Lines struct {
	src  io.Reader
	in   [57 * 64]byte
	out  []byte
	buf  [78 * 64]byte
	done bool
}

func (b *base64Lines) Read(p []byte) (int, error) {
	for len(b.out) == 0 {
		if b.done {
			return 0, io.EOF
		}
		n, err := io.ReadFull(b.src, b.in[:])
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			b.done = true
		} else if err != nil {
			return 0, err
		}
		out := b.buf[:0]
		for in := b.in[:n]; len(in) > 0; {
			k := min(len(in), 57)
			out = base64.StdEncoding.AppendEncode(out, in[:k])
			out = append(out, '\r', '\n')
			in = in[k:]
		}
		b.out = out
	}
	n := copy(p, b.out)
	b.out = b.out[n:]
	return n, nil
}
