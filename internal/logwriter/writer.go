package logwriter

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"time"
)

// Writer holds log records until one of its users writes them out. Write
// only appends; Flush writes what is held, unless another goroutine is
// already writing, which then writes it too. Safe for concurrent use.
type Writer struct {
	dst io.Writer
	max int // held octets past which Write waits (or writes) first

	mu       sync.Mutex
	room     sync.Cond // signalled when held octets were taken to be written
	held     []byte    // guarded by mu
	spare    []byte    // guarded by mu: the buffer being written, reused once written
	flushing bool      // guarded by mu: a goroutine is writing (in flushLocked)
	// lazyTimer writes lazy records (Lazy) nobody else wrote within
	// lazyWithin; created at the first, armed while lazyArmed.
	lazyTimer *time.Timer   // guarded by mu
	lazyArmed bool          // guarded by mu
	lazyDelay time.Duration // guarded by mu; lazyWithin unless set
}

// New returns a Writer onto dst that holds at most about max octets: a
// record that would take it past max waits for the write in progress (or
// writes what is held itself), so a log that cannot keep up slows its
// writers down as a plain one does.
func New(dst io.Writer, max int) *Writer {
	w := &Writer{dst: dst, max: max, lazyDelay: lazyWithin}
	w.room.L = &w.mu
	return w
}

// Write appends p, one whole record, to what is held; it never writes to
// the destination except when the held octets are over the bound and
// nobody is writing them. A record larger than the bound is held alone.
// The caller must Flush after it (Handler does).
func (w *Writer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for len(w.held) > 0 && len(w.held)+len(p) > w.max {
		if !w.flushing {
			// Nobody is writing (the goroutine that appended last has not
			// flushed yet): write ahead of p, so that order is kept.
			w.flushLocked()
			continue
		}
		w.room.Wait()
	}
	w.held = append(w.held, p...)
	return len(p), nil
}

// Flush writes what is held, and whatever is appended while it writes,
// unless another goroutine is writing already: that one will write it.
// It returns the first write error of its own writes; the records of a
// failed write are dropped, as a plain write would lose them, and the
// next records are written as usual.
func (w *Writer) Flush() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.flushing {
		return nil
	}
	return w.flushLocked()
}

// flushLocked writes until nothing is held; w.mu is held on entry and
// exit, released while writing.
func (w *Writer) flushLocked() error {
	var first error
	w.flushing = true
	for len(w.held) > 0 {
		out := w.held
		w.held = w.spare[:0]
		w.spare = nil
		w.room.Broadcast()
		w.mu.Unlock()
		_, err := w.dst.Write(out)
		w.mu.Lock()
		if err != nil && first == nil {
			first = err
		}
		if cap(out) <= 2*w.max { // a burst's buffer is not kept
			w.spare = out[:0]
		}
	}
	w.flushing = false
	w.room.Broadcast()
	return first
}

// flushLater has what is held written within lazyWithin: by whoever
// writes next, or by the Writer's timer. One timer per Writer, armed
// once until it fires: under load, it fires a few times a second at
// most, and finds little or nothing left to write.
func (w *Writer) flushLater() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.lazyArmed {
		return
	}
	w.lazyArmed = true
	if w.lazyTimer == nil {
		w.lazyTimer = time.AfterFunc(w.lazyDelay, w.lazyFlush)
		return
	}
	w.lazyTimer.Reset(w.lazyDelay)
}

// SetLazyDelay sets how long a lazy record may wait for a write (Lazy),
// lazyWithin by default; from now, for the records waiting too.
func (w *Writer) SetLazyDelay(d time.Duration) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.lazyDelay = d
	if w.lazyArmed {
		w.lazyTimer.Reset(d)
	}
}

func (w *Writer) lazyFlush() {
	w.mu.Lock()
	w.lazyArmed = false
	w.mu.Unlock()
	w.Flush()
}

// lazyWithin bounds how long a lazy record (Lazy) waits for a write.
const lazyWithin = 50 * time.Millisecond

