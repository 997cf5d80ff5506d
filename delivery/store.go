package delivery

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"io/fs"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Options configure a Store.
type Options struct {
	// Hostname goes into maildir file names (unique across hosts sharing a
	// file system). Empty: os.Hostname().
	Hostname string
	// AllowedBase, when set, is a directory every maildir must be strictly
	// under (e.g. /var/vmail). No symlink is followed below it, not even
	// one staying inside (a user's ~/mailbox pointing at another user's
	// maildir): the path from the base to the maildir must be made of
	// directories. The base itself may be reached through symlinks.
	AllowedBase string
	// Chown: files and the directories we create belong to the recipient's
	// UID/GID. cmd sets it when running as root; otherwise everything belongs
	// to the process user.
	Chown bool
	// Logger receives one line per copy. Nil: discard.
	Logger *slog.Logger
	// Sync: how a copy's content is made durable before it is named.
	Sync SyncMode
	// OnDelivered, if set, is called after each durable copy (IMAP IDLE)
	// with Recipient.Maildir, the Maildir++ folder the copy went to ("" for
	// INBOX) and the copy's file name in that folder's new/, so that the
	// IMAP side can take in that one file without listing the folder. It
	// runs on the delivering goroutine, maybe concurrently with itself: it
	// must be safe for that and not block.
	OnDelivered func(maildir, folder, name string)
}

// Recipient is one local copy to store.
type Recipient struct {
	Address string // final maildrop, written as Delivered-To
	OrigTo  string // the RCPT TO address before alias expansion (for the log line)
	Maildir string // absolute; e.g. /var/vmail/xomail/mailbox/
	// Folder is the Maildir++ folder of Maildir the copy goes to: "" for
	// INBOX, ".Junk" for the Junk folder (created on first use). It must be
	// one path component starting with '.' (validFolder).
	Folder string
	UID    int // owner of the files when Options.Chown is set
	GID    int
	// CopyKey, when set, names the copy from the key and Message.Arrived
	// instead of afresh (see keyedName), so that another attempt at the same
	// copy finds it: a copy already stored under the key counts as delivered
	// and is not written again. The queue sets it for local recipients
	// (queue id and recipient index), which makes its retries idempotent.
	CopyKey string
}

// Message is what was received, shared by all its copies.
type Message struct {
	ID      string    // message/queue id for logs
	From    string    // envelope sender, "" for the null sender (Return-Path: <>)
	Header  []byte    // trace header lines to prepend after Return-Path and Delivered-To (e.g. Received:), CRLF-terminated
	Body    Content   // the message as received (CRLF line endings, dot-unstuffed); nil for none
	Arrived time.Time // for delay= in the log line, and keyed names (Recipient.CopyKey)
	// Retry: an earlier attempt may have stored keyed copies without its
	// outcome being recorded (a crash between the two). Each keyed copy is
	// then looked for in new/ and cur/ before it is written.
	Retry bool
}

// Store writes messages into maildirs. Safe for concurrent use.
type Store struct {
	log         *slog.Logger                       // immutable
	host        string                             // escaped for file names; immutable
	base        string                             // clean AllowedBase or ""; immutable
	chown       bool                               // immutable
	onDelivered func(maildir, folder, name string) // immutable
	pid         int                                // immutable
	counter     atomic.Uint64                      // Q in file names
	syncer      *groupSyncer                       // directory fsyncs
	fsSyncer    *groupSyncer                       // syncfs, keyed by device alone (SyncFilesystem)
	syncMode    SyncMode                           // immutable
	writing     atomic.Int32                       // copies being written (syncContent)
	maildirs    *maildirCache

	mu       sync.Mutex
	known    map[string]struct{} // maildirs this process created or found and fsynced; guarded by mu
	devModes map[uint64]SyncMode // syncModeFor's choice per device; guarded by mu

	seed     maphash.Seed   // immutable
	creating [64]sync.Mutex // serialise first deliveries per maildir (striped by path)

	// wrapWriter, if set by a test, wraps each copy's file writer (to inject
	// write errors such as ENOSPC).
	wrapWriter func(io.Writer) io.Writer
	// plainCreate, if set by a test, skips O_TMPFILE (see createTmp).
	plainCreate bool
	// noTmpfile is set once O_TMPFILE proved unusable on this system.
	noTmpfile atomic.Bool
}

