package main

import (
	"bufio"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/user"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"courriel/delivery/maildrop"
	"courriel/smtp"
)

// maildropDir is the maildrop under the spool: sendmail writes there when
// the server cannot take a message, the server picks it up.
func maildropDir(queueDir string) string { return filepath.Join(queueDir, "maildrop") }

// openMaildrop makes and opens the maildrop under the spool queueDir, and
// lets every user through the spool to it: search permission (x) for
// group and others on the spool directory, never read or write, as
// Postfix's /var/spool/postfix. Nothing else there opens to them: the
// spool's files are 0600, its subdirectories 0700 (maildrop-corrupt
// too), and the control socket checks its client's credentials. A spool
// owned by someone else is left as it is (and said so): only its owner's
// sendmail can reach the maildrop then.
func openMaildrop(queueDir string, log *slog.Logger) (*maildrop.Dir, error) {
	fi, err := os.Stat(queueDir)
	if err != nil {
		return nil, fmt.Errorf("maildrop: %w", err)
	}
	if perm := fi.Mode().Perm(); perm&0o011 != 0o011 {
		st, ok := fi.Sys().(*syscall.Stat_t)
		if ok && int(st.Uid) == os.Geteuid() {
			if err := os.Chmod(queueDir, fi.Mode()&(fs.ModePerm|fs.ModeSticky|fs.ModeSetgid)|0o011); err != nil {
				return nil, fmt.Errorf("maildrop: letting users through %s: %w", queueDir, err)
			}
			log.Info("maildrop: the spool directory is searchable by every user now, for sendmail to reach the maildrop", "dir", queueDir, "was", perm)
		} else {
			log.Warn("maildrop: the spool directory is not searchable by every user: only its owner's sendmail can leave mail in the maildrop", "dir", queueDir, "mode", perm)
		}
	}
	d, moved, err := maildrop.Setup(maildropDir(queueDir))
	if err != nil {
		return nil, err
	}
	if len(moved) > 0 {
		// Once, at the first start with this layout: one line.
		log.Warn("maildrop: set aside what the layout before the per-user subdirectories left (its writer cannot be known; resubmit it by hand)",
			"count", len(moved), "dir", maildrop.CorruptPath(d.Path()), "first", moved[0])
	}
	return d, nil
}

const (
	// pickupPoll is how often the maildrop is looked at without an
	// inotify event (one lost, or a file system without them).
	pickupPoll = time.Minute
	// pickupGap is the least time between two looks that events
	// started: a user making entries without end makes the server look
	// at most this often.
	pickupGap = time.Second
	// pickupRetryMin and pickupRetryMax bound the wait before a file
	// whose submission failed for now (4xx, the directory down) is
	// tried again, doubling in between.
	pickupRetryMin = 30 * time.Second
	pickupRetryMax = 15 * time.Minute
	// pickupTop bounds the names one look at the top reads.
	pickupTop = 100000
	// pickupPerUser bounds the files of one user submitted in one look:
	// the users are served in turn, none can hold the others back.
	pickupPerUser = 10
	// pickupRemoveBudget bounds what one look removes of a user's files
	// past maildrop.MaxPerUser (the rest at the next look), of the
	// entries at the top that are no user's subdirectory, and the
	// operations of one sweep of the trash (maildrop.Dir.Sweep).
	pickupRemoveBudget = 10000
	// pickupSlack is what a maildrop file's message may have beyond
	// message_size_limit: sendmail writes it before the server's
	// qualification and added fields, which the limit does not count
	// the same way; past it the session would refuse it anyway.
	pickupSlack = 64 << 10
)

