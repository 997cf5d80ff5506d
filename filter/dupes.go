package filter

import (
	"context"
	"crypto/md5"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"courriel/internal/atomicfile"
	"courriel/sieve"
)

// Pigeonhole's duplicate database, ~/.dovecot.lda-dupes: where
// dovecot-lda records whom vacation answered (Dovecot 2.3's
// lib-storage/mail-duplicate.c, unchanged in format since 2.0). courriel
// reads and updates it as dovecot-lda does, so that a server swapped for
// the other (or back) answers no correspondent twice within a period.
//
// The file: a uint32 version (2), then records of a uint32 stamp (the
// time the record expires, in seconds), a uint32 id size, a uint32 user
// size, the id and the user name (no terminator), every number in the
// host's byte order. A record holds while its stamp is not before now; a
// write drops the others. Dovecot calls a record whose sizes are 0 or
// over 4096 broken, and so does a file cut within a record: it keeps the
// records before, and so does courriel (it says so in the log).
//
// Locks, as dovecot-lda takes them: each id checked is locked (an fcntl
// write lock on ~/.dovecot.lda-dupes.locks/duplicate.lock.<md5 of the id
// in hex>, created as file_create_locked does: a temporary file locked,
// then linked to its name; unlinked before it is unlocked), held from
// the check to the record, so that two deliveries never both find a
// sender unanswered; and the file is replaced under a dotlock
// (~/.dovecot.lda-dupes.lock, created O_EXCL, written, fsynced and
// renamed over the file: the dotlock is the new file; then the home is
// fsynced, which Dovecot does not do, so that the record survives a
// crash), overridden when neither it nor
// the file changed for 10 s. dovecot-lda writes its whole table as it
// read it, so a record courriel adds between its read and its write is
// lost (as one dovecot-lda's is to another): a sender may then get a
// second reply, never a reply less.
//
// Sieve's duplicate extension (RFC 7352) keeps its ids there too, as
// Pigeonhole does: the id ext_duplicate_hash makes (sieve.DuplicateID's
// Pigeonhole), the user dovecot-lda names, the stamp the time of the run
// plus the period (:seconds, 12 hours by default, at most 2 days),
// recorded only once the copies are stored or the message rejected. A
// test locks its id (Dovecot's lock, as above), held until the delivery
// ends (dupHolds), then reads the file, and the ids earlier versions of
// courriel kept in ~/.courriel.duplicates, until they expire.

const (
	// DuplicateDBName is Pigeonhole's duplicate database in the home.
	DuplicateDBName = ".dovecot.lda-dupes"
	dupesLockName   = DuplicateDBName + ".lock"
	dupesLocksDir   = DuplicateDBName + ".locks"
	dupesVersion    = 2
	// dupesMaxField is Dovecot's DUPLICATE_BUFSIZE: an id or a user name
	// longer than that makes the record broken.
	dupesMaxField = 4096
	// maxDupesFile bounds what is read of the database and what a write
	// keeps (the records expiring first are dropped past it). Dovecot
	// sets no bound; its records are some 40 bytes, so this is 200,000
	// replies, redirects and duplicate tests within their periods.
	maxDupesFile = 8 << 20
	// dupesRetries is file_create_locked's MAX_RETRY_COUNT: the id's
	// lock file removed under us that many times is an error.
	dupesRetries = 1000
)

// dupWaits are Dovecot's lock timeouts, fields so that tests shorten them.
type dupWaits struct {
	idLock  time.Duration // DUPLICATE_LOCK_TIMEOUT_SECS
	dotlock time.Duration // default_mail_duplicate_dotlock_set.timeout
	stale   time.Duration // its stale_timeout
}

var defaultDupWaits = dupWaits{idLock: 65 * time.Second, dotlock: 20 * time.Second, stale: 10 * time.Second}

// dupRecord is one record of the database.
type dupRecord struct {
	id, user string
	expiry   int64 // unix seconds; < 0: forgotten, not written
	pinned   bool  // added by this write: never dropped by the bound
}

// dupTable is the database as read, records in file order.
type dupTable struct {
	recs  []dupRecord
	index map[string]int // dupKey → recs index
}

