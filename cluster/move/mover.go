package move

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"courriel/cluster"
	"courriel/directory"
	"courriel/internal/atomicfile"
)

// HomeWriter changes a user's home node on the directory's provider
// (*directory.Directory's SetHomeNode).
type HomeWriter interface {
	SetHomeNode(ctx context.Context, login, node string) error
}

// SessionEnder ends a user's sessions on one server (imap, managesieve):
// it closes them, refuses the user's logins until release, and returns
// once the closed sessions have let go of the home.
type SessionEnder interface {
	EndUser(ctx context.Context, login string) (ended int, release func(), err error)
}

// Sender hands an archive to the new home node; SendImport by default.
type Sender func(ctx context.Context, c *cluster.Cluster, node cluster.Node, login string, a *Archive) error

// Options configure a Mover.
type Options struct {
	Directory UserLookup
	// FlushCache, when set, forgets cached directory answers, so that a
	// changed home node is seen as soon as this node's replica has it.
	FlushCache func()
	Writer     HomeWriter       // nil: moves are refused
	Cluster    *cluster.Cluster // nil: a single node, nowhere to move to
	Holds      *cluster.Holds
	Gate       *Gate
	Sessions   map[string]SessionEnder // by protocol name, for the progress lines
	Base       string                  // delivery's AllowedBase
	Limits     Limits
	Send       Sender // default SendImport
	Logger     *slog.Logger
	// DrainWait bounds the wait for local copies in flight, and for each
	// server's sessions of the user to end (default 1 min);
	// ReplicaWait the wait for this node's replica to show the new home
	// (default 2 min, then the move finishes in the background, for at
	// most an hour, the user held meanwhile).
	DrainWait, ReplicaWait time.Duration
	Now                    func() time.Time
	// NoPreCopy sends the whole home while the user is held, in one
	// stream (format 1), as nodes without pre-copies take it. By default
	// the home is pre-copied while the user works, then only what changed
	// is sent held.
	NoPreCopy bool
	// RepeatFiles and RepeatBytes: when the changes since the pre-copy
	// send more files or bytes than this (default 2,000 and 64 MB), they
	// are sent once more before the user is held.
	RepeatFiles int
	RepeatBytes int64
}

// Mover moves users homed on this node to another node, one at a time.
type Mover struct {
	o  Options
	mu sync.Mutex // one move at a time
}