// pickup is Postfix's pickup: it submits each maildrop file through the
// local socket's session path (smtp.Server.DialLocal), as the file's owner,
// with the client sendmail uses on the socket (localClient.send), so a
// message takes the same path whichever way it came. A file is removed
// once its message was stored or queued (the 250); refused for good or
// not taken within the queue's lifetime, it is bounced to its sender
// (bounce) and removed; what cannot be bounced (malformed, not its
// user's, a null or bad sender) is set aside with an ERROR naming it.
// One file at a time: the maildrop is the fallback of a server that was
// down, not a path to be fast on; users in turn, a few files each.
type pickup struct {
	dir        *maildrop.Dir
	srv        *smtp.Server
	log        *slog.Logger
	maxMessage int64
	lifetime   time.Duration
	host       string
	// bounce queues a DSN to sender for rcpts, with status and reason,
	// carrying data; nil: nothing can be bounced.
	bounce func(ctx context.Context, sender string, rcpts []string, status, reason string, data []byte) error
	now    func() time.Time
	// submitFn replaces submit in tests.
	submitFn func(*maildrop.File) error
	// listFn replaces dir.List in tests.
	listFn func(max int) (maildrop.Top, error)
	watch  *maildrop.Watcher
	// files: what is known of the files of the last looks (first seen,
	// retries), by user and name; only names of the last listing of
	// each user are kept.
	files map[pickupKey]*pickupState
	// next is the uid the next look starts with (round robin).
	next uint32
	// reported: the problems of the last look that were logged (an
	// entry skipped, one that cannot be removed), by entry and why,
	// so that one that stays is logged once, not at each look.
	reported map[string]bool
}

type pickupKey struct {
	uid  uint32
	name string
}

type pickupState struct {
	// seen is when this server first saw the file: a temporary file's
	// age, and a file's lifetime (with its mtime, which its owner sets).
	seen time.Time
	next time.Time
	wait time.Duration
}

func newPickup(dir *maildrop.Dir, srv *smtp.Server, log *slog.Logger, maxMessage int64, lifetime time.Duration) *pickup {
	return &pickup{dir: dir, srv: srv, log: log, maxMessage: maxMessage + pickupSlack, lifetime: lifetime,
		now: time.Now, files: map[pickupKey]*pickupState{}}
}

// run picks up files until ctx ends: at once (what waited while the
// server was down), then at each inotify event (pickupGap apart at
// least), and every pickupPoll or when a retry is due.
func (p *pickup) run(ctx context.Context) {
	defer p.dir.Close()
	w, err := p.dir.Watch(ctx)
	if err != nil {
		p.log.Warn("maildrop: no inotify, looking every minute", "err", err)
	}
	p.watch = w
	var events <-chan struct{}
	if w != nil {
		events = w.C
	}
	for {
		wait := p.pass(ctx)
		if wait != 0 {
			// 0 only when files were taken and more are due.
			wait = max(wait, pickupGap)
		}
		gap := time.NewTimer(pickupGap)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
		case <-events:
			select {
			case <-ctx.Done():
			case <-gap.C:
			}
		case <-t.C:
		}
		t.Stop()
		gap.Stop()
		if ctx.Err() != nil {
			return
		}
	}
}