// dupKey is a record's identity as Dovecot's hash compares it: the id's
// bytes and the user name without regard to ASCII case (strcasecmp).
func dupKey(id, user string) string {
	return fmt.Sprintf("%d:%s%s", len(id), id, asciiLower(user))
}

func asciiLower(s string) string {
	return strings.Map(func(r rune) rune {
		if 'A' <= r && r <= 'Z' {
			return r + 'a' - 'A'
		}
		return r
	}, s)
}

// set records id for user until expiry; an expired stamp forgets what an
// earlier record of the file said, as Dovecot's read does.
func (t *dupTable) set(id, user string, expiry, now int64, pinned bool) {
	if t.index == nil {
		t.index = map[string]int{}
	}
	k := dupKey(id, user)
	i, ok := t.index[k]
	switch {
	case expiry < now && ok:
		t.recs[i].expiry = -1
	case expiry < now:
	case ok:
		t.recs[i].expiry, t.recs[i].pinned = expiry, t.recs[i].pinned || pinned
	default:
		t.index[k] = len(t.recs)
		t.recs = append(t.recs, dupRecord{id: id, user: user, expiry: expiry, pinned: pinned})
	}
}

// has says whether id is recorded, for any user: the file is one home's,
// and the user name Dovecot gave the mail user may differ from the one
// courriel guesses (see vacationUser), which must not send a reply twice.
func (t *dupTable) has(id string) bool {
	for _, r := range t.recs {
		if r.expiry >= 0 && r.id == id {
			return true
		}
	}
	return false
}

// parseDupes reads the database b as of now (unix seconds). problem says
// what was wrong with it ("" when nothing was); the records before the
// problem are kept, as Dovecot keeps them.
func parseDupes(b []byte, now int64) (dupTable, string) {
	var t dupTable
	if len(b) < 4 {
		if len(b) > 0 {
			return t, "shorter than its header"
		}
		return t, ""
	}
	if v := binary.NativeEndian.Uint32(b); v != dupesVersion {
		// Dovecot reads 0 and versions past 12 as 1.0's format
		// (2007, time_t stamps) and unlinks the others; neither is
		// written since 2.0, so courriel takes the file as empty, to
		// be replaced at the next reply.
		return t, fmt.Sprintf("version %d, not %d", v, dupesVersion)
	}
	b = b[4:]
	for len(b) >= 12 {
		stamp := binary.NativeEndian.Uint32(b)
		idSize := binary.NativeEndian.Uint32(b[4:])
		userSize := binary.NativeEndian.Uint32(b[8:])
		if idSize == 0 || userSize == 0 || idSize > dupesMaxField || userSize > dupesMaxField {
			return t, fmt.Sprintf("broken record (id size %d, user size %d)", idSize, userSize)
		}
		b = b[12:]
		if len(b) < int(idSize+userSize) {
			return t, "unexpected end of file within a record"
		}
		t.set(string(b[:idSize]), string(b[idSize:idSize+userSize]), int64(stamp), now, false)
		b = b[idSize+userSize:]
	}
	if len(b) > 0 {
		// Dovecot stops there without a word.
		return t, "a partial record header at its end"
	}
	return t, ""
}

// encode is the database's new content: the live records, at most
// maxDupesFile bytes of them, the pinned ones always, the others in the
// order of their expiry, latest first, past the bound.
func (t *dupTable) encode() []byte {
	size := 4
	var live []int
	for i, r := range t.recs {
		if r.expiry >= 0 {
			live = append(live, i)
			size += 12 + len(r.id) + len(r.user)
		}
	}
	drop := map[int]bool{}
	if size > maxDupesFile {
		byExpiry := slices.Clone(live)
		slices.SortStableFunc(byExpiry, func(a, b int) int { return int(t.recs[a].expiry - t.recs[b].expiry) })
		for _, i := range byExpiry {
			if size <= maxDupesFile {
				break
			}
			if r := t.recs[i]; !r.pinned {
				drop[i] = true
				size -= 12 + len(r.id) + len(r.user)
			}
		}
	}
	out := make([]byte, 0, size)
	out = binary.NativeEndian.AppendUint32(out, dupesVersion)
	for _, i := range live {
		if drop[i] {
			continue
		}
		r := t.recs[i]
		out = binary.NativeEndian.AppendUint32(out, uint32(r.expiry))
		out = binary.NativeEndian.AppendUint32(out, uint32(len(r.id)))
		out = binary.NativeEndian.AppendUint32(out, uint32(len(r.user)))
		out = append(out, r.id...)
		out = append(out, r.user...)
	}
	return out
}

