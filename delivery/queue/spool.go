package queue

import (
	"bytes"
	"cmp"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"

	"courriel/delivery"
)

const (
	extData      = ".eml"
	extEnvelope  = ".env"
	tmpPrefix    = ".tmp-"
	ownerFile    = ".owner"
	lockFile     = ".lock"
	flushFile    = ".flush"
	rescanFile   = ".rescan"
	reserveFile  = ".reserve"
	corruptDir   = "corrupt"
	holdDir      = "hold"
	dsnDir       = "dsn"
	onceDir      = "once"
	maxEnvelope  = 4 << 20 // an envelope of MaxRecipients long addresses stays far below
	readDirBatch = 1024
	// reserveSize stays allocated in the spool (reserveFile) for the
	// envelope rewrites that record deliveries: on a full file system a
	// rewrite frees a piece of it (reserveChunk, or what the envelope
	// needs) and succeeds, where a failed record would have a restart
	// deliver the same copies again. A piece, not all of it: what is freed
	// can be taken by any writer of that file system (a maildir beside
	// the spool), and the next record must still find some. New messages
	// are refused while the whole of it cannot be allocated again.
	// Postfix gets the same guarantee by marking a recipient done in
	// place, in blocks already allocated.
	reserveSize  = maxEnvelope
	reserveChunk = 64 << 10
)

// SpoolReserve is the room the spool keeps allocated for delivery records
// (reserveSize): its file system needs it free besides the messages.
const SpoolReserve = reserveSize

// spool is the on-disk half of the queue: file names, atomic writes and the
// locks shared with other processes. It holds no message state but the
// commits under way (committing).
type spool struct {
	dir      string
	maxRcpts int

	mu   sync.Mutex // serialises flock use on lock within this process
	dirs dirSync    // directory fsyncs shared by concurrent writers
	rm   removals   // removals waiting for the lock
	lock *os.File   // flock: envelope rewrites and removals, across processes
	own  *os.File   // flock held while this process owns the spool; nil in client mode

	// committing holds the given ids (Message.fixed) renamed into the
	// spool whose directory fsync has not returned, each with a channel
	// closed when it has (or the message was withdrawn); guarded by mu.
	// Another try of such an id waits for that rather than take it as
	// stored: it may yet be withdrawn.
	committing map[string]chan struct{}
	// fsyncDir, when set, replaces the spool directory's fsync (syncDir):
	// a test's fault.
	fsyncDir func() error

	reserveMu   sync.Mutex  // serialises making and spending the reserve
	reserved    atomic.Bool // reserveFile holds reserveSize allocated bytes (owner only)
	reserveLeft int64       // allocated bytes left at the start of reserveFile, -1 when it is gone; guarded by reserveMu

	// held is the number of envelopes in hold/ when this process last
	// changed it or (the owner) looked (countHeld): what Counts reports,
	// so that a metrics scrape reads no directory.
	held atomic.Int64
}