// NewStore checks the options and returns a Store.
func NewStore(o Options) (*Store, error) {
	host := o.Hostname
	if host == "" {
		h, err := os.Hostname()
		if err != nil {
			return nil, fmt.Errorf("delivery: hostname for maildir names: %w", err)
		}
		host = h
	}
	if host == "" {
		return nil, errors.New("delivery: empty hostname for maildir names")
	}
	base := o.AllowedBase
	if base != "" {
		if !filepath.IsAbs(base) {
			return nil, fmt.Errorf("delivery: allowed base %q is not absolute", base)
		}
		base = filepath.Clean(base)
	}
	lg := o.Logger
	if lg == nil {
		lg = slog.New(slog.DiscardHandler)
	}
	return &Store{
		log:         lg,
		host:        escapeHostname(host),
		base:        base,
		chown:       o.Chown,
		onDelivered: o.OnDelivered,
		pid:         os.Getpid(),
		syncer:      newGroupSyncer((*os.File).Sync),
		fsSyncer:    newGroupSyncer(syncFS),
		syncMode:    o.Sync,
		devModes:    make(map[uint64]SyncMode),
		maildirs:    newMaildirCache(),
		known:       make(map[string]struct{}),
		seed:        maphash.MakeSeed(),
	}, nil
}

// maxParallelCopies bounds the copies of one message written at once: enough
// to share directory fsyncs and overlap file fsyncs, few enough not to open
// hundreds of files for a message to a 1000-member list.
const maxParallelCopies = 8

// Deliver writes one copy per recipient, durably, and returns one error per
// recipient, in order: nil means the copy is on disk and survives a crash;
// otherwise an *Error, and nothing of that copy is in new/. It returns only
// when every copy has succeeded or failed. A cancelled ctx stops copies not
// yet started (they fail with a temporary error); a started copy is finished.
func (s *Store) Deliver(ctx context.Context, m *Message, rcpts []Recipient) []error {
	errs := make([]error, len(rcpts))
	header := m.Header
	if n := len(header); n > 0 && header[n-1] != '\n' {
		// The contract says CRLF-terminated; never glue the next line on.
		header = append(header[:n:n], '\r', '\n')
	}
	var msgErr *Error
	if err := validAddress(m.From); err != nil {
		msgErr = &Error{Reason: "invalid envelope sender", Err: err}
	}
	body := m.Body
	if body == nil {
		body = bytes.NewReader(nil)
	}
	// Counted once for every copy: a large body is read from its file once
	// here and once per copy written.
	stats, err := scanBody(body)
	if err != nil && msgErr == nil {
		msgErr = ioError("cannot read the message", err)
	}
	one := func(i int) {
		r := &rcpts[i]
		start := time.Now()
		e := msgErr
		var name string
		if e == nil {
			name, e = s.deliverOne(ctx, m, copyParts{header: header, body: body, stats: stats}, r)
		}
		s.logCopy(m, r, start, e)
		if e != nil {
			errs[i] = e // only when non-nil: no typed nil in the interface
			return
		}
		if s.onDelivered != nil && name != "" {
			s.onDelivered(r.Maildir, r.Folder, name)
		}
	}
	if len(rcpts) == 1 {
		one(0)
		return errs
	}
	sem := make(chan struct{}, maxParallelCopies)
	var wg sync.WaitGroup
	for i := range rcpts {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			one(i)
		})
	}
	wg.Wait()
	return errs
}