// dupStamp is the record's stamp for a reply made at now for period: a
// uint32, clamped where Pigeonhole's would wrap.
func dupStamp(now time.Time, period time.Duration) int64 {
	return min(now.Unix()+int64(period/time.Second), math.MaxUint32)
}

// vacationDupID is Pigeonhole's id of a vacation reply (act_vacation_hash):
// MD5 of the sender as SMTP writes it, lower-cased, then the handle.
func vacationDupID(sender, handle string) string {
	h := md5.New()
	io.WriteString(h, asciiLower(smtpAddress(sender)))
	// Both are C strings there: a NUL ends them.
	handle, _, _ = strings.Cut(handle, "\x00")
	io.WriteString(h, handle)
	return string(h.Sum(nil))
}

// claimDupID is the id under which a keyed copy's claim (replyClaim) is
// recorded beside its reply: courriel's own, which Dovecot keeps as it
// keeps any record, until it expires.
func claimDupID(claim string) string {
	sum := sha256.Sum256([]byte(claim))
	return "courriel-vacation-claim:" + hex.EncodeToString(sum[:])
}

// smtpAddress is addr as Dovecot's smtp_address_write writes it: the
// local part bare when it is a dot-atom, else quoted (a backslash before
// '"' and '\'), whichever way it came.
func smtpAddress(addr string) string {
	at := strings.LastIndexByte(addr, '@')
	local, domain := addr, ""
	if at >= 0 {
		local, domain = addr[:at], addr[at:]
	}
	if len(local) >= 2 && local[0] == '"' && local[len(local)-1] == '"' {
		var b strings.Builder
		for i := 1; i < len(local)-1; i++ {
			if local[i] == '\\' && i+1 < len(local)-1 {
				i++
			}
			b.WriteByte(local[i])
		}
		local = b.String()
	}
	quote := local == "" || local[0] == '.' || local[len(local)-1] == '.' || strings.Contains(local, "..")
	for i := 0; i < len(local) && !quote; i++ {
		quote = local[i] != '.' && !atext(local[i])
	}
	if !quote {
		return local + domain
	}
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(local); i++ {
		if c := local[i]; c == '"' || c == '\\' {
			b.WriteByte('\\')
		}
		b.WriteByte(local[i])
	}
	b.WriteByte('"')
	return b.String() + domain
}

// atext is RFC 5321's atext, and UTF-8's bytes (SMTPUTF8 local parts).
func atext(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c >= 0x80 ||
		strings.IndexByte("!#$%&'*+-/=?^_`{|}~", c) >= 0
}

// readDupes reads the database in root (the home) as of now: its table,
// what was wrong with it, and its file's information (nil when there is
// none). Not a regular file (a FIFO, a symlink) is an error.
func readDupes(root *os.Root, now int64) (dupTable, string, os.FileInfo, error) {
	f, err := openHomeFile(root, DuplicateDBName)
	if f == nil || err != nil {
		return dupTable{}, "", nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return dupTable{}, "", nil, err
	}
	b, err := io.ReadAll(io.LimitReader(f, maxDupesFile+1))
	if err != nil {
		return dupTable{}, "", nil, fmt.Errorf("reading %s: %w", DuplicateDBName, err)
	}
	over := len(b) > maxDupesFile
	if over {
		b = b[:maxDupesFile]
	}
	t, problem := parseDupes(b, now)
	if over {
		problem = fmt.Sprintf("larger than %d bytes, the rest ignored", maxDupesFile)
	}
	return t, problem, fi, nil
}