// pass looks at the maildrop once: every user's subdirectory in turn,
// starting after the last look's first, at most pickupPerUser files
// submitted of each. It returns how long to wait for the next look
// without an event: 0 only when files were taken and more are due.
func (p *pickup) pass(ctx context.Context) time.Duration {
	list := p.dir.List
	if p.listFn != nil {
		list = p.listFn
	}
	top, err := list(pickupTop)
	if err != nil {
		p.log.Error("maildrop: listing", "err", err)
		return pickupPoll
	}
	// A problem that stays is logged at the first look that sees it.
	reported := map[string]bool{}
	once := func(key string) bool {
		reported[key] = true
		return !p.reported[key]
	}
	defer func() { p.reported = reported }()
	for _, e := range top.Skipped {
		if once("skip\x00" + e.Name + "\x00" + e.Why) {
			p.log.Error("maildrop: an entry at the top cannot be read; skipped (logged once)", "entry", logName(e.Name), "owner", e.UID, "why", e.Why)
		}
	}
	// What no user's sendmail makes: removed (a directory moved into
	// the trash, its name free at once), a bounded number per look, one
	// line per look.
	var removed []maildrop.Entry
	owners := map[uint32]bool{}
	for i, e := range top.Foreign {
		if i == pickupRemoveBudget {
			break
		}
		if err := p.dir.RemoveForeign(e.Name); err != nil {
			if once("foreign\x00" + e.Name) {
				p.log.Error("maildrop: cannot remove an entry that is no user's subdirectory (logged once)", "entry", logName(e.Name), "owner", e.UID, "err", err)
			}
			continue
		}
		removed = append(removed, e)
		owners[e.UID] = true
	}
	if len(removed) > 0 {
		p.log.Warn("maildrop: removed entries that are no user's subdirectory", "count", len(removed), "owners", len(owners),
			"entry", logName(removed[0].Name), "owner", removed[0].UID, "why", removed[0].Why, "left", len(top.Foreign)-min(len(top.Foreign), pickupRemoveBudget))
	}
	if _, problems, err := p.dir.Sweep(pickupRemoveBudget); err != nil {
		if once("sweep\x00" + err.Error()) {
			p.log.Error("maildrop: removing what was moved into the trash", "dir", filepath.Join(maildrop.CorruptPath(p.dir.Path()), maildrop.TrashName), "err", err)
		}
	} else {
		for _, e := range problems {
			if once("trash\x00" + e.Name) {
				p.log.Error("maildrop: cannot remove an entry of the trash (logged once)", "entry", filepath.Join(maildrop.CorruptPath(p.dir.Path()), maildrop.TrashName, logName(e.Name)), "why", e.Why)
			}
		}
	}
	for _, uid := range top.Unsafe {
		p.log.Warn("maildrop: a user's subdirectory is writable by others: not read until its owner makes it 0700 (sendmail does)", "uid", uid)
	}
	p.watch.Keep(top.Users)
	users := top.Users
	if i, _ := slices.BinarySearch(users, p.next); i < len(users) {
		users = append(slices.Clone(users[i:]), users[:i]...)
	}
	if len(users) > 0 {
		p.next = users[0] + 1
		if len(users) > 1 {
			p.next = users[1]
		}
	}
	listed := map[uint32]bool{}
	wait, more := pickupPoll, false
	for _, uid := range users {
		if ctx.Err() != nil {
			return pickupPoll
		}
		listed[uid] = true
		w, m := p.user(ctx, uid)
		wait, more = min(wait, w), more || m
	}
	for k := range p.files {
		if !listed[k.uid] {
			delete(p.files, k)
		}
	}
	if more {
		return 0
	}
	return wait
}

// user looks at one user's subdirectory; more: files were taken and more
// were due than pickupPerUser.
func (p *pickup) user(ctx context.Context, uid uint32) (wait time.Duration, more bool) {
	log := p.log.With("uid", uid)
	u, err := p.dir.OpenUser(uid)
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			log.Warn("maildrop: a user's subdirectory changed since the listing", "err", err)
		}
		return pickupPoll, false
	}
	defer u.Close()
	if err := p.watch.AddUser(uid); err != nil {
		log.Warn("maildrop: no inotify for a user's subdirectory", "err", err)
	}
	l, err := u.List(maildrop.MaxPerUser, pickupRemoveBudget)
	if err != nil {
		log.Error("maildrop: listing a user's subdirectory", "err", err)
		return pickupPoll, false
	}
	if l.Over > 0 {
		log.Warn("maildrop: a user's subdirectory holds more than its limit: files past it removed, never read",
			"limit", maildrop.MaxPerUser, "removed", l.Over)
	}
	if len(l.Other) > 0 {
		removed := 0
		for _, name := range l.Other {
			if u.Remove(name) == nil {
				removed++
			}
		}
		log.Warn("maildrop: removed entries of a user's subdirectory that sendmail does not make", "count", removed, "entry", logName(l.Other[0]))
	}
	now := p.now()
	present := map[pickupKey]bool{}
	state := func(name string) *pickupState {
		k := pickupKey{uid, name}
		present[k] = true
		st := p.files[k]
		if st == nil {
			st = &pickupState{seen: now}
			p.files[k] = st
		}
		return st
	}
	for _, name := range l.Temp {
		// Its age by this server's clock: the owner sets the mtime.
		if now.Sub(state(name).seen) < maildrop.StaleAfter {
			continue
		}
		if err := u.Remove(name); err != nil {
			log.Warn("maildrop: stale temporary file", "file", name, "err", err)
		} else {
			log.Warn("maildrop: removed a temporary file its writer left", "file", name)
		}
	}
	wait, taken := pickupPoll, 0
	for _, name := range l.Ready {
		st := state(name)
		if ctx.Err() != nil {
			break
		}
		if now := p.now(); now.Before(st.next) {
			wait = min(wait, st.next.Sub(now))
			continue
		}
		if taken == pickupPerUser {
			more = true
			continue
		}
		taken++
		if newName, ok := p.take(ctx, u, name, st); !ok {
			wait = min(wait, st.wait)
		} else if newName != "" {
			k := pickupKey{uid, newName}
			p.files[k], present[k] = st, true
			wait = min(wait, st.wait)
		}
	}
	for k := range p.files {
		if k.uid == uid && !present[k] {
			delete(p.files, k)
		}
	}
	return wait, more
}

