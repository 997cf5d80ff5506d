package filter

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"courriel/delivery"
	"courriel/directory"
	"courriel/sieve"
)

// Store is the delivery store (*delivery.Store).
type Store interface {
	Deliver(ctx context.Context, m *delivery.Message, rcpts []delivery.Recipient) []error
}

// Directory gives a maildrop's entry: its home (where the script is) and
// addresses (who the user is, for vacation). Asked only for a recipient
// that does not carry its entry (delivery.Recipient.Entry).
type Directory interface {
	Mailbox(ctx context.Context, addr string) (*directory.Mailbox, error)
}

// Resolver routes a redirect's addresses as smtp routes a RCPT (the
// directory): ours are stored here (through the queue's local copies,
// where the target's own script runs), others leave by the queue.
// ResolveClassified is given the class ClassifyDomain just said of the
// address's domain, so that the directory does not classify it again.
type Resolver interface {
	ClassifyDomain(ctx context.Context, domain string) (directory.DomainClass, error)
	ResolveClassified(ctx context.Context, addr string, class directory.DomainClass) (directory.Resolution, error)
}

// Outbound is the queue (*queue.Queue): redirects, vacation replies and
// notifications leave through it, durably queued when Accept returns.
type Outbound interface {
	// Accept is queue.Accept, or queue.AcceptForward when out.RemoteFrom
	// is set, with queue.WithOnceKey(out.Key). It returns the queue id
	// and the errors of the local copies.
	Accept(ctx context.Context, out Outgoing) (string, []error, error)
}

// Outgoing is a message the filter makes for Outbound: named fields, for
// its strings are easily swapped unnoticed in a list of arguments.
type Outgoing struct {
	// Key, when not "", names the message as queue.WithOnceKey does, the
	// same at every try of the delivery that makes it (queueKey): an
	// Accept under a key queued before, whether still queued or gone,
	// stores nothing and returns nil, so that a retry after a crash
	// between an Accept and its record here queues nothing twice.
	Key string
	// MsgID is the msg_id of the message it was made from, for the logs.
	MsgID string
	// From is the envelope sender; "" is the null sender.
	From string
	// RemoteFrom, when not "", is another sender (a redirect's SRS
	// address) for the remote copies than From, which the local copies
	// show (queue.AcceptForward).
	RemoteFrom string
	Remote     []string
	Local      []delivery.Recipient
	Data       delivery.Content
}

// Options configure a Filter.
type Options struct {
	Store     Store     // required
	Directory Directory // required
	// Outbound, when nil, makes redirects keep to the INBOX instead and
	// vacation replies not sent (logged).
	Outbound Outbound
	// Resolver, when set, sends redirects to our own addresses straight to
	// their maildirs (as local copies of the queued redirect); nil: every
	// redirect is a remote recipient of the queue.
	Resolver Resolver
	// SRS, when set, rewrites the envelope sender of redirects as for
	// alias forwards (mailauth.SRS); nil: the original sender.
	SRS interface {
		Forward(sender string) (string, error)
	}
	// Sign returns DKIM-Signature fields for a vacation reply (CRLF
	// line ends), nil when no key fits its From; nil: unsigned.
	Sign func(msg []byte) ([]byte, error)
	// Hostname names this host in Message-IDs of vacation replies.
	Hostname string
	// Before and After are the administrator's scripts run before and
	// after the user's (Pigeonhole's sieve_before, sieve_after), in order.
	Before, After []string
	// Global is the directory of the administrator's scripts that
	// `include :global` names (Pigeonhole's sieve_global); "" for none.
	Global string
	Limits sieve.Limits
	// Extensions are those scripts may require (Pigeonhole's
	// sieve_extensions; the zero value is its default set), the user's
	// and the administrator's alike: give ManageSieve the same, or a
	// script it stored would not compile here. A script requiring another
	// does not compile: the message is kept in the INBOX and the error
	// written to ~/.dovecot.sieve.log, as for any compile error.
	Extensions sieve.Extensions
	// GlobalExtensions are those only the administrator's scripts may
	// require (Pigeonhole's sieve_global_extensions; zero: none): Before,
	// After and the scripts they or the user's include :global. The
	// user's script and its :personal includes may not, even when
	// Extensions has them (give ManageSieve the same).
	GlobalExtensions sieve.GlobalExtensions
	// MaxScriptSize bounds a script file read from a home; default 1 MiB.
	MaxScriptSize int64
	// VacationUseOriginalRecipient counts a recipient's OrigTo (the
	// address the sender used, an alias of several users perhaps) among
	// the user's addresses when vacation checks that the message names
	// the user (Pigeonhole's sieve_vacation_use_original_recipient, off
	// by default: each member of a group alias would answer).
	VacationUseOriginalRecipient bool
	// Chown: files written in homes (vacation memories, ~/.dovecot.sieve.log)
	// belong to the user (when running as root).
	Chown bool
	// ResourceUsageTimeout is how long the cumulative usage of a user's
	// script is remembered (usage.go; Pigeonhole's
	// sieve_resource_usage_timeout): default
	// DefaultResourceUsageTimeout; negative: no cumulative limit.
	ResourceUsageTimeout time.Duration
	Logger               *slog.Logger
	Now                  func() time.Time
}