// deliverOne stores one copy and returns its file name in new/ ("" for a
// keyed copy an earlier attempt had stored). See doc.go
// for the durable sequence and what a crash at each step leaves.
func (s *Store) deliverOne(ctx context.Context, m *Message, parts copyParts, r *Recipient) (string, *Error) {
	if err := ctx.Err(); err != nil {
		return "", &Error{Temporary: true, Reason: "delivery cancelled", Err: err}
	}
	if err := validAddress(r.Address); err != nil {
		return "", badMaildir("invalid maildrop address", err)
	}
	if s.chown {
		// uid 0 is refused like Postfix's virtual_minimum_uid; -1 would mean
		// "leave unchanged" to chown(2).
		if r.UID <= 0 || r.UID >= math.MaxUint32 || r.GID < 0 || r.GID >= math.MaxUint32 {
			return "", badMaildir("invalid owner uid/gid", fmt.Errorf("uid %d gid %d", r.UID, r.GID))
		}
	}
	parts.prefix = buildPrefix(m.From, r.Address)
	size, wsize := parts.sizes()
	var name string
	if r.CopyKey != "" {
		if !validCopyKey(r.CopyKey) || m.Arrived.IsZero() {
			return "", &Error{Temporary: true, Reason: "invalid copy key", Err: fmt.Errorf("key %q", r.CopyKey)}
		}
		name = keyedName(m.Arrived, r.CopyKey, s.host, size, wsize)
	} else {
		name = newName(time.Now(), s.pid, s.counter.Add(1), s.host, size, wsize)
	}

	s.writing.Add(1)
	defer s.writing.Add(-1)
	md, e := s.acquireMaildir(r)
	if e != nil {
		return "", e
	}
	if r.CopyKey != "" && m.Retry {
		switch found, err := keyedCopyStored(md, name); {
		case err != nil:
			s.maildirs.release(md)
			return "", ioError("cannot look for an earlier copy", err)
		case found:
			s.maildirs.release(md)
			s.log.Info("copy already stored by an earlier attempt", "msg_id", m.ID, "to", r.Address)
			return "", nil // nothing new for IMAP: it may have taken it already
		}
	}
	e = s.writeCopy(m, md, name, &parts, size, r)
	if e != nil {
		s.maildirs.evict(md) // the next delivery opens it afresh
	}
	s.maildirs.release(md)
	if e != nil {
		return "", e
	}
	return name, nil
}

// writeCopy writes one copy into md's new/ under name and returns once it
// and its directory entry are durable.
func (s *Store) writeCopy(m *Message, md *openMaildir, name string, parts *copyParts, size int64, r *Recipient) *Error {
	written := false
	if !s.plainCreate && !s.noTmpfile.Load() {
		switch e := s.writeUnnamed(md, name, parts, size, r); {
		case e == errUseTmp:
			s.noTmpfile.Store(true)
			s.log.Info("O_TMPFILE unavailable here: delivering through tmp/ and rename")
		case e != nil:
			return e
		default:
			written = true
		}
	}
	if !written {
		if e := s.writeThroughTmp(m, md, name, parts, size, r); e != nil {
			return e
		}
	}
	// Shared with concurrent deliveries into this new/ (group commit). Only
	// after it completes is the copy acknowledged.
	if err := s.syncer.Sync(md.newDir, md.key); err != nil {
		// The entry may or may not be on disk; take it back so that the retry
		// the client will make does not produce a duplicate.
		if rerr := removeAt(md.newDir, name); rerr != nil {
			s.log.Warn("cannot remove unsynced file", "msg_id", m.ID, "file", name, "error", rerr)
		}
		return ioError("cannot sync maildir", err)
	}
	return nil
}

// errUseTmp: the unnamed-file path is not available; use tmp/ and rename.
var errUseTmp = &Error{Temporary: true, Reason: "O_TMPFILE unavailable"}

// writeUnnamed writes the copy as an unnamed file of new/'s file system
// (O_TMPFILE), fsyncs it, then gives it its name in new/ with one linkat:
// the maildir spec's tmp-then-rename, in one step. Readers never see a
// partial file (it has no name until it is whole and durable), and a crash
// leaves nothing at all, not even a tmp/ entry. errUseTmp when the kernel
// or file system cannot do it.
func (s *Store) writeUnnamed(md *openMaildir, name string, parts *copyParts, size int64, r *Recipient) *Error {
	newDir := md.newDir
	f, err := openUnnamed(newDir)
	if errors.Is(err, errNoTmpfile) {
		return errUseTmp
	}
	if err != nil {
		return openError("cannot create file", err)
	}
	defer f.Close() // unnamed until linked: closing drops a failed copy
	if e := s.fill(f, parts, size, r, md); e != nil {
		return e
	}
	switch err := linkUnnamed(f, newDir, name); {
	case errors.Is(err, errNoTmpfile):
		return errUseTmp
	case errors.Is(err, unix.EEXIST) && r.CopyKey != "":
		// This very copy, stored by an earlier attempt: the same bytes
		// under the same name (keyedName). The group sync that follows
		// makes sure that entry is durable.
		return nil
	case errors.Is(err, unix.EEXIST):
		return &Error{Temporary: true, Reason: "file name collision", Err: err}
	case err != nil:
		return ioError("cannot name file in new/", err)
	}
	if err := f.Close(); err != nil {
		_ = removeAt(newDir, name)
		return ioError("cannot close file", err)
	}
	return nil
}