// openSpool opens the spool at dir. As the owner (client false) it creates
// the directory if needed and takes the owner lock, failing with ErrNotOwner
// when another process holds it, and writes its pid into the lock file for
// the admin and for `courriel check-config`. A client never creates nor
// locks anything it does not need: the spool must exist, and the owner lock
// is not even opened, so no client can take it from a server starting up.
func openSpool(dir string, maxRcpts int, client bool) (*spool, error) {
	if client {
		st, err := os.Stat(dir)
		if err != nil {
			return nil, fmt.Errorf("queue: spool: %w", err)
		}
		if !st.IsDir() {
			return nil, fmt.Errorf("queue: spool: %s is not a directory", dir)
		}
		// Without O_CREATE: a .lock made here by another user (root running
		// `courriel queue`) could lock the server out of its own spool.
		lock, err := os.OpenFile(filepath.Join(dir, lockFile), os.O_RDWR, 0)
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("queue: spool lock (has a server run on this spool yet?): %w", err)
		} else if err != nil {
			return nil, fmt.Errorf("queue: spool lock: %w", err)
		}
		return &spool{dir: dir, maxRcpts: maxRcpts, lock: lock}, nil
	}
	for _, sub := range []string{corruptDir, holdDir, dsnDir, onceDir} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o700); err != nil {
			return nil, fmt.Errorf("queue: spool: %w", err)
		}
	}
	lock, err := os.OpenFile(filepath.Join(dir, lockFile), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("queue: spool lock: %w", err)
	}
	own, err := os.OpenFile(filepath.Join(dir, ownerFile), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		lock.Close()
		return nil, fmt.Errorf("queue: spool owner lock: %w", err)
	}
	if err := syscall.Flock(int(own.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		own.Close()
		lock.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			if pid, perr := OwnerPID(dir); perr == nil && pid > 0 {
				return nil, fmt.Errorf("%w: %s (pid %d)", ErrNotOwner, dir, pid)
			}
			return nil, fmt.Errorf("%w: %s", ErrNotOwner, dir)
		}
		return nil, fmt.Errorf("queue: spool owner lock: %w", err)
	}
	// The pid is information, not the lock: a failure to write it is
	// logged by nobody and harms nothing but check-config's diagnosis.
	if err := own.Truncate(0); err == nil {
		own.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return &spool{dir: dir, maxRcpts: maxRcpts, lock: lock, own: own}, nil
}

// makeReserve allocates the reserve for envelope rewrites unless it is
// there already. It fails, with the file system's error, when there is no
// room for it.
func (s *spool) makeReserve() error {
	if s.reserved.Load() {
		return nil
	}
	s.reserveMu.Lock()
	defer s.reserveMu.Unlock()
	if s.reserved.Load() {
		return nil
	}
	p := filepath.Join(s.dir, reserveFile)
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("queue: reserve: %w", err)
	}
	// Allocated blocks, not a sparse file: freeing it must free space.
	err = unix.Fallocate(int(f.Fd()), 0, 0, reserveSize)
	if errors.Is(err, unix.EOPNOTSUPP) {
		_, err = f.WriteAt(make([]byte, reserveSize), 0)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		// What was allocated stays, and the file's inode at least can
		// still be spent.
		s.reserveLeft = max(s.reserveLeft, 0)
		return fmt.Errorf("queue: reserve: %w", err)
	}
	s.reserveLeft = reserveSize
	s.reserved.Store(true)
	return nil
}

// reserveRoom is makeReserve's rule for a process that does not own the
// spool, which must not make nor spend the owner's reserve: new mail of
// size octets is refused (ENOSPC) while the reserve is not whole (spent
// on a full file system, or never made) and the file system could not
// keep room to make it again once the message is written. Otherwise a
// client's mail would take the space the owner waits for, and delivery
// records would find neither.
func (s *spool) reserveRoom(size int64) error {
	var st unix.Stat_t
	err := unix.Stat(filepath.Join(s.dir, reserveFile), &st)
	if err == nil && st.Blocks*512 >= reserveSize {
		return nil // whole: what the client writes cannot take it
	}
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("spool reserve: %w", err)
	}
	var sfs unix.Statfs_t
	if err := unix.Statfs(s.dir, &sfs); err != nil {
		return fmt.Errorf("spool reserve: %w", err)
	}
	// The message's two files may each end in a block of their own.
	if free := int64(sfs.Bavail) * int64(sfs.Bsize); free < size+reserveSize+2*int64(sfs.Bsize) {
		return fmt.Errorf("no room for the spool's reserve (%d octets free): %w", free, syscall.ENOSPC)
	}
	return nil
}

