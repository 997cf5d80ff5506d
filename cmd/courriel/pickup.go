package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/user"
	"path/filepath"
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
// spool's files are 0600, its subdirectories 0700, and the control
// socket checks its client's credentials. A spool owned by someone else
// is left as it is (and said so): only its owner's sendmail can reach the
// maildrop then.
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
	return maildrop.Setup(maildropDir(queueDir))
}

const (
	// pickupPoll is how often the maildrop is looked at without an
	// inotify event (one lost, or a file system without them).
	pickupPoll = time.Minute
	// pickupRetryMin and pickupRetryMax bound the wait before a file
	// whose submission failed for now (4xx, the directory down) is
	// tried again, doubling in between.
	pickupRetryMin = 30 * time.Second
	pickupRetryMax = 15 * time.Minute
	// pickupBatch bounds the names one look at the directory reads.
	pickupBatch = 10000
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
// once its message was stored or queued (the 250), set aside (corrupt/)
// when malformed or refused for good, and tried again later when refused
// for now, until the queue's lifetime has passed since it was written.
// One file at a time: the maildrop is the fallback of a server that was
// down, not a path to be fast on.
type pickup struct {
	dir        *maildrop.Dir
	srv        *smtp.Server
	log        *slog.Logger
	maxMessage int64
	lifetime   time.Duration
	now        func() time.Time
	// retry: the files that failed for now, by name; only names of the
	// last listing are kept.
	retry map[string]pickupRetry
}

type pickupRetry struct {
	next time.Time
	wait time.Duration
}

func newPickup(dir *maildrop.Dir, srv *smtp.Server, log *slog.Logger, maxMessage int64, lifetime time.Duration) *pickup {
	return &pickup{dir: dir, srv: srv, log: log, maxMessage: maxMessage + pickupSlack, lifetime: lifetime,
		now: time.Now, retry: map[string]pickupRetry{}}
}

// run picks up files until ctx ends: at once (what waited while the
// server was down), then at each inotify event, and every pickupPoll or
// when a retry is due.
func (p *pickup) run(ctx context.Context) {
	defer p.dir.Close()
	events, err := p.dir.Watch(ctx)
	if err != nil {
		p.log.Warn("maildrop: no inotify, looking every minute", "err", err)
	}
	for {
		wait := p.pass(ctx)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-events:
		case <-t.C:
		}
		t.Stop()
	}
}

// pass looks at the directory once and submits what is due; it returns
// how long to wait for the next look without an event.
func (p *pickup) pass(ctx context.Context) time.Duration {
	l, err := p.dir.List(pickupBatch)
	if err != nil {
		p.log.Error("maildrop: listing", "err", err)
		return pickupPoll
	}
	for _, name := range l.Other {
		p.setAside(name, "not a maildrop file name")
	}
	now := p.now()
	for _, name := range l.Temp {
		if removed, err := p.dir.RemoveStale(name, now); err != nil {
			p.log.Warn("maildrop: stale temporary file", "file", name, "err", err)
		} else if removed {
			p.log.Warn("maildrop: removed a temporary file its writer left", "file", name)
		}
	}
	listed := make(map[string]bool, len(l.Ready))
	for _, name := range l.Ready {
		listed[name] = true
	}
	for name := range p.retry {
		if !listed[name] {
			delete(p.retry, name)
		}
	}
	wait := pickupPoll
	if len(l.Ready)+len(l.Temp)+len(l.Other) >= pickupBatch {
		wait = 0 // more than one look read
	}
	for _, name := range l.Ready {
		if ctx.Err() != nil {
			return wait
		}
		if r, ok := p.retry[name]; ok && p.now().Before(r.next) {
			wait = min(wait, r.next.Sub(p.now()))
			continue
		}
		if r, ok := p.take(name); !ok {
			p.retry[name] = r
			wait = min(wait, r.wait)
		}
	}
	return wait
}