// writeThroughTmp is the classic path: tmp/<name>, write, fsync, rename
// into new/.
func (s *Store) writeThroughTmp(m *Message, md *openMaildir, name string, parts *copyParts, size int64, r *Recipient) *Error {
	newDir := md.newDir
	tmpDir, err := md.root.OpenFile("tmp", os.O_RDONLY|syscall.O_DIRECTORY, 0)
	if err != nil {
		return openError("cannot open maildir", err)
	}
	defer tmpDir.Close()
	// Exclusive, never through a symlink: never reuse or follow what is there.
	f, err := createTmp(tmpDir, name, s.plainCreate)
	if errors.Is(err, fs.ErrExist) && r.CopyKey != "" {
		// Left by an attempt at this copy that died before its rename.
		if rerr := removeAt(tmpDir, name); rerr == nil {
			f, err = createTmp(tmpDir, name, s.plainCreate)
		}
	}
	if errors.Is(err, fs.ErrExist) {
		// The name is unique by construction: something else is at work in
		// tmp/. Leave it alone and let the client retry under a new name.
		return &Error{Temporary: true, Reason: "file name collision", Err: err}
	}
	if err != nil {
		return openError("cannot create file", err)
	}
	// From here on, any failure removes the tmp file: no partial copy stays.
	abort := func(e *Error) *Error {
		_ = f.Close()
		if rerr := removeAt(tmpDir, name); rerr != nil {
			s.log.Warn("cannot remove partial file", "msg_id", m.ID, "file", name, "error", rerr)
		}
		return e
	}
	if e := s.fill(f, parts, size, r, md); e != nil {
		return abort(e)
	}
	if err := f.Close(); err != nil { // NFS and quotas may report late
		return abort(ioError("cannot close file", err))
	}
	// Atomic: new/ holds the whole file or nothing.
	if err := renameAt(tmpDir, newDir, name); err != nil {
		_ = removeAt(tmpDir, name)
		return ioError("cannot move file into new/", err)
	}
	return nil
}

// fill sets the owner and mode of a new copy in md, writes it and makes it
// durable (syncContent).
func (s *Store) fill(f *os.File, parts *copyParts, size int64, r *Recipient, md *openMaildir) *Error {
	if s.chown {
		if err := f.Chown(r.UID, r.GID); err != nil {
			return ioError("cannot chown file", err)
		}
	}
	if err := f.Chmod(0o600); err != nil { // the umask must not change it
		return ioError("cannot chmod file", err)
	}
	var w io.Writer = f
	if s.wrapWriter != nil {
		w = s.wrapWriter(w)
	}
	if err := parts.writeTo(w, size); err != nil {
		return ioError("cannot write file", err)
	}
	if err := s.syncContent(f, md); err != nil {
		return ioError("cannot sync file", err)
	}
	return nil
}

// logCopy writes the Postfix-style line for one copy:
// msg_id, from, to, orig_to, relay=maildir, delay, dsn, status.
func (s *Store) logCopy(m *Message, r *Recipient, start time.Time, e *Error) {
	arrived := m.Arrived
	if arrived.IsZero() {
		arrived = start
	}
	attrs := []slog.Attr{
		slog.String("msg_id", m.ID),
		slog.String("from", m.From),
		slog.String("to", r.Address),
		slog.String("orig_to", r.OrigTo),
		slog.String("relay", "maildir"),
		slog.String("delay", strconv.FormatFloat(time.Since(arrived).Seconds(), 'f', 2, 64)),
	}
	if e == nil {
		attrs = append(attrs, slog.String("dsn", "2.0.0"), slog.String("status", "sent (delivered to maildir)"))
		s.log.LogAttrs(context.Background(), slog.LevelInfo, "delivery", attrs...)
		return
	}
	status := "deferred (" + e.Reason + ")"
	level := slog.LevelWarn
	if !e.Temporary {
		status = "bounced (" + e.Reason + ")"
		level = slog.LevelError
	}
	attrs = append(attrs, slog.String("dsn", e.dsn()), slog.String("status", status), slog.String("error", e.Error()))
	s.log.LogAttrs(context.Background(), level, "delivery", attrs...)
}

// Close releases the maildirs the Store keeps open between deliveries.
// Deliveries may go on afterwards; they open what they need again.
func (s *Store) Close() error {
	s.maildirs.closeAll()
	return nil
}
