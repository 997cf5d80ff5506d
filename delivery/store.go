package delivery

import (
	"bufio"
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
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"courriel/delivery/maildirsize"
	"courriel/internal/logwriter"
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
	// with Recipient.Maildir, the Maildir++ folder directory the copy went
	// to ("" for INBOX, ".Junk" for Recipient.Folder "Junk") and the copy's file name in that folder's new/, so that the
	// IMAP side can take in that one file without listing the folder. It
	// runs on the delivering goroutine, maybe concurrently with itself: it
	// must be safe for that and not block.
	OnDelivered func(maildir, folder, name string)
	// OnFolderCreated, if set, is called once delivery has created the
	// folder of r (Recipient.Folder) and made it durable: cmd subscribes the
	// user to it, as Dovecot's LDA does with lda_mailbox_autosubscribe, so
	// that IMAP clients showing subscribed folders only see their Junk.
	OnFolderCreated func(r Recipient)
	// KeywordLetters, if set, gives the maildir letters (a..z) of IMAP
	// keywords in the folder opened as dir, adding the missing ones to its
	// dovecot-keywords table (owned by uid/gid when >= 0): cmd wires
	// imap/uidlist's table, which this package does not import. Nil: a
	// copy's keywords are dropped, its system flags kept.
	KeywordLetters func(dir *os.Root, keywords []string, uid, gid int) (string, error)
}

// Recipient is one local copy to store.
type Recipient struct {
	Address string // final maildrop, written as Delivered-To
	OrigTo  string // the RCPT TO address before alias expansion: X-Original-To, the log's orig_to ("": Address)
	Maildir string // absolute; e.g. /var/vmail/xomail/mailbox/
	UID     int    // owner of the files when Options.Chown is set
	GID     int
	// CopyKey, when set, names the copy from the key and Message.Arrived
	// instead of afresh (see keyedName), so that another attempt at the same
	// copy finds it: a copy already stored under the key counts as delivered
	// and is not written again. The queue sets it for local recipients
	// (queue id and recipient index), which makes its retries idempotent.
	CopyKey string
	// Quota, when set, is the maildir's quota (the directory's quota
	// attribute): a copy that would take the usage in maildirsize past it
	// fails with ErrOverQuota, and a stored copy is added to it.
	Quota maildirsize.Limits
	// Folder, when set, is the Maildir++ folder the copy goes to instead of
	// the INBOX, as its directory is named without the leading dot: "Junk"
	// is Maildir/.Junk/, "Work.2026" the child 2026 of Work (created with
	// its maildirfolder marker if missing, unless NoCreate). Components
	// are separated by '.', already in IMAP's modified UTF-7: printable
	// ASCII only, never '/', never an empty component (see validFolder).
	Folder string
	// NoCreate: a missing Folder is not created; the copy fails with
	// ErrNoFolder (Sieve's fileinto without :create, which then keeps to
	// the INBOX).
	NoCreate bool
	// Flags are IMAP flags the copy is stored with (Sieve's imap4flags):
	// system flags (\Seen, \Answered, \Flagged, \Deleted, \Draft) and
	// keywords. A copy with flags goes into cur/ with them in its name's
	// info (":2,FS" and keyword letters), as Dovecot's LDA stores it.
	Flags []string
	// Node, when set, is the name of the cluster node the recipient is at
	// home on, another than this one: the copy is handed to that node
	// (the queue's node copies), never stored here. Deliver refuses it
	// (temporary), so no path can leave mail in a maildir the user has
	// left.
	Node string
	// Held: the caller found the user held at this delivery (being moved
	// away from this node, cluster.Holds), with Node "". Read by the
	// queue with Entry: it keeps such a copy waiting without asking the
	// directory again. Deliver refuses such a copy (temporary, ErrHeld),
	// as it refuses a node copy: its callers store no held user's copy
	// (smtp sends those through the queue), and a caller that forgot would
	// otherwise write into a maildir being moved away.
	Held bool
	// Entry, when set, is the recipient's directory entry as the caller
	// resolved it for this very delivery, in the same answer Maildir and
	// the owner come from (smtp's RCPT, for the copies it stores at
	// DATA): a deliverer that needs the entry (the Sieve filter: the
	// home and the user's addresses) takes it instead of asking the
	// directory again. Nil: the deliverer asks. Node and Held then come
	// from the same answer, and the queue's first attempt places the
	// copy by them. It is never kept for a later attempt: the queue
	// records no Entry, so a queued copy, tried maybe days after its
	// RCPT, is looked up afresh.
	Entry *Entry
}