// NewMover returns a Mover.
func NewMover(o Options) *Mover {
	if o.Send == nil {
		o.Send = SendImport
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.DrainWait <= 0 {
		o.DrainWait = time.Minute
	}
	if o.ReplicaWait <= 0 {
		o.ReplicaWait = 2 * time.Minute
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.RepeatFiles <= 0 {
		o.RepeatFiles = 2000
	}
	if o.RepeatBytes <= 0 {
		o.RepeatBytes = 64 << 20
	}
	if o.Gate == nil {
		o.Gate = NewGate()
	}
	if o.Holds == nil {
		o.Holds = cluster.NewHolds()
	}
	return &Mover{o: o}
}

// ErrBusy: another move is running on this node.
var ErrBusy = errors.New("move: another move is in progress on this node")

// Move moves login, homed here, to node: hold (logins refused, copies
// queued; local copies refused by the Gate) → end the user's sessions →
// wait for copies in flight → archive the home and import it on node →
// set the home attribute on the provider → wait until this node's
// replica says node → set the old home aside as <home>.moved-<time> →
// release. Every error before the attribute is written releases the user,
// left where they were. progress receives one line per step.
func (m *Mover) Move(ctx context.Context, login, node string, progress func(string)) (err error) {
	if !m.mu.TryLock() {
		return ErrBusy
	}
	defer m.mu.Unlock()
	if progress == nil {
		progress = func(string) {}
	}
	if err := cluster.CheckNodeName(node); err != nil {
		return fmt.Errorf("move: %w", err)
	}
	target, remote, err := m.o.Cluster.Home(node)
	switch {
	case err != nil:
		return fmt.Errorf("move: %w", err)
	case !remote:
		return fmt.Errorf("move: %s is this node", node)
	}
	u, err := m.lookup(ctx, login)
	if err != nil {
		return fmt.Errorf("move: look up %s: %w", login, err)
	}
	if _, remote, err := m.o.Cluster.Home(u.Node); err != nil || remote {
		return fmt.Errorf("move: %s is homed on %q, not on this node", u.Login, u.Node)
	}
	if u.Maildir != "" && !under(strings.TrimSuffix(u.Maildir, "/"), u.Home) {
		return fmt.Errorf("move: the maildir of %s (%s) is not inside its home (%s): not supported", u.Login, u.Maildir, u.Home)
	}
	if m.o.Writer == nil {
		return errors.New("move: this node cannot write the home attribute on the directory")
	}
	log := m.o.Logger.With("login", u.Login, "home", u.Home, "to", target.Name)
	start := m.o.Now()

	// The pre-copy, while the user works: what the new node stages, from
	// which only the changes are sent once the user is held.
	var staged *Archive
	if !m.o.NoPreCopy {
		if staged, err = m.preCopy(ctx, u, target, progress); err != nil {
			return err
		}
	}

	// From here until the attribute is written, any failure puts
	// everything back.
	held := m.o.Now()
	releaseHold := m.o.Holds.Hold(u.Home)
	reopen := m.o.Gate.Close(u.Home)
	var releases []func()
	releaseAll := func() {
		for _, r := range releases {
			r()
		}
		releaseHold()
	}
	flipped := false
	defer func() {
		if !flipped {
			reopen()
			releaseAll()
			log.Warn("move failed; the user stays here", "err", err)
		}
	}()
	progress(fmt.Sprintf("holding %s (home %s): logins refused, new mail waits (queued or retried)", u.Login, u.Home))
	for name, s := range m.o.Sessions {
		ectx, cancel := context.WithTimeout(ctx, m.o.DrainWait)
		n, release, err := s.EndUser(ectx, u.Login)
		cancel()
		if release != nil {
			releases = append(releases, release)
		}
		if err != nil {
			return fmt.Errorf("move: end the %s sessions: %w", name, err)
		}
		progress(fmt.Sprintf("ended %d %s session(s)", n, name))
	}
	dctx, cancel := context.WithTimeout(ctx, m.o.DrainWait)
	err = m.o.Gate.Drain(dctx, u.Home)
	cancel()
	if err != nil {
		return fmt.Errorf("move: local deliveries to %s still running: %w", u.Login, err)
	}
	progress("no local delivery in flight")
	var a *Archive
	if staged != nil {
		if a, err = staged.Changes(true, m.o.Limits); err != nil {
			return err
		}
		renamed, removed := a.Changed()
		progress(fmt.Sprintf("sending the changes since the pre-copy to %s: %d entries, %d bytes of files; %d renamed, %d removed or replaced",
			target.Name, a.Entries(), a.Bytes(), renamed, removed))
	} else {
		if a, err = Scan(u.Login, u.Home, m.o.Limits); err != nil {
			return err
		}
		progress(fmt.Sprintf("sending %d entries, %d bytes of files to %s (%s)", a.Entries(), a.Bytes(), target.Name, target.SMTP))
	}
	if err := m.o.Send(ctx, m.o.Cluster, target, u.Login, a); err != nil {
		var re *ReplyError
		if !errors.As(err, &re) {
			// Cut off before the reply: the import may have finished there.
			return fmt.Errorf("%w (if %s finished the import anyway, its copy of %s blocks a new try: set it aside there first)", err, target.Name, u.Home)
		}
		return err
	}
	progress(fmt.Sprintf("home imported on %s", target.Name))

	// The attribute: after this write the user lives on node, whatever
	// happens here next. A write that failed may still have been applied
	// (a timeout after the provider took it), and the local replica
	// cannot tell yet: the old value is written back to know. If that
	// fails too, the user stays held (logins refused, mail queued) rather
	// than written to here while the directory may send them elsewhere.
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	werr := m.o.Writer.SetHomeNode(wctx, u.Login, target.Name)
	cancel()
	if werr != nil {
		self := m.o.Cluster.Self()
		wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		rerr := m.o.Writer.SetHomeNode(wctx, u.Login, self)
		cancel()
		if rerr == nil {
			return fmt.Errorf("move: set the home of %s to %s on the provider: %w; set back to %s (the copy imported on %s at %s is unused: set it aside there before trying again)",
				u.Login, target.Name, werr, self, target.Name, u.Home)
		}
		flipped = true // not released: see above
		log.Error("move: home attribute in an unknown state; user held", "err", werr, "restore_err", rerr)
		return fmt.Errorf("move: set the home of %s to %s on the provider: %w; writing %s back failed too: %v. "+
			"%s stays held here (logins refused, mail queued) until courriel restarts: set mailHost on the provider "+
			"(%s: the copy on %s is complete; %s: set that copy aside) before restarting",
			u.Login, target.Name, werr, self, rerr, u.Login, target.Name, target.Name, self)
	}
	flipped = true
	progress(fmt.Sprintf("directory provider: %s now homed on %s", u.Login, target.Name))
	finish := func(ctx context.Context) (string, error) {
		if err := m.waitReplica(ctx, u.Login, target.Name); err != nil {
			return "", err
		}
		aside, err := m.setAsideOld(u.Home)
		releaseAll() // the gate stays closed: nothing lands at the old path
		return aside, err
	}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), m.o.ReplicaWait)
	aside, err := finish(rctx)
	cancel()
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		progress(fmt.Sprintf("this node's directory replica does not show the new home yet: %s stays held here until it does (at most an hour), then the old home is set aside", u.Login))
		go func() {
			bctx, cancel := context.WithTimeout(context.Background(), time.Hour)
			defer cancel()
			aside, err := finish(bctx)
			if err != nil {
				releaseAll()
				log.Error("move: finishing in the background failed; user released, old home left in place", "err", err)
				return
			}
			log.Info("move finished in the background", "kept", aside)
		}()
		return nil
	case err != nil:
		releaseAll()
		return fmt.Errorf("move: %s now lives on %s, but: %w", u.Login, target.Name, err)
	}
	heldFor := m.o.Now().Sub(held).Round(time.Millisecond)
	progress(fmt.Sprintf("old home kept (not deleted) at %s", aside))
	progress(fmt.Sprintf("%s was held for %s", u.Login, heldFor))
	log.Info("user moved", "kept", aside, "entries", a.Entries(), "bytes", a.Bytes(), "held", heldFor,
		"elapsed", m.o.Now().Sub(start).Round(time.Millisecond))
	return nil
}