// take submits one file; ok false when it stays (st says when to try
// again); newName, when the file was replaced by one for the recipients
// left (a partial submission).
func (p *pickup) take(ctx context.Context, u *maildrop.UserDir, name string, st *pickupState) (newName string, ok bool) {
	log := p.log.With("file", name, "uid", u.UID)
	later := func() {
		st.wait = min(max(2*st.wait, pickupRetryMin), pickupRetryMax)
		st.next = p.now().Add(st.wait)
	}
	f, err := u.Read(name, p.maxMessage)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return "", true
	case errors.Is(err, maildrop.ErrMalformed):
		return "", p.setAside(u, name, err.Error(), st)
	case err != nil:
		// A lease the owner holds (EAGAIN), EIO: the lifetime runs all
		// the same, by this server's clock.
		if p.now().Sub(st.seen) > p.lifetime {
			return "", p.setAside(u, name, "not readable within the queue's lifetime: "+err.Error(), st)
		}
		log.Error("maildrop: reading", "err", err)
		later()
		return "", false
	}
	submit := p.submit
	if p.submitFn != nil {
		submit = p.submitFn
	}
	err = submit(f)
	var ee *exitError
	var pe *partialError
	errors.As(err, &ee)
	if errors.As(err, &pe) {
		// Sent to some recipients: the file is replaced by one for the
		// rest, so that none gets it twice.
		env := &maildrop.Envelope{From: pe.sender, FromSet: true, Recipients: pe.rest,
			Notify: f.Envelope.Notify, Ret: f.Envelope.Ret, EnvID: f.Envelope.EnvID}
		nn, rerr := u.Rewrite(f, env, pe.data)
		if rerr != nil {
			log.Error("maildrop: sent to part of its recipients but not rewritten for the rest; they may get it twice", "err", rerr, "sent_err", err)
			later()
			return "", false
		}
		log.Info("maildrop: picked up for part of its recipients; the rest wait in a new file", "new_file", nn, "left", len(pe.rest), "err", err)
		name, log = nn, log.With("file", nn)
		f.Name, f.Envelope, f.Message = nn, env, pe.data
		if ee.code == exTempFail || ee.code == exSoftware {
			later()
			return nn, false
		}
		newName = nn
	}
	switch {
	case err == nil:
		if err := u.Remove(name); err != nil {
			// Submitted, and still there: a restart submits it again.
			log.Error("maildrop: submitted but not removed; it may be submitted twice", "err", err)
			later()
			return "", false
		}
		log.Info("maildrop: picked up")
		return "", true
	case ee != nil && ee.code != exTempFail && ee.code != exSoftware:
		// Refused for good (5xx, a bad address, no recipient): nothing
		// would change at another try; bounced to the sender.
		why := strings.TrimSuffix(err.Error(), "; mail NOT sent")
		return newName, p.bounceOrSetAside(ctx, u, f, cmp.Or(permanentStatus.FindString(why), "5.0.0"), why, st)
	case p.now().Sub(minTime(f.Written, st.seen)) > p.lifetime:
		return newName, p.bounceOrSetAside(ctx, u, f, "4.4.7", "not delivered within the queue's lifetime: "+err.Error(), st)
	}
	later()
	log.Warn("maildrop: not taken now; trying again later", "err", err, "retry_in", st.wait)
	return newName, false
}