// lockDupID takes Dovecot's lock on id (mail_duplicate_lock) in the home
// (root) and returns its release. uid ≥ 0 owns the lock directory when
// it is created here, as dovecot-lda, running as the user, would.
func (f *Filter) lockDupID(ctx context.Context, root *os.Root, id string, uid, gid int) (func(), error) {
	switch err := root.Mkdir(dupesLocksDir, 0o700); {
	case err == nil && uid >= 0:
		if err := root.Lchown(dupesLocksDir, uid, gid); err != nil {
			return nil, err
		}
	case err != nil && !errors.Is(err, fs.ErrExist):
		return nil, err
	}
	if fi, err := root.Lstat(dupesLocksDir); err != nil {
		return nil, err
	} else if !fi.IsDir() {
		return nil, fmt.Errorf("%s is not a directory", dupesLocksDir)
	}
	dir, err := root.OpenRoot(dupesLocksDir)
	if err != nil {
		return nil, err
	}
	sum := md5.Sum([]byte(id))
	name := "duplicate.lock." + hex.EncodeToString(sum[:])
	deadline := time.Now().Add(f.idLockWait(ctx))
	for range dupesRetries {
		lf, err := dir.OpenFile(name, os.O_RDWR|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
		if errors.Is(err, fs.ErrNotExist) {
			lf, err = createLocked(dir, name, uid, gid)
		} else if err == nil {
			var ok bool
			ok, err = lockExisting(ctx, dir, name, lf, deadline)
			if !ok {
				lf.Close()
				lf = nil
			}
		}
		if err != nil {
			dir.Close()
			return nil, fmt.Errorf("%s/%s: %w", dupesLocksDir, name, err)
		}
		if lf != nil {
			return func() {
				// Unlinked before it is unlocked, as Dovecot does: a
				// waiter that then gets the lock finds the name gone,
				// or another file, and starts again.
				_ = dir.Remove(name)
				lf.Close()
				dir.Close()
			}, nil
		}
	}
	dir.Close()
	return nil, fmt.Errorf("%s/%s: creating the locked file keeps failing", dupesLocksDir, name)
}

// lockExisting waits for the write lock on lf, the lock file name, and
// says whether lf is still the file of that name once locked.
func lockExisting(ctx context.Context, dir *os.Root, name string, lf *os.File, deadline time.Time) (bool, error) {
	fi, err := lf.Stat()
	if err != nil {
		return false, err
	}
	if !fi.Mode().IsRegular() {
		return false, errors.New("not a regular file")
	}
	if err := notSymlink(dir, name, lf); err != nil {
		return false, err
	}
	wait := 5 * time.Millisecond
	for {
		err := syscall.FcntlFlock(lf.Fd(), syscall.F_SETLK, &syscall.Flock_t{Type: syscall.F_WRLCK, Whence: io.SeekStart})
		if err == nil {
			break
		}
		if !errors.Is(err, syscall.EAGAIN) && !errors.Is(err, syscall.EACCES) {
			return false, err
		}
		if !time.Now().Before(deadline) {
			return false, errDupLocked
		}
		if err := pause(ctx, wait); err != nil {
			return false, err
		}
		wait = min(wait*3/2, 200*time.Millisecond)
	}
	now, err := dir.Lstat(name)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return os.SameFile(fi, now), nil
}

// createLocked creates the lock file name locked, as try_create_new: a
// temporary file, locked, then linked to name; nil and no error when
// another process linked its own first.
func createLocked(dir *os.Root, name string, uid, gid int) (*os.File, error) {
	tmp := name + "." + randomID()
	lf, err := dir.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return nil, err
	}
	defer dir.Remove(tmp)
	if uid >= 0 {
		err = lf.Chown(uid, gid)
	}
	if err == nil {
		// Nobody knows the file yet: the lock is free.
		err = syscall.FcntlFlock(lf.Fd(), syscall.F_SETLK, &syscall.Flock_t{Type: syscall.F_WRLCK, Whence: io.SeekStart})
	}
	if err == nil {
		err = dir.Link(tmp, name)
		if errors.Is(err, fs.ErrExist) {
			lf.Close()
			return nil, nil
		}
	}
	if err != nil {
		lf.Close()
		return nil, err
	}
	return lf, nil
}