// releaseReserve frees a piece of the reserve, at least need octets, for
// a record that found the file system full: the end of what is left, then,
// when nothing is left, the file itself, whose inode a spool out of inodes
// needs. false when there was nothing more to free.
func (s *spool) releaseReserve(need int) bool {
	s.reserveMu.Lock()
	defer s.reserveMu.Unlock()
	if s.reserveLeft < 0 {
		return false
	}
	s.reserved.Store(false)
	p := filepath.Join(s.dir, reserveFile)
	if s.reserveLeft > 0 {
		n := min(int64(need)+reserveChunk, s.reserveLeft)
		f, err := os.OpenFile(p, os.O_WRONLY, 0)
		if err == nil {
			err = unix.Fallocate(int(f.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, s.reserveLeft-n, n)
			f.Close()
		}
		if err == nil {
			s.reserveLeft -= n
			return true
		}
		// No holes here (or no file): the whole of it goes at once.
	}
	s.reserveLeft = -1
	return os.Remove(p) == nil
}

// noSpace: the file system (or the spool owner's quota) is full.
func noSpace(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)
}

func (s *spool) owner() bool { return s.own != nil }

func (s *spool) close() error {
	if s.own != nil {
		s.own.Close() // releases the flock
	}
	return s.lock.Close()
}

func (s *spool) path(id, ext string) string { return filepath.Join(s.dir, id+ext) }

// locked runs fn holding the spool lock against this and other processes.
func (s *spool) locked(fn func() error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := syscall.Flock(int(s.lock.Fd()), syscall.LOCK_EX); err != nil {
		return fmt.Errorf("queue: spool lock: %w", err)
	}
	defer syscall.Flock(int(s.lock.Fd()), syscall.LOCK_UN)
	return fn()
}

// writeTemp writes data to a fresh temporary file and fsyncs it. The caller
// renames it into place (or removes it).
func (s *spool) writeTemp(name string, data delivery.Content) (string, error) {
	var r [6]byte
	rand.Read(r[:])
	tmp := filepath.Join(s.dir, tmpPrefix+name+"-"+hex.EncodeToString(r[:]))
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", err
	}
	_, err = io.Copy(f, io.NewSectionReader(data, 0, data.Size()))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(tmp)
		return "", err
	}
	return tmp, nil
}

// syncDir makes the renames and removals in the spool done before the call
// durable. Concurrent callers share directory fsyncs (a group commit): with
// many deliveries finishing at once, one fsync covers them all instead of
// each waiting its turn for its own.
func (s *spool) syncDir() error {
	if s.fsyncDir != nil {
		return s.dirs.sync(s.fsyncDir)
	}
	return s.dirs.sync(func() error { return syncPath(s.dir) })
}

// dirSync runs one fsync at a time; a caller needs one that started after
// it called, and takes the first that does, whoever runs it.
type dirSync struct {
	mu       sync.Mutex
	cond     *sync.Cond // on mu; created on first use
	started  uint64     // fsyncs begun
	finished uint64     // the last fsync finished (they finish in order)
	running  bool
	failed   uint64 // the last fsync that failed, and its error
	err      error
}

func (d *dirSync) sync(fsync func() error) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.cond == nil {
		d.cond = sync.NewCond(&d.mu)
	}
	want := d.started + 1 // a running fsync may have begun before our change
	for d.finished < want {
		if d.running {
			d.cond.Wait()
			continue
		}
		d.running = true
		d.started++
		gen := d.started
		d.mu.Unlock()
		err := fsync()
		d.mu.Lock()
		d.running = false
		d.finished = gen
		if err != nil {
			d.failed, d.err = gen, err
		}
		d.cond.Broadcast()
	}
	// An fsync error is reported once by the kernel: whoever's change it
	// covered must treat that change as not durable, even if a later
	// fsync succeeded.
	if d.failed >= want {
		return d.err
	}
	return nil
}