// Entry is what a deliverer may need of a recipient's directory entry
// beside where the copy goes. Immutable once set: copies of a Recipient
// share it.
type Entry struct {
	// Home is the entry's home directory (where the user's Sieve script
	// is), absolute and clean; "" when the entry has none.
	Home string
	// Addresses are the entry's accepted addresses: who the user is,
	// for a vacation reply. Unchecked strings from the directory.
	Addresses []string
	// Login is the entry's login (directory.Mailbox.Login): the user
	// named in the vacation records Pigeonhole shares; "" for none.
	Login string
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
	// Single: the caller answers the sender from this one delivery (SMTP's
	// single local copy stored at DATA), so it must write one file or
	// nothing: a stored file followed by a failure would make the sender
	// send it again. A deliverer that would do more for a recipient
	// (several folders, a redirect, a reply) stores nothing and answers
	// ErrNeedsQueue, and the caller goes through the queue instead.
	Single bool
	// CallerLogs: the caller writes each recipient's line itself (the
	// queue, with its queue_id), so the store writes none: one line per
	// delivery, as in Postfix's log.
	CallerLogs bool
}

// Store writes messages into maildirs. Safe for concurrent use.
type Store struct {
	log         *slog.Logger                       // immutable
	host        string                             // escaped for file names; immutable
	base        string                             // clean AllowedBase or ""; immutable
	chown       bool                               // immutable
	onDelivered func(maildir, folder, name string) // immutable
	// onFolderCreated: Options.OnFolderCreated; immutable.
	onFolderCreated func(Recipient)
	keywordLetters  func(*os.Root, []string, int, int) (string, error) // immutable
	pid             int                                                // immutable
	counter         atomic.Uint64                                      // Q in file names
	syncer          *groupSyncer                                       // directory fsyncs
	fsSyncer        *groupSyncer                                       // syncfs, keyed by device alone (SyncFilesystem)
	syncMode        SyncMode                                           // immutable
	writing         atomic.Int32                                       // copies being written (syncContent)
	maildirs        *maildirCache

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
	// copyWriters holds *bufio.Writer of copyBuffer octets, what copies
	// are written through: one write(2) for a copy of up to 64 KiB, and
	// no buffer to allocate and clear for each.
	copyWriters sync.Pool
	// umaskKeepsMode: the process umask clears no bit of a copy's mode
	// 0600, so a file created with it has it without a chmod (see
	// openMaildir.exactMode). Immutable.
	umaskKeepsMode bool
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
		log:             lg,
		host:            escapeHostname(host),
		base:            base,
		chown:           o.Chown,
		onDelivered:     o.OnDelivered,
		onFolderCreated: o.OnFolderCreated,
		keywordLetters:  o.KeywordLetters,
		pid:             os.Getpid(),
		syncer:          newGroupSyncer((*os.File).Sync),
		fsSyncer:        newGroupSyncer(syncFS),
		syncMode:        o.Sync,
		devModes:        make(map[uint64]SyncMode),
		maildirs:        newMaildirCache(),
		known:           make(map[string]struct{}),
		seed:            maphash.MakeSeed(),
		umaskKeepsMode:  umaskKeeps(copyMode),
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
		switch {
		case e != nil:
		case r.Node != "":
			e = &Error{Temporary: true, Reason: "mailbox homed on another node", Err: ErrHomedElsewhere}
		case r.Held:
			e = &Error{Temporary: true, Reason: "mailbox held while it is being moved", Err: ErrHeld}
		}
		var name string
		if e == nil {
			name, e = s.deliverOne(ctx, m, copyParts{header: header, body: body, stats: stats}, r)
		}
		if !m.CallerLogs {
			s.logCopy(ctx, m, r, start, e)
		}
		if e != nil {
			errs[i] = e // only when non-nil: no typed nil in the interface
			return
		}
		if s.onDelivered != nil && name != "" {
			folder := ""
			if r.Folder != "" {
				folder = "." + r.Folder
			}
			// A copy in cur/ is named by its base: the IMAP side does not
			// find it in new/ and lists the folder on its next look.
			base, _, _ := strings.Cut(name, ":")
			s.onDelivered(r.Maildir, folder, base)
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
		if r.UID <= 0 || int64(r.UID) >= math.MaxUint32 || r.GID < 0 || int64(r.GID) >= math.MaxUint32 {
			return "", badMaildir("invalid owner uid/gid", fmt.Errorf("uid %d gid %d", r.UID, r.GID))
		}
	}
	parts.prefix = buildPrefix(m.From, r.OrigTo, r.Address)
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
	var quota *openMaildir // the maildir holding maildirsize
	if r.Quota.Set() {
		if quota, e = s.checkQuota(r, md, size); e != nil {
			s.maildirs.release(md)
			return "", e
		}
	}
	e = s.writeCopy(m, md, name, &parts, size, r)
	if e != nil {
		s.maildirs.evict(md) // the next delivery opens it afresh
	}
	if quota != nil {
		if e == nil {
			if err := maildirsize.Add(quota.root, size, 1); err != nil {
				s.log.Warn("cannot update maildirsize", "msg_id", m.ID, "to", r.Address, "error", err)
			}
		}
		if quota != md {
			s.maildirs.release(quota)
		}
	}
	s.maildirs.release(md)
	if e != nil {
		return "", e
	}
	return name, nil
}