func pause(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// dotlock is Dovecot's ~/.dovecot.lda-dupes.lock held by courriel: the
// database's next content is written into it, then renamed over it.
type dotlock struct {
	root *os.Root
	f    *os.File
	fi   os.FileInfo
	// syncDir makes the rename durable (Filter.syncDir)
	syncDir func(*os.Root) error
}

// changeInfo is what Dovecot's dotlock compares to tell a live lock from
// a stale one (update_change_info): a file's identity, times and size.
type changeInfo struct {
	seen               bool
	dev, ino           uint64
	ctime, mtime, size int64
}

// update notes fi's state at now and moves last to when it last changed.
func (c *changeInfo) update(fi os.FileInfo, now time.Time, last *time.Time) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return
	}
	// int64 conversions: the fields are 32 bits on 386 and arm.
	n := changeInfo{seen: true, dev: uint64(st.Dev), ino: uint64(st.Ino), ctime: int64(st.Ctim.Sec), mtime: int64(st.Mtim.Sec), size: int64(st.Size)}
	if n == *c {
		return
	}
	change := now
	if !c.seen {
		// First look: the file's own change time, its mtime when
		// later and not in the future (Dovecot's rule).
		change = time.Unix(n.ctime, 0)
		if n.mtime <= now.Unix() && n.mtime > n.ctime {
			change = time.Unix(n.mtime, 0)
		}
	}
	if change.After(*last) {
		*last = change
	}
	*c = n
}

// lockDupes takes the database's dotlock: created O_EXCL, waited for up
// to f.dupWait.dotlock while another process holds it, overridden once
// neither it nor the database changed for f.dupWait.stale (a holder that
// died), as Dovecot's file_dotlock_open.
func (f *Filter) lockDupes(ctx context.Context, root *os.Root) (*dotlock, error) {
	deadline := time.Now().Add(f.dupWait.dotlock)
	var lockInfo, fileInfo changeInfo
	var lastChange time.Time
	wait := 5 * time.Millisecond
	for {
		lf, err := root.OpenFile(dupesLockName, os.O_RDWR|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, 0o600)
		if err == nil {
			fi, err := lf.Stat()
			if err != nil {
				lf.Close()
				_ = root.Remove(dupesLockName)
				return nil, err
			}
			return &dotlock{root: root, f: lf, fi: fi, syncDir: f.syncDir}, nil
		}
		if !errors.Is(err, fs.ErrExist) {
			return nil, fmt.Errorf("creating %s: %w", dupesLockName, err)
		}
		now := time.Now()
		fi, err := root.Lstat(dupesLockName)
		if errors.Is(err, fs.ErrNotExist) && now.Before(deadline) {
			continue // released meanwhile: try again at once
		}
		if err != nil {
			return nil, err
		}
		lockInfo.update(fi, now, &lastChange)
		if now.Sub(lastChange) > f.dupWait.stale {
			if dfi, err := root.Stat(DuplicateDBName); err == nil {
				fileInfo.update(dfi, now, &lastChange)
			}
		}
		if now.Sub(lastChange) > f.dupWait.stale {
			// Nothing moved for the stale timeout: its holder is gone.
			if err := root.Remove(dupesLockName); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return nil, fmt.Errorf("overriding the stale %s: %w", dupesLockName, err)
			}
			lockInfo, lastChange = changeInfo{}, time.Time{}
		} else if !now.Before(deadline) {
			return nil, fmt.Errorf("%s held by another process for %v", dupesLockName, f.dupWait.dotlock)
		}
		if err := pause(ctx, wait); err != nil {
			return nil, err
		}
		wait = min(wait*3/2, 200*time.Millisecond)
	}
}

// ours says whether the dotlock's name is still our file: another
// process may have taken it for stale and made its own.
func (d *dotlock) ours() bool {
	fi, err := d.root.Lstat(dupesLockName)
	return err == nil && os.SameFile(fi, d.fi)
}

// release drops the dotlock without a new content.
func (d *dotlock) release() {
	if d.ours() {
		_ = d.root.Remove(dupesLockName)
	}
	d.f.Close()
}