// permanentStatus finds the enhanced status code of a 5xx reply in an
// error's text.
var permanentStatus = regexp.MustCompile(`\b5\.[0-9]{1,3}\.[0-9]{1,3}\b`)

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// submit hands f's message to the local session as its owner.
func (p *pickup) submit(f *maildrop.File) error {
	a, err := pickupArgs(f.Envelope)
	if err != nil {
		return err
	}
	conn, err := p.srv.DialLocal(smtp.LocalPeer{UID: f.UID, GID: f.GID, Source: f.Name})
	if err != nil {
		return exitf(exTempFail, "%v", err)
	}
	defer conn.Close()
	c := &localClient{conn: conn, r: bufio.NewReader(conn)}
	return c.send(a, ownerLogin(f.UID), f.Envelope.FullName, withDate(f.Message, f.Written))
}

// withDate is msg with a Date: field of written, the time its file was
// written into the maildrop, when it has none. The server would date it
// when it is picked up: cron's mail of 3:00, left in the maildrop while
// the server was stopped, would read as sent when the server came back.
// Postfix's cleanup dates it by postdrop's time record, written when
// sendmail ran. (The file's owner may set its mtime, as they may write a
// Date: of their own.)
func withDate(msg []byte, written time.Time) []byte {
	if written.IsZero() {
		return msg
	}
	fields, _, _ := splitHeader(msg)
	for _, f := range fields {
		if strings.EqualFold(f.name, "Date") {
			return msg
		}
	}
	d := written.AppendFormat([]byte("Date: "), "Mon, 02 Jan 2006 15:04:05 -0700 (MST)")
	return append(append(d, "\r\n"...), msg...)
}

// pickupArgs is the command line a file's envelope stands for, as
// strictly checked as sendmail's: the file is its owner's writing, and
// these go on SMTP command lines.
func pickupArgs(env *maildrop.Envelope) (*sendmailArgs, error) {
	a := &sendmailArgs{from: env.From, fromSet: env.FromSet, extract: env.Extract, rcpts: env.Recipients, envid: env.EnvID}
	if env.Notify != "" {
		if err := a.option('N', env.Notify); err != nil {
			return nil, exitf(exUsage, "%v", err)
		}
	}
	if env.Ret != "" {
		if err := a.option('R', env.Ret); err != nil {
			return nil, exitf(exUsage, "%v", err)
		}
	}
	return a, nil
}

func ownerLogin(uid uint32) string {
	login := strconv.FormatUint(uint64(uid), 10)
	if u, err := user.LookupId(login); err == nil {
		login = u.Username
	}
	return login
}

// bounceOrSetAside bounces f to its sender for every recipient, with
// status and why, and removes it; a file that cannot be bounced (a null
// or bad sender, no recipient, no queue) is set aside with an ERROR. ok:
// the file is gone from the subdirectory.
func (p *pickup) bounceOrSetAside(ctx context.Context, u *maildrop.UserDir, f *maildrop.File, status, why string, st *pickupState) bool {
	log := p.log.With("file", f.Name, "uid", u.UID)
	sender, rcpts, data := p.bounceEnvelope(f)
	if status[0] == '4' {
		status = "5" + status[1:] // given up: a failure (RFC 3463 4.4.7 → 5.4.7)
	}
	err := errors.New("no sender to bounce to (null sender)")
	if sender != "" && p.bounce != nil {
		err = p.bounce(ctx, sender, rcpts, status, why, data)
	}
	if err == nil {
		if rerr := u.Remove(f.Name); rerr != nil {
			log.Error("maildrop: bounced but not removed; it may be bounced twice", "err", rerr)
			st.wait, st.next = pickupRetryMax, p.now().Add(pickupRetryMax)
			return false
		}
		log.Warn("maildrop: not delivered; bounced to the sender", "sender", logName(sender), "recipients", len(rcpts), "status", status, "why", why)
		return true
	}
	return p.setAside(u, f.Name, why+"; and it cannot be bounced: "+err.Error(), st)
}