// preCopy sends the home to target's staging directory while the user
// works, and once more what changed meanwhile when that is large; it
// returns the archive last sent, which Changes continues from. A failure
// here has held no one: the user stays where they are, and what the new
// node staged is removed there by its next pre-copy of the home, or
// after its PendingTTL.
func (m *Mover) preCopy(ctx context.Context, u directory.User, target cluster.Node, progress func(string)) (*Archive, error) {
	t0 := m.o.Now()
	a, err := PreCopy(u.Login, u.Home, NewMoveID(), m.o.Limits)
	if err != nil {
		return nil, err
	}
	progress(fmt.Sprintf("pre-copying %d entries, %d bytes of files to %s (%s); %s keeps working meanwhile",
		a.Entries(), a.Bytes(), target.Name, target.SMTP, u.Login))
	if err := m.o.Send(ctx, m.o.Cluster, target, u.Login, a); err != nil {
		return nil, fmt.Errorf("%w (pre-copy: %s was not held and stays here)", err, u.Login)
	}
	progress(fmt.Sprintf("pre-copied in %s", m.o.Now().Sub(t0).Round(time.Millisecond)))
	d, err := a.Changes(false, m.o.Limits)
	if err != nil {
		return nil, err
	}
	if d.Entries() <= m.o.RepeatFiles && d.Bytes() <= m.o.RepeatBytes {
		return a, nil
	}
	renamed, removed := d.Changed()
	progress(fmt.Sprintf("changed meanwhile: %d entries, %d bytes of files; %d renamed, %d removed or replaced: sending them before holding %s",
		d.Entries(), d.Bytes(), renamed, removed, u.Login))
	if err := m.o.Send(ctx, m.o.Cluster, target, u.Login, d); err != nil {
		return nil, fmt.Errorf("%w (pre-copy, changes: %s was not held and stays here)", err, u.Login)
	}
	return d, nil
}

func (m *Mover) lookup(ctx context.Context, login string) (directory.User, error) {
	if m.o.FlushCache != nil {
		m.o.FlushCache()
	}
	return m.o.Directory.LookupUser(ctx, login)
}

// waitReplica polls this node's directory until login's home node is node.
func (m *Mover) waitReplica(ctx context.Context, login, node string) error {
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	for {
		u, err := m.lookup(ctx, login)
		if err == nil && u.Node == node {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

// setAsideOld renames the old home to <home>.moved-<time> (kept, never
// deleted here) and returns that path; "" when there was no home.
func (m *Mover) setAsideOld(home string) (string, error) {
	parent, name, err := openParent(m.o.Base, home)
	if err != nil {
		return "", err
	}
	defer parent.Close()
	if _, err := parent.Lstat(name); err != nil {
		return "", nil
	}
	aside, err := setAside(parent, name, "moved", m.o.Now())
	if err != nil {
		return "", fmt.Errorf("set the old home aside: %w", err)
	}
	if err := atomicfile.SyncDir(parent, "."); err != nil {
		return "", fmt.Errorf("set the old home aside: %w", err)
	}
	return strings.TrimSuffix(home, name) + aside, nil
}