// Sync returns once every record appended before it is written (by this
// goroutine or by the one writing): before exit, or before reading the
// destination.
func (w *Writer) Sync() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	for w.flushing {
		w.room.Wait()
	}
	return w.flushLocked()
}

// Handler is a slog.Handler whose records go through a Writer: the inner
// handler (a TextHandler on the Writer) formats and appends a record under
// its own lock, and the Flush comes after that lock is released, so that
// other goroutines may append while one writes.
type Handler struct {
	inner slog.Handler
	w     *Writer
}

// NewHandler wraps inner, a handler writing to w.
func NewHandler(inner slog.Handler, w *Writer) *Handler {
	return &Handler{inner: inner, w: w}
}

// Enabled implements slog.Handler.
func (h *Handler) Enabled(ctx context.Context, l slog.Level) bool { return h.inner.Enabled(ctx, l) }

// Handle implements slog.Handler: the inner handler appends the record,
// then it is written (by this goroutine, or by the one already writing),
// unless ctx is held (Hold).
func (h *Handler) Handle(ctx context.Context, r slog.Record) error {
	err := h.inner.Handle(ctx, r)
	if ctx.Value(lazyKey{}) != nil {
		h.w.flushLater()
		return err
	}
	if hd, ok := ctx.Value(holdKey{}).(*hold); ok {
		hd.mu.Lock()
		held := !hd.released
		if held {
			hd.w = h.w
		}
		hd.mu.Unlock()
		if held {
			return err
		}
	}
	if ferr := h.w.Flush(); err == nil {
		err = ferr
	}
	return err
}

// WithAttrs implements slog.Handler.
func (h *Handler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &Handler{inner: h.inner.WithAttrs(attrs), w: h.w}
}

// WithGroup implements slog.Handler.
func (h *Handler) WithGroup(name string) slog.Handler {
	return &Handler{inner: h.inner.WithGroup(name), w: h.w}
}

// lazyKey marks a context whose records wait (Lazy).
type lazyKey struct{}

// Lazy returns ctx marked so that the records a Handler gets with it are
// appended and not written at once: they go with the next record written
// (any goroutine's), or at most lazyWithin later. For lines of routine
// that nothing waits for (a connection opened or closed), which a busy
// server then writes with its other lines instead of in a write(2) of
// their own; their order among the lines is kept. A record held when
// the process dies without Sync is lost, as it would be in a pipe's
// buffer.
func Lazy(ctx context.Context) context.Context {
	return context.WithValue(ctx, lazyKey{}, true)
}

// holdKey marks a context whose records wait (Hold).
type holdKey struct{}

// hold is what Hold's context carries: the Writer a held record went to.
type hold struct {
	mu       sync.Mutex
	w        *Writer // nil while nothing is held
	released bool    // records logged after release are written at once
}

// Hold returns ctx marked so that the records a Handler gets with it are
// appended and not written at once: the next record logged without the
// mark writes them with itself (one write(2) for both), and so does any
// other goroutine's, or release, which the caller must call (any number
// of times) once it is done with the work the records belong to; records
// logged with ctx after release are written at once. For a line that may
// wait until a reply is sent: it never waits for more than the code
// between Hold and release.
func Hold(ctx context.Context) (held context.Context, release func()) {
	h := &hold{}
	return context.WithValue(ctx, holdKey{}, h), h.release
}

func (h *hold) release() {
	h.mu.Lock()
	w := h.w
	h.w, h.released = nil, true
	h.mu.Unlock()
	if w != nil {
		w.Flush()
	}
}

// LogAttrs logs as l.LogAttrs does, the same record but for its source:
// it does not look up the caller's program counter (runtime.Callers, a
// tenth of the cost of a short record), which only a handler with
// AddSource shows, and cmd's has none. For the lines logged for every
// message or connection.
func LogAttrs(ctx context.Context, l *slog.Logger, level slog.Level, msg string, attrs ...slog.Attr) {
	if !l.Enabled(ctx, level) {
		return
	}
	r := slog.NewRecord(time.Now(), level, msg, 0)
	r.AddAttrs(attrs...)
	_ = l.Handler().Handle(ctx, r)
}