// bounceEnvelope is whom f bounces to, for which recipients, with what
// message: as the session would have made them of it.
func (p *pickup) bounceEnvelope(f *maildrop.File) (sender string, rcpts []string, data []byte) {
	env := f.Envelope
	switch {
	case !env.FromSet:
		sender = qualify(ownerLogin(f.UID), p.host)
	case env.From != "" && env.From != "<>":
		sender = qualify(env.From, p.host)
	}
	a, err := pickupArgs(env)
	if err == nil {
		if pm, err := prepareMessage(f.Message, a, sender, env.FullName, p.host); err == nil && len(pm.rcpts) > 0 {
			return sender, pm.rcpts, pm.data
		}
	}
	for _, r := range env.Recipients {
		rcpts = append(rcpts, qualify(r, p.host))
	}
	return sender, rcpts, f.Message
}

// setAside moves name into the corrupt directory with an ERROR that names
// it: its message is delivered to nobody and bounced to nobody. ok: the
// file is gone from the subdirectory (set aside, or removed past the
// user's bound); else it waits the longest retry.
func (p *pickup) setAside(u *maildrop.UserDir, name, why string, st *pickupState) bool {
	to, removed, err := u.SetAside(name)
	switch {
	case err != nil:
		p.log.Error("maildrop: cannot set a file aside; it stays", "file", logName(name), "uid", u.UID, "why", why, "err", err)
		st.wait, st.next = pickupRetryMax, p.now().Add(pickupRetryMax)
		return false
	case removed:
		p.log.Error("maildrop: file removed, not delivered nor bounced (the user has too many set aside already)", "file", logName(name), "uid", u.UID, "why", why)
	default:
		p.log.Error("maildrop: file set aside, not delivered nor bounced", "file", logName(name), "uid", u.UID,
			"moved_to", filepath.Join(maildrop.CorruptPath(p.dir.Path()), to), "why", why)
	}
	return true
}

// logName is a hostile file name made safe for the log.
func logName(name string) string { return listValue(name) }

// maildropSummary is `courriel queue list`'s view of the maildrop: per
// file waiting, a line (name, size, when written, "maildrop", the owner
// and sender), then its recipients, as the queue's entries are shown. A
// file that cannot be read is listed with why. size is the files' bytes.
func maildropSummary(queueDir string, maxMessage int64) (entries [][]string, size int64, err error) {
	d, err := maildrop.Open(maildropDir(queueDir))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, 0, nil // no server with a local socket ran on this spool
	}
	if err != nil {
		return nil, 0, err
	}
	defer d.Close()
	top, err := d.List(pickupTop)
	if err != nil {
		return nil, 0, err
	}
	for _, uid := range top.Users {
		u, err := d.OpenUser(uid)
		if err != nil {
			continue
		}
		l, err := u.List(maildrop.MaxPerUser, 0)
		if err != nil {
			u.Close()
			continue
		}
		for _, name := range l.Ready {
			f, err := u.Read(name, maxMessage+pickupSlack)
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			if err != nil {
				entries = append(entries, []string{fmt.Sprintf("%-33s %8s %-20s maildrop: uid %d: %s", name, "?", "", uid, listValue(err.Error()))})
				continue
			}
			from := "(the owner's login)"
			if f.Envelope.FromSet {
				from = "<" + listValue(f.Envelope.From) + ">"
			}
			size += int64(len(f.Message))
			lines := []string{fmt.Sprintf("%-33s %8d %-20s maildrop: uid %d, from %s", name, len(f.Message), f.Written.Format(time.DateTime), f.UID, from)}
			for _, r := range f.Envelope.Recipients {
				lines = append(lines, fmt.Sprintf("%55s %s", "", listValue(r)))
			}
			if f.Envelope.Extract {
				lines = append(lines, fmt.Sprintf("%55s %s", "", "(and those of the header: -t)"))
			}
			entries = append(entries, lines)
		}
		u.Close()
	}
	return entries, size, nil
}

// listValue is a value a local user wrote, made safe for a terminal:
// printable ASCII, bounded.
func listValue(v string) string {
	b := []byte(v)
	if len(b) > 300 {
		b = append(b[:300], "..."...)
	}
	for i, c := range b {
		if c < ' ' || c > '~' {
			b[i] = '?'
		}
	}
	return string(b)
}