// replace makes data the database: written into the dotlock with old's
// mode and owner (0600 and uid:gid when there was none; uid:gid when
// uid ≥ 0), synced, renamed over it, and the home synced, so that the
// record (a reply sent, a duplicate id) outlives a crash, as a copy's
// rename does (delivery's tmp → fsync → new → fsync dir). The dotlock is
// released either way; a home that cannot be synced once the file is
// in place is errNotDurable, the file kept: readers already see it.
func (d *dotlock) replace(data []byte, old os.FileInfo, uid, gid int) error {
	err := d.write(data, old, uid, gid)
	if err == nil && !d.ours() {
		err = fmt.Errorf("%s was taken for stale and replaced while written", dupesLockName)
		d.f.Close()
		return err
	}
	if err == nil {
		err = d.root.Rename(dupesLockName, DuplicateDBName)
	}
	if err != nil {
		d.release()
		return fmt.Errorf("writing %s: %w", DuplicateDBName, err)
	}
	d.f.Close()
	if err := d.syncDir(d.root); err != nil {
		return fmt.Errorf("%w: syncing the home after writing %s: %w", errNotDurable, DuplicateDBName, err)
	}
	return nil
}

// errNotDurable is a database write that is in place, and so read by the
// next delivery, but may not outlive a crash (the home's fsync failed).
var errNotDurable = errors.New("written, not synced")

// syncRootDir fsyncs the directory root is: what makes a rename in it
// durable.
func syncRootDir(root *os.Root) error { return atomicfile.SyncDir(root, ".") }

func (d *dotlock) write(data []byte, old os.FileInfo, uid, gid int) error {
	mode := os.FileMode(0o600)
	if old != nil {
		mode = old.Mode().Perm() & 0o666
		if st, ok := old.Sys().(*syscall.Stat_t); ok && uid < 0 {
			// Kept as it was; a server not running as root cannot
			// give it away, and leaves it its own.
			if err := d.f.Chown(int(st.Uid), int(st.Gid)); err != nil && !errors.Is(err, syscall.EPERM) {
				return err
			}
		}
	}
	if uid >= 0 {
		if err := d.f.Chown(uid, gid); err != nil {
			return err
		}
	}
	if err := d.f.Chmod(mode); err != nil {
		return err
	}
	if _, err := d.f.Write(data); err != nil {
		return err
	}
	return d.f.Sync()
}

// duplicatesFile is where courriel kept the duplicate extension's ids
// before it shared Pigeonhole's database: read, never written, until its
// records expire (at most sieve's 2 days).
const duplicatesFile = ".courriel.duplicates"

// homeDuplicates is the duplicate extension's memory in a home, as a run
// reads it; with holds, each id it is asked about is locked first.
type homeDuplicates struct {
	home     string
	holds    *dupHolds // nil: no lock taken
	uid, gid int       // who owns the lock directory, when created (-1: the process)
}

// Seen implements sieve.DuplicateStore: id is in Pigeonhole's database
// (for any user: the file is one home's) or in courriel's former file.
// With holds, the id is locked before the database is read, and stays
// locked until the recipient's marks are recorded (dupHolds).
func (d homeDuplicates) Seen(id sieve.DuplicateID, now time.Time) (bool, error) {
	root, err := os.OpenRoot(d.home)
	if err != nil {
		return false, err
	}
	defer root.Close()
	if d.holds != nil {
		if err := d.holds.lock(root, d.home, id.Pigeonhole, d.uid, d.gid); err != nil {
			return false, fmt.Errorf("locking the id: %w", err)
		}
	}
	t, _, _, err := readDupes(root, now.Unix())
	if err != nil {
		return false, fmt.Errorf("%s: %w", DuplicateDBName, err)
	}
	if t.has(id.Pigeonhole) {
		return true, nil
	}
	return (&sieve.DuplicateFile{Path: filepath.Join(d.home, duplicatesFile)}).Seen(id, now)
}

// dupHolds are the duplicate tests' id locks one Deliver holds. As
// Dovecot's mail_duplicate_check locks the id it checks and keeps it
// locked until the transaction commits its marks (mail-duplicate.c;
// Pigeonhole's lda plugin commits once the script's actions are done),
// a duplicate test locks its id before it reads the database, and the
// delivery keeps it until the recipient's marks are recorded (Deliver
// then releases it, before the next recipient's script runs): of two
// deliveries of one message, the second waits at its test, then finds
// the first's record. A lock is Dovecot's file lock
// (lockDupID: dovecot-lda waits for courriel and courriel for it) taken
// under an exclusion of this process's own (Filter.dupIDs), since an
// fcntl lock does not exclude its own process. Each is waited for up to
// Dovecot's DUPLICATE_LOCK_TIMEOUT_SECS and within the scripts' time
// (ctx); a wait that fails is the test's error (the script fails: the
// message is kept in the INBOX). The ids of one Deliver, whichever
// recipient's script tests them, are locked once: recipients sharing a
// home do not wait for each other.
type dupHolds struct {
	f    *Filter
	ctx  context.Context
	mu   sync.Mutex        // guards held
	held map[string]func() // home + "\x00" + id → its release
}