// checkQuota reads the usage of r's maildir (maildirsize, in the maildir
// itself even for a copy filed in a folder) and refuses a copy of size
// bytes that would go past r.Quota. It returns the maildir to add the copy
// to once stored: md itself, or one more reference the caller releases.
func (s *Store) checkQuota(r *Recipient, md *openMaildir, size int64) (*openMaildir, *Error) {
	inbox := md
	if r.Folder != "" {
		ir := *r
		ir.Folder = ""
		var e *Error
		if inbox, e = s.acquireMaildir(&ir); e != nil {
			return nil, e
		}
	}
	owner := maildirsize.Owner{UID: -1, GID: -1}
	if s.chown {
		owner = maildirsize.Owner{UID: r.UID, GID: r.GID}
	}
	u, err := maildirsize.Read(inbox.root, r.Quota, owner, time.Now())
	var e *Error
	switch {
	case err != nil:
		e = ioError("cannot read the quota", err)
	case !u.Fits(r.Quota, size):
		e = &Error{Temporary: true, Reason: "mailbox over quota", Err: fmt.Errorf("%w: %d bytes in %d messages, %d more, limits %s",
			ErrOverQuota, u.Bytes, u.Messages, size, r.Quota)}
	}
	if e != nil {
		if inbox != md {
			s.maildirs.release(inbox)
		}
		return nil, e
	}
	return inbox, nil
}