// create stores a new message: data, then envelope (the commit point), then
// one directory fsync covering both renames. Nothing is acknowledged before it
// returns nil; a crash before that leaves files Open discards, and a failed
// fsync withdraws the message. A message whose id was given (m.fixed: a
// DSN's, WithOnceKey's) is renamed in under the lock, and not at all,
// errKnown, when that id is known: two tries at once store one. The fsync
// comes after the lock, which every delivery's record (update) takes too.
func (s *spool) create(m *Message, data delivery.Content, lockIt bool) error {
	env, err := encodeEnvelope(m)
	if err != nil {
		return err
	}
	if s.owner() {
		// Room for the records of what is queued comes before new mail.
		if err := s.makeReserve(); noSpace(err) {
			return fmt.Errorf("queue: write %s: no room for the spool's reserve: %w", m.ID, err)
		}
	} else if err := s.reserveRoom(data.Size() + int64(len(env))); err != nil {
		return fmt.Errorf("queue: write %s: %w", m.ID, err)
	}
	tmpData, err := s.writeTemp(m.ID+extData, data)
	if err != nil {
		return fmt.Errorf("queue: write %s: %w", m.ID, err)
	}
	tmpEnv, err := s.writeTemp(m.ID+extEnvelope, bytes.NewReader(env))
	if err != nil {
		os.Remove(tmpData)
		return fmt.Errorf("queue: write %s: %w", m.ID, err)
	}
	var wait chan struct{} // another try's commit of the same id, not settled
	commit := func() error {
		if m.fixed {
			if ch, ok := s.committing[m.ID]; ok {
				wait = ch
				return nil
			}
			if known, err := s.knownLocked(m.ID); err != nil || known {
				return cmp.Or(err, errKnown)
			}
		}
		if err := os.Rename(tmpData, s.path(m.ID, extData)); err != nil {
			return err
		}
		if err := os.Rename(tmpEnv, s.path(m.ID, extEnvelope)); err != nil {
			os.Remove(s.path(m.ID, extData))
			return err
		}
		if m.fixed {
			if s.committing == nil {
				s.committing = map[string]chan struct{}{}
			}
			s.committing[m.ID] = make(chan struct{})
		}
		return nil
	}
	for {
		wait = nil
		if lockIt || m.fixed {
			// Client mode: the owner's recovery, which removes temporary
			// and orphan files, runs under the same lock. A given id: its
			// check and its renames are one step against another try, a
			// removal (the mark is written first) or a hold.
			err = s.locked(commit)
		} else {
			err = commit()
		}
		if wait == nil {
			break
		}
		<-wait // then look again: stored, or withdrawn
	}
	if err != nil {
		os.Remove(tmpData)
		os.Remove(tmpEnv)
		if errors.Is(err, errKnown) {
			return err
		}
		return fmt.Errorf("queue: store %s: %w", m.ID, err)
	}
	err = s.syncDir()
	s.settle(m, err == nil)
	if err != nil {
		return fmt.Errorf("queue: store %s: %w", m.ID, err)
	}
	return nil
}

// settle ends create's commit of m after its directory fsync: a message
// not known durable is withdrawn rather than acknowledged, under the lock
// (a given id's other try, or known, must see it there or gone, not half
// of it), and a given id's waiters are woken.
func (s *spool) settle(m *Message, durable bool) {
	if durable && !m.fixed {
		return
	}
	end := func() error {
		if !durable {
			os.Remove(s.path(m.ID, extEnvelope))
			os.Remove(s.path(m.ID, extData))
		}
		if ch, ok := s.committing[m.ID]; ok {
			delete(s.committing, m.ID)
			close(ch)
		}
		return nil
	}
	if durable {
		// Nothing on disk changes: the mutex guarding committing is enough.
		s.mu.Lock()
		defer s.mu.Unlock()
		end()
		return
	}
	if s.locked(end) != nil {
		// No flock: withdrawn all the same, for this process at least.
		s.mu.Lock()
		defer s.mu.Unlock()
		end()
	}
}

