package imap

import (
	"compress/flate"
	"io"
	"strings"

	"courriel/imap/wire/inflate"
)

// COMPRESS=DEFLATE (RFC 4978): after the tagged OK, both directions are
// raw DEFLATE streams (RFC 1951). The session's reader and writer go
// through them (sessionReader, sessionWriter); each write of the
// response writer ends with a sync flush, so the client sees every
// response at once.

// compressLevel trades CPU for bytes. zlib's default level, as Dovecot
// uses: BestSpeed sent 18 % more than Dovecot for a full-folder FLAGS
// fetch, the default 6 % less (BenchmarkCompressBytes). The compressor's
// memory is dropped while idle (sleep), so the level costs an idle
// connection nothing (TestIdleCompressedConnMemory).
const compressLevel = flate.DefaultCompression

// deflater is the session's compression state.
type deflater struct {
	// in inflates the client's input. It is our own (imap/wire/inflate):
	// compress/flate's keeps a block's output until the next block comes,
	// which stalls a client that flushes with Z_PARTIAL_FLUSH (mbsync),
	// and it keeps a read deadline's error for good, which IDLE's
	// wake-ups would turn into a dead stream.
	in *inflate.Reader
	// out compresses toward the client into buf; nil while idle (sleep),
	// when it is made again from outHist, the last 32 KiB sent, which the
	// client's inflater holds as its window: a compressor costs over 1 MiB.
	out     *flate.Writer
	outHist []byte
	buf     deflateBuf
}

// deflateBuf holds what the compressor writes until the flush that ends
// a response, which goes to dst in one write. compress/flate writes a
// block in pieces of some 240 bytes, and the sync flush's empty stored
// block (00 00 ff ff) on its own: straight onto a TLS connection each
// piece was a record, and the marker's, alone after "+ idling", left
// mutt blocked on a socket that was readable but inflated to nothing.
// A long response goes out every deflateSpill bytes (a TLS record's
// worth), without a flush in between.
type deflateBuf struct {
	b   []byte
	dst io.Writer
	err error // of a spill; the flush returns it
}

// deflateSpill is how much compressed output waits for the flush before
// it is written anyway: a full TLS record.
const deflateSpill = 16 << 10

func (d *deflateBuf) Write(p []byte) (int, error) {
	if d.err != nil {
		return 0, d.err
	}
	d.b = append(d.b, p...)
	if len(d.b) >= deflateSpill {
		d.send()
	}
	return len(p), d.err
}

// send writes what is held in one write.
func (d *deflateBuf) send() error {
	if d.err == nil && len(d.b) > 0 {
		_, d.err = d.dst.Write(d.b)
	}
	d.b = d.b[:0]
	return d.err
}

// window is DEFLATE's history size (RFC 1951 §2).
const window = 32 << 10

func (z *deflater) Read(p []byte) (int, error) { return z.in.Read(p) }

// keepWindow appends b to h and keeps the last window bytes.
func keepWindow(h, b []byte) []byte {
	if len(b) >= window {
		return append(h[:0], b[len(b)-window:]...)
	}
	if over := len(h) + len(b) - window; over > 0 {
		h = append(h[:0], h[over:]...)
	}
	return append(h, b...)
}

// Write compresses p and sync-flushes it, so the client has every response
// at once, and writes the compressed bytes in one write (deflateBuf); a
// compressor dropped by sleep is made again, continuing the stream from
// the window the client holds. An empty p writes nothing: a flush without
// data would send a block that inflates to nothing.
func (z *deflater) Write(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if z.out == nil {
		w, err := flate.NewWriterDict(&z.buf, compressLevel, z.outHist)
		if err != nil {
			return 0, err
		}
		z.out = w
	}
	n, err := z.out.Write(p)
	if err == nil {
		err = z.out.Flush()
	}
	if serr := z.buf.send(); err == nil {
		err = serr
	}
	z.outHist = keepWindow(z.outHist, p[:n])
	return n, err
}

// sleep drops the compressor of an idle connection, and the inflater's
// input buffer when it is empty. Every Write ended with a sync flush, so
// the stream stands at a block boundary and a new compressor with the
// window (outHist) continues it.
func (z *deflater) sleep() {
	z.out = nil
	z.buf.b = nil
	z.in.Release()
}

func cmdCompress(s *session, tag string, _ bool) error {
	if err := s.r.SP(); err != nil {
		return err
	}
	alg, err := s.r.Atom()
	if err != nil {
		return err
	}
	if err := s.r.CRLF(); err != nil {
		return err
	}
	if !strings.EqualFold(alg, "DEFLATE") {
		return bad("", "Unknown compression mechanism")
	}
	if s.z != nil {
		return no("COMPRESSIONACTIVE", "DEFLATE active via COMPRESS")
	}
	if s.r.Buffered() > 0 {
		// RFC 4978 §3: nothing may follow COMPRESS before its result;
		// what did was compressed, and was read as plain text.
		s.tagged(tag, "BAD", "", "Data after COMPRESS")
		return errClose
	}
	s.tagged(tag, "OK", "", "DEFLATE active")
	if err := s.flush(); err != nil {
		return err
	}
	s.z = &deflater{in: inflate.NewReader(plainSide{s}), buf: deflateBuf{dst: plainSide{s}}}
	return nil
}

// plainSide reads and writes the session's connection below compression
// (TLS included).
type plainSide struct{ s *session }

func (c plainSide) Read(p []byte) (int, error)  { return c.s.conn.Read(p) }
func (c plainSide) Write(p []byte) (int, error) { return c.s.conn.Write(p) }