func (h *dupHolds) lock(root *os.Root, home, id string, uid, gid int) error {
	key := home + "\x00" + id
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.held[key]; ok {
		return nil
	}
	if len(h.held) >= maxHeldDupIDs {
		// A script testing ids by the thousand (duplicate in
		// foreverypart) would hold two descriptors and a lock file for
		// each: past the bound its tests read the database unlocked,
		// the race of two deliveries at once left open for them.
		return nil
	}
	// Bounded as the file lock is: a wait without end would hold the
	// delivery's slot (a queue job has no deadline) for good.
	wctx, cancel := context.WithTimeout(h.ctx, h.f.idLockWait(h.ctx))
	defer cancel()
	unlockHere, err := h.f.dupIDs.lock(wctx, key)
	if err != nil {
		if h.ctx.Err() == nil {
			return fmt.Errorf("%w (this process's)", errDupLocked)
		}
		return err
	}
	unlockFile, err := h.f.lockDupID(h.ctx, root, id, uid, gid)
	if err != nil {
		unlockHere()
		return err
	}
	if h.held == nil {
		h.held = map[string]func(){}
	}
	h.held[key] = func() {
		unlockFile()
		unlockHere()
	}
	return nil
}

// idLockWait is how long an id's lock is waited for: Dovecot's
// DUPLICATE_LOCK_TIMEOUT_SECS, but at most half the time ctx has left (the
// scripts' time, which every recipient of a delivery shares): past it the
// recipient is deferred (errDupLocked), and the others' scripts still
// have time to run.
func (f *Filter) idLockWait(ctx context.Context) time.Duration {
	wait := f.dupWait.idLock
	if d, ok := ctx.Deadline(); ok {
		wait = min(wait, time.Until(d)/2)
	}
	return wait
}

// errDupLocked: a duplicate test's id stayed locked by another delivery
// past Dovecot's DUPLICATE_LOCK_TIMEOUT_SECS. The delivery is deferred
// (a temporary failure), as dovecot-lda tempfails then: kept in the
// INBOX unfiltered, the message would miss its filing and replies.
var errDupLocked = errors.New("lock timeout: the id is held by another delivery")

// maxHeldDupIDs bounds the ids one recipient's delivery locks.
const maxHeldDupIDs = 64

// holding says whether a lock is held.
func (h *dupHolds) holding() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.held) > 0
}

// release releases every lock held.
func (h *dupHolds) release() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for k, unlock := range h.held {
		unlock()
		delete(h.held, k)
	}
}

// Commit implements sieve.DuplicateStore; the filter commits through
// markDuplicates, which knows the user.
func (d homeDuplicates) Commit([]sieve.DuplicateMark, time.Time) error {
	return errors.New("homeDuplicates: marks are committed by markDuplicates")
}

// markDuplicates records marks in home's database for user, under
// Dovecot's dotlock: one write for them all, each until its Expires.
// problem says what was wrong with the database ("" when nothing was).
func (f *Filter) markDuplicates(ctx context.Context, home, user string, marks []sieve.DuplicateMark, uid, gid int) (problem string, err error) {
	unlockHome, err := f.replyHomes.lock(ctx, home)
	if err != nil {
		return "", err
	}
	defer unlockHome()
	root, err := os.OpenRoot(home)
	if err != nil {
		return "", err
	}
	defer root.Close()
	dl, err := f.lockDupes(ctx, root)
	if err != nil {
		return "", err
	}
	now := f.o.Now().Unix()
	t, problem, old, err := readDupes(root, now)
	if err != nil {
		dl.release()
		return "", err
	}
	for _, m := range marks {
		if len(m.ID.Pigeonhole) != md5.Size {
			continue // not an id the interpreter made
		}
		t.set(m.ID.Pigeonhole, user, min(m.Expires.Unix(), math.MaxUint32), now, true)
	}
	return problem, dl.replace(t.encode(), old, uid, gid)
}