// writeCopy writes one copy into md's new/ under name (into cur/ with its
// flags in the name when r has some, as Dovecot's LDA) and returns once it
// and its directory entry are durable.
func (s *Store) writeCopy(m *Message, md *openMaildir, name string, parts *copyParts, size int64, r *Recipient) *Error {
	dest, key := md.newDir, md.key
	if len(r.Flags) > 0 {
		info := s.infoFlags(m, md, r)
		if info != "" {
			cur, err := md.root.OpenFile("cur", os.O_RDONLY|syscall.O_DIRECTORY|syscall.O_NOFOLLOW, 0)
			if err != nil {
				return openError("cannot open cur/", err)
			}
			defer cur.Close()
			if key, err = keyOf(cur); err != nil {
				return openError("cannot open cur/", err)
			}
			dest, name = cur, name+":2,"+info
		}
	}
	written := false
	if !s.plainCreate && !s.noTmpfile.Load() {
		switch e := s.writeUnnamed(md, dest, name, parts, size, r); {
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
		if e := s.writeThroughTmp(m, md, dest, name, parts, size, r); e != nil {
			return e
		}
	}
	// Shared with concurrent deliveries into this new/ (group commit). Only
	// after it completes is the copy acknowledged.
	if err := s.syncer.Sync(dest, key); err != nil {
		// The entry may or may not be on disk; take it back so that the retry
		// the client will make does not produce a duplicate.
		if rerr := removeAt(dest, name); rerr != nil {
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
func (s *Store) writeUnnamed(md *openMaildir, newDir *os.File, name string, parts *copyParts, size int64, r *Recipient) *Error {
	f, err := openUnnamed(newDir)
	if errors.Is(err, errNoTmpfile) {
		return errUseTmp
	}
	if err != nil {
		return openError("cannot create file", err)
	}
	defer f.Close() // unnamed until linked: closing drops a failed copy
	if e := s.fill(f, parts, size, r, md, newDir == md.newDir && md.exactMode); e != nil {
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
func (s *Store) writeThroughTmp(m *Message, md *openMaildir, newDir *os.File, name string, parts *copyParts, size int64, r *Recipient) *Error {
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
	if e := s.fill(f, parts, size, r, md, false); e != nil {
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
// durable (syncContent). created: f was created with mode copyMode and
// has it already (openMaildir.exactMode), so no chmod.
func (s *Store) fill(f *os.File, parts *copyParts, size int64, r *Recipient, md *openMaildir, created bool) *Error {
	if s.chown {
		if err := f.Chown(r.UID, r.GID); err != nil {
			return ioError("cannot chown file", err)
		}
	}
	if !created {
		if err := f.Chmod(copyMode); err != nil { // the umask must not change it
			return ioError("cannot chmod file", err)
		}
	}
	var w io.Writer = f
	if s.wrapWriter != nil {
		w = s.wrapWriter(w)
	}
	bw, _ := s.copyWriters.Get().(*bufio.Writer)
	if bw == nil {
		bw = bufio.NewWriterSize(nil, copyBuffer)
	}
	bw.Reset(w)
	err := parts.writeBuffered(bw)
	bw.Reset(nil)
	s.copyWriters.Put(bw)
	if err != nil {
		return ioError("cannot write file", err)
	}
	if err := s.syncContent(f, md); err != nil {
		return ioError("cannot sync file", err)
	}
	return nil
}

// logCopy writes the Postfix-style line for one copy:
// msg_id, from, to, orig_to, relay=maildir, delay, dsn, status.
// ctx is Deliver's: the caller may hold the line back a moment with it
// (internal/logwriter.Hold). Logged without the caller's PC
// (logwriter.LogAttrs): one line per copy.
func (s *Store) logCopy(ctx context.Context, m *Message, r *Recipient, start time.Time, e *Error) {
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
		logwriter.LogAttrs(ctx, s.log, slog.LevelInfo, "delivery", attrs...)
		return
	}
	status := "deferred (" + e.Reason + ")"
	level := slog.LevelWarn
	switch {
	case errors.Is(e.Err, ErrNoFolder):
		// Sieve's fileinto without :create: the caller stores the copy in
		// the INBOX instead; nothing bounced.
		status, level = "skipped ("+e.Reason+"; kept in INBOX)", slog.LevelInfo
	case !e.Temporary:
		status = "bounced (" + e.Reason + ")"
		level = slog.LevelError
	}
	if !errors.Is(e.Err, ErrNoFolder) {
		attrs = append(attrs, slog.String("dsn", e.dsn()))
	}
	attrs = append(attrs, slog.String("status", status), slog.String("error", e.Error()))
	logwriter.LogAttrs(ctx, s.log, level, "delivery", attrs...)
}

// Close releases the maildirs the Store keeps open between deliveries.
// Deliveries may go on afterwards; they open what they need again.
func (s *Store) Close() error {
	s.maildirs.closeAll()
	return nil
}