// take submits one file; ok false (and when to try again) when it stays.
func (p *pickup) take(name string) (pickupRetry, bool) {
	log := p.log.With("file", name)
	later := func() (pickupRetry, bool) {
		r := p.retry[name]
		r.wait = min(max(2*r.wait, pickupRetryMin), pickupRetryMax)
		r.next = p.now().Add(r.wait)
		return r, false
	}
	f, err := p.dir.Read(name, p.maxMessage)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return pickupRetry{}, true
	case errors.Is(err, maildrop.ErrMalformed):
		return p.setAsideOrWait(name, err.Error())
	case err != nil:
		log.Error("maildrop: reading", "err", err)
		return later()
	}
	log = log.With("uid", f.UID)
	err = p.submit(f)
	var ee *exitError
	switch {
	case err == nil:
		if err := p.dir.Remove(name); err != nil {
			// Submitted, and still there: a restart submits it again.
			log.Error("maildrop: submitted but not removed; it may be submitted twice", "err", err)
			return later()
		}
		log.Info("maildrop: picked up")
		return pickupRetry{}, true
	case errors.As(err, &ee) && ee.code != exTempFail && ee.code != exSoftware:
		// Refused for good (5xx, a bad address, no recipient): nothing
		// would change at another try; kept for the admin, and the
		// reason in the log.
		return p.setAsideOrWait(name, strings.TrimSuffix(err.Error(), "; mail NOT sent"))
	case p.now().Sub(f.Written) > p.lifetime:
		log.Error("maildrop: not taken within the queue's lifetime; set aside", "written", f.Written, "err", err)
		return p.setAsideOrWait(name, "expired")
	}
	r, _ := later()
	log.Warn("maildrop: not taken now; trying again later", "err", err, "retry_in", r.wait)
	return r, false
}

// submit hands f's message to the local session as its owner.
func (p *pickup) submit(f *maildrop.File) error {
	env := f.Envelope
	a := &sendmailArgs{from: env.From, fromSet: env.FromSet, extract: env.Extract, rcpts: env.Recipients, envid: env.EnvID}
	// As strict as sendmail's command line: the file is its owner's
	// writing, and these go on SMTP command lines.
	if env.Notify != "" {
		if err := a.option('N', env.Notify); err != nil {
			return exitf(exUsage, "%v", err)
		}
	}
	if env.Ret != "" {
		if err := a.option('R', env.Ret); err != nil {
			return exitf(exUsage, "%v", err)
		}
	}
	login := strconv.FormatUint(uint64(f.UID), 10)
	if u, err := user.LookupId(login); err == nil {
		login = u.Username
	}
	conn, err := p.srv.DialLocal(smtp.LocalPeer{UID: f.UID, GID: f.GID, Source: f.Name})
	if err != nil {
		return exitf(exTempFail, "%v", err)
	}
	defer conn.Close()
	c := &localClient{conn: conn, r: bufio.NewReader(conn)}
	return c.send(a, login, env.FullName, f.Message)
}

// setAsideOrWait sets name aside, or, when it cannot be moved, leaves it
// alone for the longest retry wait rather than read it at every look.
func (p *pickup) setAsideOrWait(name, why string) (pickupRetry, bool) {
	if p.setAside(name, why) {
		return pickupRetry{}, true
	}
	return pickupRetry{next: p.now().Add(pickupRetryMax), wait: pickupRetryMax}, false
}

// setAside moves name into the maildrop's corrupt/ and says why.
func (p *pickup) setAside(name, why string) bool {
	to, err := p.dir.SetAside(name)
	if err != nil {
		p.log.Error("maildrop: cannot set a file aside; it stays", "file", logName(name), "why", why, "err", err)
		return false
	}
	p.log.Warn("maildrop: file set aside", "file", logName(name), "moved_to", filepath.Join(p.dir.Path(), "corrupt", to), "why", why)
	return true
}

// logName is a hostile file name made safe for the log.
func logName(name string) string { return listValue(name) }

// maildropSummary is `courriel queue list`'s view of the maildrop: a line
// per file waiting (name, size, when written, "maildrop", the owner and
// sender), then its recipients, as the queue's entries are shown. A file
// that cannot be read is listed with why. n is the number of files.
func maildropSummary(queueDir string, maxMessage int64) (lines []string, n int, err error) {
	d, err := maildrop.Open(maildropDir(queueDir))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, 0, nil // no server with a local socket ran on this spool
	}
	if err != nil {
		return nil, 0, err
	}
	defer d.Close()
	l, err := d.List(pickupBatch)
	if err != nil {
		return nil, 0, err
	}
	for _, name := range l.Ready {
		f, err := d.Read(name, maxMessage+pickupSlack)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		n++
		if err != nil {
			lines = append(lines, fmt.Sprintf("%-33s %8s %-20s maildrop: %s", name, "?", "", listValue(err.Error())))
			continue
		}
		from := "(the owner's login)"
		if f.Envelope.FromSet {
			from = "<" + listValue(f.Envelope.From) + ">"
		}
		lines = append(lines, fmt.Sprintf("%-33s %8d %-20s maildrop: uid %d, from %s", name, len(f.Message), f.Written.Format(time.DateTime), f.UID, from))
		for _, r := range f.Envelope.Recipients {
			lines = append(lines, fmt.Sprintf("%55s %s", "", listValue(r)))
		}
		if f.Envelope.Extract {
			lines = append(lines, fmt.Sprintf("%55s %s", "", "(and those of the header: -t)"))
		}
	}
	return lines, n, nil
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