// Filter runs Sieve scripts at delivery. Safe for concurrent use.
type Filter struct {
	o     Options // immutable
	log   *slog.Logger
	cache *scriptCache
	usage usagePolicy
	homes [64]sync.Mutex // serialise courriel's memory updates per home (striped)
	// replyHomes serialises vacation's records per home (markReply)
	replyHomes homeLocks
	// dupIDs excludes the deliveries of this process from one another
	// on a duplicate test's id (dupHolds), keyed by home and id
	dupIDs homeLocks
	// dupWait: how long the locks of Pigeonhole's database are waited
	// for (Dovecot's timeouts; tests shorten them)
	dupWait dupWaits
	// since is a run's wall time (time.Since; tests make a stall)
	since func(time.Time) time.Duration
	// syncDir fsyncs a home after a rename in it (syncRootDir; tests
	// watch it)
	syncDir func(*os.Root) error
}

// New checks the options and returns a Filter.
func New(o Options) (*Filter, error) {
	if o.Store == nil || o.Directory == nil {
		return nil, errors.New("filter: Store and Directory are required")
	}
	if o.MaxScriptSize <= 0 {
		o.MaxScriptSize = 1 << 20
	}
	if o.Limits.MaxScriptSize == 0 || int64(o.Limits.MaxScriptSize) > o.MaxScriptSize {
		o.Limits.MaxScriptSize = int(o.MaxScriptSize)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	lg := o.Logger
	if lg == nil {
		lg = slog.New(slog.DiscardHandler)
	}
	if o.ResourceUsageTimeout == 0 {
		o.ResourceUsageTimeout = DefaultResourceUsageTimeout
	}
	maxUsage := o.Limits.MaxRunTime
	if maxUsage <= 0 {
		maxUsage = sieve.DefaultMaxRunTime
	}
	cache := newScriptCache(o.Limits, o.Extensions, o.MaxScriptSize, o.Global, 10000)
	cache.gexts = o.GlobalExtensions
	return &Filter{o: o, log: lg, cache: cache,
		usage: usagePolicy{timeout: o.ResourceUsageTimeout, high: defaultHighUsage, max: maxUsage}, since: time.Since, dupWait: defaultDupWaits, syncDir: syncRootDir}, nil
}

// plan is what the scripts decided for one recipient.
type plan struct {
	mb     *directory.Mailbox
	stores []delivery.Recipient
	// edits[i] is the header stores[i] carries (editheader), nil: the
	// message's own
	edits     []*sieve.HeaderEdit
	redirects []string
	// redirectEdits[i] is the header the redirect to redirects[i] carries
	redirectEdits []*sieve.HeaderEdit
	vacation      *sieve.VacationReply
	notifies      []*sieve.Notification // enotify's notifications, in order
	reject        *string
	// dupMarks are the duplicate tests' ids (RFC 7352) to remember once
	// the copies are stored or the message rejected: a message whose
	// copies could not be stored (a retry to come) was not seen.
	dupMarks []sieve.DuplicateMark
}

// Deliver stores m for each recipient as its scripts decide, and returns
// one error per recipient (nil: every copy the scripts asked for is
// durable and every redirect or reply durably queued). A recipient without
// a script gets a plain copy.
func (f *Filter) Deliver(ctx context.Context, m *delivery.Message, rcpts []delivery.Recipient) []error {
	errs := make([]error, len(rcpts))
	mr := &messageReader{m: m}
	plans := make([]*plan, len(rcpts))
	sctx, cancel := scriptContext(ctx)
	defer cancel()
	holds := &dupHolds{f: f, ctx: sctx}
	defer holds.release()
	sc := &storing{f: f, m: m, mr: mr, rcpts: rcpts, plans: plans}
	var planned []int // recipients whose copies are not stored yet
	for i := range rcpts {
		r := &rcpts[i]
		p, err := f.plan(ctx, sctx, m, r, mr, holds)
		switch {
		case err != nil:
			errs[i] = err
		case p == nil: // no script: a plain copy
			planned = append(planned, i)
		// A rejected message notifies no one (Pigeonhole would): the
		// reject stays a 550 at DATA rather than a bounce from the queue.
		case m.Single && (len(p.stores) > 1 || len(p.redirects) > 0 || p.vacation != nil || (len(p.notifies) > 0 && p.reject == nil)):
			// One file or nothing: the queue's commit point first.
			errs[i] = &delivery.Error{Temporary: true, Reason: "the Sieve script asks for more than one copy", Err: delivery.ErrNeedsQueue}
		case p.reject != nil:
			plans[i] = p
			errs[i] = &delivery.Error{Reason: *p.reject, Err: delivery.ErrRejected}
			f.log.Info("rejected by sieve", "msg_id", m.ID, "to", r.Address, "reason", *p.reject)
			// The message was handled: its duplicate ids are recorded,
			// as Pigeonhole marks them whenever the actions succeed
			// (act_duplicate_mark_finish), a reject's as any other's.
			f.commitDuplicates(ctx, m, r, p)
		default:
			plans[i] = p
			planned = append(planned, i)
		}
		// A recipient whose script locked duplicate ids gets its copies
		// stored and its ids recorded, and its locks released, before
		// the next recipient's script runs, as Dovecot delivers and
		// commits recipient by recipient: two deliveries of one message
		// to the same recipients in other orders would each hold an id
		// the other waits for.
		if holds.holding() {
			sc.complete(ctx, planned, errs)
			holds.release()
			planned = planned[:0]
		}
	}
	sc.complete(ctx, planned, errs)
	return errs
}

// complete stores the copies of the recipients rcpts (indexes of
// sc.rcpts, without a script or with a plan that is no reject), records
// their duplicate ids and makes their scripts' side effects, into errs.
func (sc *storing) complete(ctx context.Context, rcpts []int, errs []error) {
	f, m, plans := sc.f, sc.m, sc.plans
	// First the copies into folders that may be missing (fileinto without
	// :create): one refused keeps to the INBOX, and only then is the
	// INBOX's copy known, one per folder (keepMissing).
	var tentative []copyRef
	for _, i := range rcpts {
		if p := plans[i]; p != nil {
			for j, s := range p.stores {
				if s.NoCreate {
					tentative = append(tentative, copyRef{rcpt: i, store: j})
				}
			}
		}
	}
	missing := make(map[int][]int) // recipient: its stores refused for a missing folder
	for k, err := range sc.store(ctx, tentative) {
		c := tentative[k]
		if errors.Is(err, delivery.ErrNoFolder) {
			s := plans[c.rcpt].stores[c.store]
			f.log.Error("sieve: fileinto a folder that does not exist, kept in INBOX", "msg_id", m.ID, "to", s.Address, "folder", s.Folder)
			missing[c.rcpt] = append(missing[c.rcpt], c.store)
			continue
		}
		errs[c.rcpt] = worse(errs[c.rcpt], err)
	}
	var rest []copyRef
	for _, i := range rcpts {
		p := plans[i]
		if p == nil {
			rest = append(rest, copyRef{rcpt: i, store: -1})
			continue
		}
		if js := missing[i]; len(js) > 0 {
			p.keepMissing(&sc.rcpts[i], js)
		}
		for j, s := range p.stores {
			if !s.NoCreate {
				rest = append(rest, copyRef{rcpt: i, store: j})
			}
		}
	}
	for k, err := range sc.store(ctx, rest) {
		i := rest[k].rcpt
		errs[i] = worse(errs[i], err)
	}
	// Redirects and replies once the copies are durable: a copy that
	// cannot be stored now (over quota, for days) queues nothing, however
	// often it is tried again.
	for _, i := range rcpts {
		if p := plans[i]; p != nil && errs[i] == nil {
			f.commitDuplicates(ctx, m, &sc.rcpts[i], p)
			errs[i] = f.sideEffects(ctx, m, sc.mr, &sc.rcpts[i], p)
		}
	}
}

// copyRef names a copy to store: stores[store] of recipient rcpt's plan,
// or (store -1) the recipient's copy as it came, without a script.
type copyRef struct{ rcpt, store int }

// storing stores the copies of one Deliver.
type storing struct {
	f      *Filter
	m      *delivery.Message
	mr     *messageReader
	rcpts  []delivery.Recipient
	plans  []*plan
	edited map[*sieve.HeaderEdit]*delivery.Message // the message each edit makes
}

// store stores the copies refs names, those of the message as it is in
// one call of the store and those carrying the same edit (editheader) in
// one call each, and returns each one's error.
func (sc *storing) store(ctx context.Context, refs []copyRef) []error {
	res := make([]error, len(refs))
	var batch []delivery.Recipient // copies of m as it is
	var at []int                   // batch[n] is refs[at[n]]
	type group struct {
		edit   *sieve.HeaderEdit
		rcpt   int
		copies []delivery.Recipient
		at     []int
	}
	var groups []*group
	for k, c := range refs {
		if c.store < 0 {
			batch = append(batch, sc.rcpts[c.rcpt])
			at = append(at, k)
			continue
		}
		p := sc.plans[c.rcpt]
		s, e := p.stores[c.store], p.edits[c.store]
		if e == nil {
			batch = append(batch, s)
			at = append(at, k)
			continue
		}
		// copies with the same edit are one message
		n := len(groups) - 1
		for n >= 0 && (groups[n].rcpt != c.rcpt || groups[n].edit != e) {
			n--
		}
		if n < 0 {
			groups = append(groups, &group{edit: e, rcpt: c.rcpt})
			n = len(groups) - 1
		}
		groups[n].copies = append(groups[n].copies, s)
		groups[n].at = append(groups[n].at, k)
	}
	if len(batch) > 0 {
		for n, err := range sc.f.o.Store.Deliver(ctx, sc.m, batch) {
			res[at[n]] = err
		}
	}
	for _, g := range groups {
		em := sc.edited[g.edit]
		if em == nil {
			var err error
			if em, err = sc.mr.edited(g.edit); err != nil {
				// The edits cannot be applied: the copies go as received.
				sc.f.log.Warn("sieve: editheader not applied", "msg_id", sc.m.ID, "to", sc.rcpts[g.rcpt].Address, "err", err)
				em = sc.m
			}
			if sc.edited == nil {
				sc.edited = make(map[*sieve.HeaderEdit]*delivery.Message)
			}
			sc.edited[g.edit] = em
		}
		for n, err := range sc.f.o.Store.Deliver(ctx, em, g.copies) {
			res[g.at[n]] = err
		}
	}
	return res
}

// keepMissing keeps to the INBOX the copies whose folder is missing
// (stores[j] for j in missing, in order), as a fileinto to a name that
// cannot be a folder (plan): one copy per folder, so into the INBOX's
// copy when the plan has one (r.Folder, the milter's Junk verdict
// standing in for it, as for Pigeonhole's failure keep into the default
// mailbox), their flags joined to its own, its header and its key kept.
// Otherwise one copy carries them all, with the header of the first, under
// a key of its own (r.CopyKey and "-inbox"), the same at every try
// whichever of the folders is missing then: a retry after a crash, a
// folder created meanwhile, finds the copy the first try stored.
func (p *plan) keepMissing(r *delivery.Recipient, missing []int) {
	inbox := -1
	for j, s := range p.stores {
		if !s.NoCreate && strings.EqualFold(s.Folder, r.Folder) {
			inbox = j
			break
		}
	}
	gone := make([]bool, len(p.stores))
	for _, j := range missing {
		gone[j] = true
		if inbox < 0 {
			c := *r
			c.NoCreate, c.Flags = false, nil
			if r.CopyKey != "" {
				c.CopyKey = r.CopyKey + "-inbox"
			}
			p.stores = append(p.stores, c)
			p.edits = append(p.edits, p.edits[j])
			inbox = len(p.stores) - 1
		}
		for _, fl := range p.stores[j].Flags {
			if !containsFold(p.stores[inbox].Flags, fl) {
				p.stores[inbox].Flags = append(p.stores[inbox].Flags, fl)
			}
		}
	}
	n := 0
	for j := range p.stores {
		if j < len(gone) && gone[j] {
			continue
		}
		p.stores[n], p.edits[n] = p.stores[j], p.edits[j]
		n++
	}
	p.stores, p.edits = p.stores[:n], p.edits[:n]
}

// worse keeps the error that decides a recipient's outcome: a temporary
// one first (the copy is tried again), then a permanent one.
func worse(a, b error) error {
	if b == nil {
		return a
	}
	if a == nil {
		return b
	}
	var de *delivery.Error
	if errors.As(a, &de) && !de.Temporary {
		return b
	}
	return a
}

// scriptContext is the context scripts run under: the delivery's, its
// deadline brought forward by a quarter of the time left. Scripts stopped
// by their share of the time fail (the copies kept in INBOX) and leave the
// rest to store the copies; stopped by the delivery's own deadline they
// would fail the delivery (4xx), and the sender's retry would run them
// again. Each run has its own limits beside (sieve.Limits: MaxRunWork,
// MaxRunTime).
func scriptContext(ctx context.Context) (context.Context, context.CancelFunc) {
	d, ok := ctx.Deadline()
	if !ok {
		return context.WithCancel(ctx)
	}
	return context.WithDeadlineCause(ctx, d.Add(-time.Until(d)/4), errScriptsTime)
}

// transientIO says whether err is a failure of the machine that passes
// (descriptors, memory, the device), not of the script or the home.
func transientIO(err error) bool {
	for _, e := range []syscall.Errno{syscall.EMFILE, syscall.ENFILE, syscall.ENOMEM, syscall.EIO, syscall.EAGAIN, syscall.EINTR, syscall.ENOBUFS, syscall.ESTALE, syscall.ETIMEDOUT} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// errScriptsTime is why a script stopped at scriptContext's deadline.
var errScriptsTime = errors.New("the delivery's time for Sieve scripts ran out")

// entry is the recipient's directory entry: the one the caller resolved
// for this delivery (delivery.Recipient.Entry: smtp's RCPT), else the
// directory's answer now (queued copies, their retries, redirects).
func (f *Filter) entry(ctx context.Context, r *delivery.Recipient) (*directory.Mailbox, error) {
	if e := r.Entry; e != nil {
		return &directory.Mailbox{Address: r.Address, Home: e.Home, Addresses: e.Addresses, Login: e.Login}, nil
	}
	return f.o.Directory.Mailbox(ctx, r.Address)
}

// plan finds the recipient's scripts and runs them (under sctx,
// scriptContext's; the duplicate tests' id locks taken into holds); nil
// for a plain copy.
func (f *Filter) plan(ctx, sctx context.Context, m *delivery.Message, r *delivery.Recipient, mr *messageReader, holds *dupHolds) (*plan, error) {
	mb, err := f.entry(ctx, r)
	switch {
	case errors.Is(err, directory.ErrNotFound):
		mb = &directory.Mailbox{Address: r.Address} // gone since: the admin scripts still apply
	case err != nil:
		// The script decides where the copy goes: without the entry it
		// waits, as every directory failure does.
		return nil, &delivery.Error{Temporary: true, Reason: "directory unavailable for the Sieve script", Err: err}
	}
	var scripts []*compiled
	for _, p := range f.o.Before {
		scripts = append(scripts, f.cache.adminScript(p))
	}
	userIdx := -1
	if mb.Home != "" {
		us, err := f.cache.userScript(mb.Home)
		if err == nil && us != nil && transientIO(us.err) {
			err = us.err
		}
		switch {
		case transientIO(err):
			// The script is there and decides where the copy goes: the
			// copy waits, as for a directory failure, instead of
			// skipping the user's filters (Pigeonhole's temporary failure).
			return nil, &delivery.Error{Temporary: true, Reason: "cannot read the Sieve script now", Err: err}
		case err != nil:
			f.log.Warn("sieve: cannot read the user's script, delivering without it", "msg_id", m.ID, "to", r.Address, "err", err)
		}
		if us != nil {
			userIdx = len(scripts)
			scripts = append(scripts, us)
		}
	}
	for _, p := range f.o.After {
		scripts = append(scripts, f.cache.adminScript(p))
	}
	if len(scripts) == 0 {
		return nil, nil
	}
	msg, err := mr.sieveMessage()
	if err != nil {
		f.log.Warn("sieve: cannot read the message for the script, delivering without it", "msg_id", m.ID, "to", r.Address, "err", err)
		return nil, nil
	}
	envTo := r.Address
	if r.OrigTo != "" {
		envTo = r.OrigTo
	}
	env := sieve.Envelope{From: m.From, To: envTo}
	p := &plan{mb: mb}
	// The sequence as Pigeonhole's multiscript runs it: each script sees
	// the header as the scripts before it edited it (edit); it goes on
	// only while the implicit keep is in effect (a fileinto, redirect or
	// discard ends it; stop does not, nor an explicit keep). A script
	// that cannot run (it does not compile, or is disabled) or fails
	// ends it: what the earlier scripts did stands, and the message is
	// kept.
	implicit, failed := true, false
	var keepFlags []string
	var edit *sieve.HeaderEdit
	// keep is the last explicit keep: an explicit keep of an earlier
	// script is Pigeonhole's deferred keep, which the final keep stores
	// (its flags, the header as it was then) while the implicit keep is
	// in effect, and which is dropped once a later script cancels it.
	var keep *sieve.Action
	var explicit []sieve.Action
	for i, s := range scripts {
		if !implicit {
			break
		}
		if s.err != nil {
			if i != userIdx && errors.Is(s.err, fs.ErrNotExist) {
				// an administrator's script that is not there is
				// skipped, as Pigeonhole skips it
				f.log.Warn("sieve: script missing, skipped", "msg_id", m.ID, "to", r.Address, "script", s.name)
				continue
			}
			f.scriptError(m, r, mb, s.name, i == userIdx, "compile", s.err)
			f.scriptErrorsMore(m, r, mb, s.name, i == userIdx, s.more)
			break
		}
		if i == userIdx {
			uid, gid := f.owner(r)
			off, err := f.scriptDisabled(mb.Home, s, uid, gid)
			if err != nil {
				f.log.Warn("sieve: cannot read the script's resource usage", "msg_id", m.ID, "to", r.Address, "err", err)
			}
			if off {
				// Pigeonhole refuses to open its binary: as a script
				// that does not compile, the message is kept
				f.scriptError(m, r, mb, s.name, true, "open", errDisabled)
				break
			}
		}
		start := time.Now()
		uid, gid := f.owner(r)
		res := f.run(sctx, s, msg, env, duplicates(mb.Home, holds, uid, gid), edit)
		if res.Err != nil && ctx.Err() != nil {
			// The delivery is cancelled (its deadline, a shutdown), not
			// the script failed: the copy is not stored either.
			return nil, &delivery.Error{Temporary: true, Reason: "delivery cancelled", Err: context.Cause(ctx)}
		}
		if errors.Is(res.Err, errDupLocked) {
			// Another delivery holds the id (dovecot-lda's, or one of
			// ours stuck): tried again later, as dovecot-lda tempfails,
			// rather than kept unfiltered.
			f.log.Warn("sieve: a duplicate id stays locked, delivery deferred", "msg_id", m.ID, "to", r.Address, "script", s.name, "err", res.Err)
			return nil, &delivery.Error{Temporary: true, Reason: "a duplicate id of the Sieve script is locked by another delivery", Err: res.Err}
		}
		if i == userIdx {
			f.noteUsage(m, r, mb, s, res, f.since(start))
		}
		p.dupMarks = append(p.dupMarks, res.DuplicateMarks...)
		if res.Err != nil {
			// Its limits (sieve.ErrWorkLimit, ErrTimeLimit, errScriptsTime)
			// included: the message is kept and delivered, never
			// deferred, for a retry would spend them again. As
			// Pigeonhole's failure keep: into the INBOX, without flags,
			// as the message came (no script's edits).
			f.scriptError(m, r, mb, s.name, i == userIdx, "run", res.Err)
			failed = true
			break
		}
		for _, n := range res.Notes {
			if i == userIdx {
				f.userNotice(m, r, mb, s.name+": "+n)
			} else {
				f.log.Warn("sieve: "+n, "msg_id", m.ID, "to", r.Address, "script", s.name)
			}
		}
		edit = res.Edit
		sawKeep := false
		for _, a := range res.Actions {
			switch {
			case a.Kind == sieve.Store && a.Implicit:
				sawKeep = true
				keepFlags = a.Flags
			case a.Kind == sieve.Store && a.Keep:
				sawKeep = true
				k := a
				keep = &k
			default:
				explicit = append(explicit, a)
			}
		}
		if !sawKeep {
			implicit = false
		}
	}
	keepEdit := edit
	switch {
	case failed:
		keepFlags, keepEdit = nil, nil
	case keep != nil:
		keepFlags, keepEdit = keep.Flags, keep.Edit
	}
	junk := r.Folder // the milter's verdict: the INBOX's stand-in
	inbox := func(flags []string) delivery.Recipient {
		c := *r
		c.Folder, c.NoCreate, c.Flags = junk, false, flags
		return c
	}
	for _, a := range explicit {
		switch a.Kind {
		case sieve.Store:
			if a.Inbox() {
				p.addStore(inbox(a.Flags), a.Edit)
				continue
			}
			dir, err := maildirFolder(a.Folder)
			if err != nil {
				f.userNotice(m, r, mb, fmt.Sprintf("fileinto %q: %v: kept in INBOX", printable(a.Folder, 100), err))
				p.addStore(inbox(a.Flags), a.Edit)
				continue
			}
			c := *r
			c.Folder, c.NoCreate, c.Flags = dir, !a.Create, a.Flags
			p.addStore(c, a.Edit)
		case sieve.Redirect:
			p.redirects = append(p.redirects, a.Address)
			p.redirectEdits = append(p.redirectEdits, a.Edit)
		case sieve.Reject:
			reason := oneLine(a.Reason, 200)
			if reason == "" {
				reason = "Message rejected by the recipient's filter"
			}
			p.reject = &reason
		case sieve.Vacation:
			p.vacation = a.Vacation
		case sieve.Notify:
			p.notifies = append(p.notifies, a.Notify)
		}
	}
	if p.reject != nil {
		p.stores, p.edits, p.redirects, p.redirectEdits = nil, nil, nil, nil
		return p, nil
	}
	if len(p.redirects) > 0 {
		if why := f.redirectRefused(msg, r); why != "" {
			f.log.Warn("sieve: redirect not made, message kept", "msg_id", m.ID, "to", r.Address, "reason", why)
			p.redirects, p.redirectEdits = nil, nil
			implicit = implicit || len(p.stores) == 0
		}
	}
	if implicit {
		p.addStore(inbox(keepFlags), keepEdit)
	}
	for j := range p.stores {
		if r.CopyKey != "" && j > 0 {
			p.stores[j].CopyKey = r.CopyKey + "-s" + strconv.Itoa(j)
		}
	}
	return p, nil
}

// run runs one compiled script: the one place the interpreter's run
// options (time, duplicate store, spam headers) are given.
func (f *Filter) run(ctx context.Context, s *compiled, msg *sieve.Message, env sieve.Envelope, dups sieve.DuplicateStore, edit *sieve.HeaderEdit) sieve.Result {
	return s.script.RunContext(ctx, msg, env, sieve.RunOptions{
		Now:         f.o.Now(),
		Duplicates:  dups,
		SpamTest:    sieve.DefaultSpamTest(),
		Environment: f.environment(msg),
		Edit:        edit,
	})
}

// duplicates is the user's duplicate store for a run (only read: the
// marks are committed by commitDuplicates; each id tested locked into
// holds, owning a lock directory it creates to uid:gid, -1 unchanged);
// nil (nothing is a duplicate) without a home.
func duplicates(home string, holds *dupHolds, uid, gid int) sieve.DuplicateStore {
	if home == "" {
		return nil
	}
	return homeDuplicates{home: home, holds: holds, uid: uid, gid: gid}
}

// commitDuplicates records the ids the duplicate tests marked, once the
// recipient's copies are stored or the message rejected (as Pigeonhole
// marks them when the script's actions succeeded, whatever they were:
// a reject, a discard), in Pigeonhole's database.
func (f *Filter) commitDuplicates(ctx context.Context, m *delivery.Message, r *delivery.Recipient, p *plan) {
	if len(p.dupMarks) == 0 || p.mb.Home == "" {
		return
	}
	uid, gid := -1, -1
	if f.o.Chown {
		uid, gid = r.UID, r.GID
	}
	problem, err := f.markDuplicates(ctx, p.mb.Home, vacationUser(p.mb, r), p.dupMarks, uid, gid)
	if problem != "" {
		f.log.Warn("sieve: duplicate database damaged: the records before the damage are kept, the rest forgotten",
			"msg_id", m.ID, "to", r.Address, "file", DuplicateDBName, "problem", problem)
	}
	if err != nil {
		f.log.Warn("sieve: cannot remember the duplicate ids", "msg_id", m.ID, "to", r.Address, "err", err)
	}
}

// addStore adds a copy carrying edit (nil: the message's header), merging
// one for a folder already listed (their flags joined, the later edit
// kept), as Pigeonhole stores a message once per folder.
func (p *plan) addStore(c delivery.Recipient, edit *sieve.HeaderEdit) {
	for i := range p.stores {
		if strings.EqualFold(p.stores[i].Folder, c.Folder) {
			p.edits[i] = edit
			for _, fl := range c.Flags {
				if !containsFold(p.stores[i].Flags, fl) {
					p.stores[i].Flags = append(p.stores[i].Flags, fl)
				}
			}
			return
		}
	}
	p.stores = append(p.stores, c)
	p.edits = append(p.edits, edit)
}

func containsFold(list []string, s string) bool {
	for _, v := range list {
		if strings.EqualFold(v, s) {
			return true
		}
	}
	return false
}

// scriptError logs a script that failed (the copy keeps to the INBOX) and,
// for the user's own script, tells the user in ~/.dovecot.sieve.log. A
// run that failed keeps the message as it came, without any script's
// edits; one stopped by its limits says so, as Pigeonhole's "aborted due
// to excessive resource usage" (which Dovecot then delivers to the INBOX
// as it came too).
func (f *Filter) scriptError(m *delivery.Message, r *delivery.Recipient, mb *directory.Mailbox, name string, user bool, stage string, err error) {
	attrs := []any{"msg_id", m.ID, "to", r.Address, "script", name, "stage", stage, "err", err}
	var se *sieve.Error
	if errors.As(err, &se) {
		attrs = append(attrs, "line", se.Line)
	}
	msg := "sieve: script failed, message kept in INBOX"
	switch {
	case stage == "run" && (errors.Is(err, sieve.ErrWorkLimit) || errors.Is(err, sieve.ErrTimeLimit) || errors.Is(err, errScriptsTime)):
		msg = "sieve: script failed: aborted for excessive resource usage, message kept in INBOX as it came"
	case stage == "run":
		msg += " as it came"
	}
	f.log.Error(msg, attrs...)
	if user {
		f.userNotice(m, r, mb, fmt.Sprintf("%s: %s error: %v: message kept in INBOX", name, stage, err))
	}
}

// scriptErrorsMore logs a script's compile errors after its first
// (scriptError's): each on its line, as Pigeonhole logs each, in the
// server's log and, for the user's script, in ~/.dovecot.sieve.log (one
// append for them all).
func (f *Filter) scriptErrorsMore(m *delivery.Message, r *delivery.Recipient, mb *directory.Mailbox, name string, user bool, more []*sieve.Error) {
	var lines []string
	for _, e := range more {
		f.log.Error("sieve: script failed, another error", "msg_id", m.ID, "to", r.Address, "script", name, "stage", "compile", "err", e, "line", e.Line)
		lines = append(lines, fmt.Sprintf("%s: compile error: %v", name, e))
	}
	if user && len(lines) > 0 {
		f.userLog(m, r, mb, lines...)
	}
}

// userNotice appends a line to the user's ~/.dovecot.sieve.log, and logs
// it.
func (f *Filter) userNotice(m *delivery.Message, r *delivery.Recipient, mb *directory.Mailbox, text string) {
	f.log.Info("sieve: "+text, "msg_id", m.ID, "to", r.Address)
	f.userLog(m, r, mb, text)
}

// userLog appends texts, a line each, to the user's ~/.dovecot.sieve.log.
func (f *Filter) userLog(m *delivery.Message, r *delivery.Recipient, mb *directory.Mailbox, texts ...string) {
	if mb.Home == "" {
		return
	}
	uid, gid := -1, -1
	if f.o.Chown {
		uid, gid = r.UID, r.GID
	}
	var b strings.Builder
	for _, text := range texts {
		b.WriteString(f.o.Now().Format(time.RFC3339) + " msg_id=" + m.ID + ": " + oneLine(text, 1000) + "\n")
	}
	if err := appendUserLog(mb.Home, b.String(), uid, gid); err != nil {
		f.log.Warn("sieve: cannot write the user's log", "to", r.Address, "err", err)
	}
}

// oneLine makes s one line of printable ASCII (others as '?'), at most n
// bytes: fit for an SMTP reply and a log.
func oneLine(s string, n int) string {
	var b strings.Builder
	for _, c := range strings.TrimSpace(s) {
		if b.Len() >= n {
			break
		}
		switch {
		case c == '\r' || c == '\n' || c == '\t':
			b.WriteByte(' ')
		case c < 0x20 || c > 0x7e:
			b.WriteByte('?')
		default:
			b.WriteRune(c)
		}
	}
	return b.String()
}

func printable(s string, n int) string { return oneLine(s, n) }

// messageReader reads the message once for every recipient's scripts.
type messageReader struct {
	m    *delivery.Message
	once bool
	msg  *sieve.Message
	err  error
}

func (mr *messageReader) sieveMessage() (*sieve.Message, error) {
	if !mr.once {
		mr.once = true
		c := mr.content()
		mr.msg, mr.err = sieve.ReadMessageAt(c, c.Size())
	}
	return mr.msg, mr.err
}

// edited is the message with editheader's edit applied to its header
// (sieve.HeaderEdit.Pieces): every field the scripts did not delete kept,
// those past what they saw included (deleteheader reaches them too: that
// piece leaves out the fields it deleted as it is read); its octets are
// read in place from the message as it is stored, never copied whole.
func (mr *messageReader) edited(e *sieve.HeaderEdit) (*delivery.Message, error) {
	msg, err := mr.sieveMessage()
	if err != nil {
		return nil, err
	}
	pieces, err := e.Pieces(msg)
	if err != nil {
		return nil, err
	}
	src := mr.content()
	parts := make([]delivery.Content, 0, len(pieces))
	for _, pc := range pieces {
		if pc.Data != nil {
			parts = append(parts, delivery.MemContent(pc.Data))
		} else {
			parts = append(parts, pc.Section(src))
		}
	}
	em := *mr.m
	em.Header, em.Body = nil, newSplice(parts...)
	return &em, nil
}

// content is the message as stored (trace header, then the received
// message) as one Content.
func (mr *messageReader) content() delivery.Content {
	if mr.m.Body == nil {
		return delivery.MemContent(mr.m.Header)
	}
	return newSplice(delivery.MemContent(mr.m.Header), mr.m.Body)
}

// splice is Contents one after the other, read in place.
type splice struct {
	parts []delivery.Content
	ends  []int64 // where each part ends in the whole
}

func newSplice(parts ...delivery.Content) *splice {
	s := &splice{}
	var at int64
	for _, p := range parts {
		if p.Size() == 0 {
			continue
		}
		at += p.Size()
		s.parts = append(s.parts, p)
		s.ends = append(s.ends, at)
	}
	return s
}

func (s *splice) Size() int64 {
	if len(s.ends) == 0 {
		return 0
	}
	return s.ends[len(s.ends)-1]
}

func (s *splice) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, errors.New("splice.ReadAt: negative offset")
	}
	i := sort.Search(len(s.ends), func(i int) bool { return s.ends[i] > off })
	n := 0
	for n < len(p) && i < len(s.parts) {
		start := s.ends[i] - s.parts[i].Size()
		want := p[n:min(len(p), n+int(s.ends[i]-off))]
		k, err := s.parts[i].ReadAt(want, off-start)
		n += k
		off += int64(k)
		if k < len(want) {
			if err == nil || errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF // a part shorter than its Size
			}
			return n, err
		}
		i++
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}