// update rewrites an envelope after a delivery attempt. It fails with
// errDeleted if the message was deleted meanwhile, so a deletion by the admin
// is never undone.
func (s *spool) update(m *Message) error {
	env, err := encodeEnvelope(m)
	if err != nil {
		return err
	}
	// The new file is written and fsynced outside the lock (its name is
	// unique); only the check and the rename need it.
	tmp, err := s.writeTemp(m.ID+extEnvelope, bytes.NewReader(env))
	for noSpace(err) && s.releaseReserve(len(env)) {
		tmp, err = s.writeTemp(m.ID+extEnvelope, bytes.NewReader(env))
	}
	if err != nil {
		return fmt.Errorf("queue: update %s: %w", m.ID, err)
	}
	err = s.locked(func() error {
		if _, err := os.Lstat(s.path(m.ID, extEnvelope)); errors.Is(err, fs.ErrNotExist) {
			if !s.isHeld(m.ID) {
				return errDeleted
			}
			// Held during the attempt: what it delivered is recorded in
			// the held envelope, so that a release sends only the rest.
			if err := os.Rename(tmp, s.heldPath(m.ID, extEnvelope)); err != nil {
				return err
			}
			if err := syncPath(filepath.Join(s.dir, holdDir)); err != nil {
				return err
			}
			return errHeld
		}
		return os.Rename(tmp, s.path(m.ID, extEnvelope))
	})
	if err != nil {
		os.Remove(tmp)
		if errors.Is(err, errDeleted) || errors.Is(err, errHeld) {
			return err
		}
		return fmt.Errorf("queue: update %s: %w", m.ID, err)
	}
	if err := s.syncDir(); err != nil {
		return fmt.Errorf("queue: update %s: %w", m.ID, err)
	}
	return nil
}

// remove takes a message out of the spool: envelope first, so that a crash
// in between leaves an orphan data file that Open discards. Concurrent
// removals are batched: one takes the lock for all those waiting, and one
// directory fsync covers them, so that many deliveries finishing at once do
// not queue for the lock one by one.
func (s *spool) remove(id string) error {
	r := &removal{id: id, wake: make(chan struct{})}
	s.rm.mu.Lock()
	s.rm.pending = append(s.rm.pending, r)
	if !s.rm.running {
		s.rm.running, r.lead = true, true
	}
	lead := r.lead
	s.rm.mu.Unlock()
	if !lead {
		<-r.wake // done, or asked to lead the next batch
		lead = r.lead
	}
	if lead {
		s.removeBatch()
	}
	return r.err
}

// removals is the batch of removals waiting for the lock.
type removals struct {
	mu      sync.Mutex
	pending []*removal
	running bool // a batch is being removed; its leader hands over to the next
}

type removal struct {
	id   string
	held bool  // found and removed in hold/
	lead bool  // set under removals.mu before wake is closed
	err  error // set before wake is closed
	wake chan struct{}
}

// removeBatch removes every envelope asked for so far under one lock,
// then their data, then fsyncs the directory once, and makes the first
// request that came meanwhile lead the next batch.
func (s *spool) removeBatch() {
	s.rm.mu.Lock()
	batch := s.rm.pending
	s.rm.pending = nil
	s.rm.mu.Unlock()
	heldGone := false
	err := s.locked(func() error {
		for _, r := range batch {
			err := os.Remove(s.path(r.id, extEnvelope))
			switch {
			case errors.Is(err, fs.ErrNotExist):
				// Held while its last recipients were being delivered:
				// nothing is left to hold, and a release must not send
				// it again.
				if os.Remove(s.heldPath(r.id, extEnvelope)) == nil {
					os.Remove(s.heldPath(r.id, extData))
					r.held, heldGone = true, true
					continue
				}
				r.err = ErrNotFound
			case err != nil:
				r.err = fmt.Errorf("queue: remove %s: %w", r.id, err)
			}
		}
		if heldGone {
			s.countHeld()
			return syncPath(filepath.Join(s.dir, holdDir))
		}
		return nil
	})
	removed := 0
	for _, r := range batch {
		if r.err == nil && err != nil {
			r.err = err
		}
		if r.err != nil || r.held {
			continue
		}
		// Without its envelope nobody else touches the data file
		// (Open's recovery removes it as an orphan): no lock needed.
		if err := os.Remove(s.path(r.id, extData)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			r.err = fmt.Errorf("queue: remove %s: %w", r.id, err)
		}
		removed++
	}
	if removed > 0 {
		if err := s.syncDir(); err != nil {
			for _, r := range batch {
				if r.err == nil {
					r.err = fmt.Errorf("queue: remove %s: %w", r.id, err)
				}
			}
		}
	}
	s.rm.mu.Lock()
	defer s.rm.mu.Unlock()
	for _, r := range batch {
		if !r.lead {
			close(r.wake)
		}
	}
	if len(s.rm.pending) == 0 {
		s.rm.running = false
		return
	}
	next := s.rm.pending[0]
	next.lead = true
	close(next.wake)
}

// readEnvelope reads and checks one envelope, bounded in size.
func (s *spool) readEnvelope(id string) (*Message, error) {
	return s.readEnvelopeAt(s.path(id, extEnvelope), id)
}

func (s *spool) readEnvelopeAt(path, id string) (*Message, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("queue: read %s: %w", id, err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxEnvelope+1))
	if err != nil {
		return nil, fmt.Errorf("queue: read %s: %w", id, err)
	}
	if len(b) > maxEnvelope {
		return nil, fmt.Errorf("%w: %s: envelope larger than %d bytes", errCorrupt, id, maxEnvelope)
	}
	return decodeEnvelope(id, b, s.maxRcpts)
}

func (s *spool) openData(id string) (*os.File, error) {
	return s.openDataAt(s.path(id, extData), id)
}

func (s *spool) openDataAt(path, id string) (*os.File, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s: data file missing", errCorrupt, id)
	}
	return f, err
}

// quarantine moves a message's files into corrupt/ for the admin to look at.
func (s *spool) quarantine(id string) {
	for _, ext := range []string{extEnvelope, extData} {
		os.Rename(s.path(id, ext), filepath.Join(s.dir, corruptDir, id+ext))
	}
}

// listing is what a directory scan found.
type listing struct {
	envelopes []string // ids with an .env, at most the limit asked for
	data      map[string]bool
	temps     []string
	truncated bool
}

// scan reads the spool's names in batches, keeping at most limit envelope
// ids (Options.MaxQueueFiles) and reading at most 3*limit names in all.
func (s *spool) scan(limit int) (*listing, error) { return scanDir(s.dir, limit) }

// scanDir is scan of the spool's directory dir, or of hold/.
func scanDir(dir string, limit int) (*listing, error) {
	d, err := os.Open(dir)
	if err != nil {
		return nil, fmt.Errorf("queue: spool: %w", err)
	}
	defer d.Close()
	l := &listing{data: map[string]bool{}}
	seen := 0
	for {
		names, err := d.Readdirnames(readDirBatch)
		for _, name := range names {
			seen++
			switch {
			case strings.HasPrefix(name, tmpPrefix):
				l.temps = append(l.temps, name)
			case strings.HasSuffix(name, extEnvelope):
				id, perr := ParseID(strings.TrimSuffix(name, extEnvelope))
				if perr != nil || id+extEnvelope != name {
					continue // not ours; never touched
				}
				if len(l.envelopes) >= limit {
					l.truncated = true
					continue
				}
				l.envelopes = append(l.envelopes, id)
			case strings.HasSuffix(name, extData):
				id, perr := ParseID(strings.TrimSuffix(name, extData))
				if perr == nil && id+extData == name {
					l.data[id] = true
				}
			}
		}
		if errors.Is(err, io.EOF) || len(names) == 0 {
			return l, nil
		}
		if err != nil {
			return nil, fmt.Errorf("queue: spool: %w", err)
		}
		if seen >= 3*limit {
			l.truncated = true
			return l, nil
		}
	}
}

// request leaves a request file for the owner's runner.
func (s *spool) request(name string) error {
	f, err := os.OpenFile(filepath.Join(s.dir, name), os.O_WRONLY|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("queue: request %s: %w", strings.TrimPrefix(name, "."), err)
	}
	return f.Close()
}

// takeRequest removes a request file and reports whether it was there.
func (s *spool) takeRequest(name string) bool {
	return os.Remove(filepath.Join(s.dir, name)) == nil
}
