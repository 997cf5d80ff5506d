package imap

import (
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"courriel/imap/mailstore"
)

// NOTIFY (RFC 5465): the client names mailboxes and the events it wants
// to hear of, and the session sends them while no command runs (between
// commands and in IDLE, batched alike: see waitNotify): for the selected
// mailbox the usual EXISTS, EXPUNGE and FETCH (and a FETCH of chosen
// attributes for each new message), for the others STATUS; LIST for
// mailboxes created, deleted, renamed or (un)subscribed by the user's
// other sessions.
//
// The work per event is bounded: a watched mailbox is a registry
// reference and a change-log cursor (the same as a selected one), a
// change costs one STATUS line per mailbox however many messages it
// touched, and at most maxNotifyBoxes mailboxes are watched.

// maxNotifyBoxes bounds the mailboxes one session watches.
const maxNotifyBoxes = 500

// maxRescan bounds the watched mailboxes looked at for other programs'
// changes at each IdleCheck tick.
const maxRescan = 50

// maxNotifyNames bounds the mailbox names of one NOTIFY SET.
const maxNotifyNames = 1000

// maxNotifyQueue bounds mailbox events waiting for a session; past it the
// session is told NOTIFICATIONOVERFLOW and its NOTIFY set ends (RFC 5465
// §5.8).
const maxNotifyQueue = 1000

// notifyEvents are the events of one event group.
type notifyEvents struct {
	newMsg, expunge, flags bool
	mailboxName, subscr    bool
	fetch                  []fetchItem // MessageNew's attributes (SELECTED)
}

func (e notifyEvents) any() bool {
	return e.newMsg || e.expunge || e.flags || e.mailboxName || e.subscr
}

// notifyFilter is one filter-mailboxes of an event group.
type notifyFilter struct {
	kind  string   // INBOXES, PERSONAL, SUBSCRIBED, SUBTREE, MAILBOXES
	names []string // SUBTREE and MAILBOXES
	ev    notifyEvents
}

// notifyBox is one watched (non-selected) mailbox.
type notifyBox struct {
	name string
	mb   *mailstore.Mailbox
	w    *mailstore.Watcher
	ev   notifyEvents
	// unwatch ends the inotify watch that wakes the session for other
	// programs' changes; nil where there is none (the box is polled).
	unwatch func()
}

// mailboxEvent is a change of the mailbox list made by another session.
type mailboxEvent struct {
	name, oldName string
	deleted       bool
	subscription  bool // SubscriptionChange rather than MailboxName
	subscribed    bool
}

// notifyState is a session's NOTIFY set. The session's goroutine owns it
// but for storePath, filters (both fixed once set) and the fields under
// mu, which other sessions use to hand it mailbox events.
type notifyState struct {
	storePath string
	selected  *notifyEvents // SELECTED / SELECTED-DELAYED; nil: none
	delayed   bool
	filters   []notifyFilter
	names     int // mailbox names in the filters, at most maxNotifyNames
	boxes     []*notifyBox
	next      int // the next of boxes to rescan

	mu       sync.Mutex
	watching map[*mailstore.Mailbox]bool // the mailboxes of boxes
	queue    []mailboxEvent
	overflow bool
	stale    bool // the mailbox list changed: boxes are resolved again
}

// NOTIFY SET [STATUS] event-groups / NOTIFY NONE.
func cmdNotify(s *session, tag string, _ bool) error {
	if err := s.r.SP(); err != nil {
		return err
	}
	word, err := s.r.Atom()
	if err != nil {
		return err
	}
	switch strings.ToUpper(word) {
	case "NONE":
		if err := s.r.CRLF(); err != nil {
			return err
		}
		s.endNotify()
		return s.ok(tag, "", "NOTIFY completed", true)
	case "SET":
	default:
		return bad("", "Expected SET or NONE")
	}
	n := &notifyState{storePath: s.store.Path()}
	status := false
	if err := s.r.SP(); err != nil {
		return err
	}
	if c, err := s.r.Peek(); err != nil {
		return err
	} else if c != '(' {
		w, err := s.r.Atom()
		if err != nil {
			return err
		}
		if !strings.EqualFold(w, "STATUS") {
			return bad("", "Expected STATUS or an event group")
		}
		status = true
		if err := s.r.SP(); err != nil {
			return err
		}
	}
	for first := true; ; first = false {
		if !first {
			if eol, err := s.r.AtEOL(); err != nil {
				return err
			} else if eol {
				break
			}
			if err := s.r.SP(); err != nil {
				return err
			}
		}
		if err := s.r.Expect('(', "("); err != nil {
			return err
		}
		if err := s.parseEventGroup(n); err != nil {
			return err
		}
		if err := s.r.Expect(')', ")"); err != nil {
			return err
		}
	}
	if err := s.r.CRLF(); err != nil {
		return err
	}
	// A refused set leaves the one before in force.
	if err := n.resolve(s); err != nil {
		n.release()
		return err
	}
	n.publish()
	s.endNotify()
	s.notify.Store(n)
	s.srv.setNotifier(s, true)
	if status {
		for _, b := range n.boxes {
			if s.sel != nil && s.sel.mb == b.mb {
				continue // the selected mailbox's state came with SELECT
			}
			s.writeNotifyStatus(b, statusInitial)
		}
	}
	return s.ok(tag, "", "NOTIFY completed", true)
}

// parseEventGroup reads filter-mailboxes SP events (without the parens).
func (s *session) parseEventGroup(n *notifyState) error {
	kindWord, err := s.r.Atom()
	if err != nil {
		return err
	}
	kind := strings.ToUpper(kindWord)
	f := notifyFilter{kind: kind}
	switch kind {
	case "SELECTED", "SELECTED-DELAYED", "INBOXES", "PERSONAL", "SUBSCRIBED":
	case "SUBTREE", "MAILBOXES":
		if err := s.r.SP(); err != nil {
			return err
		}
		if c, err := s.r.Peek(); err != nil {
			return err
		} else if c == '(' {
			err = s.r.List(false, func() error {
				if n.names++; n.names > maxNotifyNames {
					return no("NOTIFICATIONOVERFLOW", "Too many mailbox names")
				}
				name, err := s.mailboxArg()
				f.names = append(f.names, name)
				return err
			})
			if err != nil {
				return err
			}
		} else {
			name, err := s.mailboxArg()
			if err != nil {
				return err
			}
			f.names = []string{name}
		}
	default:
		return bad("", "Unknown mailbox filter "+sanitize(kindWord))
	}
	if err := s.r.SP(); err != nil {
		return err
	}
	ev, err := s.parseEvents(kind == "SELECTED" || kind == "SELECTED-DELAYED")
	if err != nil {
		return err
	}
	if kind == "SELECTED" || kind == "SELECTED-DELAYED" {
		if n.selected != nil {
			return bad("", "SELECTED given twice")
		}
		n.selected, n.delayed = &ev, kind == "SELECTED-DELAYED"
		return nil
	}
	f.ev = ev
	n.filters = append(n.filters, f)
	return nil
}

// parseEvents reads "NONE" or "(" event *(SP event) ")".
func (s *session) parseEvents(selected bool) (notifyEvents, error) {
	var ev notifyEvents
	if c, err := s.r.Peek(); err != nil {
		return ev, err
	} else if c != '(' {
		w, err := s.r.Atom()
		if err != nil {
			return ev, err
		}
		if !strings.EqualFold(w, "NONE") {
			return ev, bad("", "Expected an event list or NONE")
		}
		return ev, nil
	}
	var event func() error
	event = func() error {
		w, err := s.r.Atom()
		if err != nil {
			return err
		}
		switch strings.ToUpper(w) {
		case "MESSAGENEW":
			ev.newMsg = true
			if sp, err := s.r.Is(' '); err != nil || !sp {
				return err
			}
			if c, err := s.r.Peek(); err != nil {
				return err
			} else if c != '(' {
				// The space was the list's: the next event follows.
				return event()
			}
			if !selected {
				return bad("", "Fetch attributes are for the selected mailbox only")
			}
			items, err := s.parseFetchItems()
			if err != nil {
				return err
			}
			for i := range items {
				items[i].peek = true // a notification never sets \Seen
			}
			ev.fetch = items
		case "MESSAGEEXPUNGE":
			ev.expunge = true
		case "FLAGCHANGE":
			ev.flags = true
		case "MAILBOXNAME":
			ev.mailboxName = true
		case "SUBSCRIPTIONCHANGE":
			ev.subscr = true
		case "ANNOTATIONCHANGE", "MAILBOXMETADATACHANGE", "SERVERMETADATACHANGE":
			return no("BADEVENT (MessageNew MessageExpunge FlagChange MailboxName SubscriptionChange)", "Event not supported: "+sanitize(w))
		default:
			return bad("", "Unknown event "+sanitize(w))
		}
		return nil
	}
	if err := s.r.List(false, event); err != nil {
		return ev, err
	}
	// RFC 5465 §5: for the selected mailbox, message events come in sets
	// a client can keep its view with; refused in Dovecot's words, which
	// name the set that is incomplete.
	if selected && ev.newMsg != ev.expunge {
		return ev, bad("", "MessageNew and MessageExpunge must be together")
	}
	if selected && ev.flags && !ev.expunge {
		return ev, bad("", "FlagChange requires MessageNew and MessageExpunge")
	}
	return ev, nil
}

// matches reports whether a filter takes the mailbox name.
func (f *notifyFilter) matches(name string, subscribed map[string]bool) bool {
	switch f.kind {
	case "PERSONAL":
		return true
	case "INBOXES":
		// Sieve's fileinto delivers to any mailbox: all of them are
		// inboxes (RFC 5465 §6: where an MDA may deliver), as Dovecot
		// has it.
		return true
	case "SUBSCRIBED":
		return subscribed[name]
	case "MAILBOXES":
		return slices.Contains(f.names, name)
	case "SUBTREE":
		for _, n := range f.names {
			if name == n || strings.HasPrefix(name, n+delim) {
				return true
			}
		}
	}
	return false
}

// resolve opens and watches the mailboxes the filters name (the first
// filter naming a mailbox wins, as RFC 5465 §6 wants), releasing those
// watched before.
func (n *notifyState) resolve(s *session) error {
	names, err := s.store.Folders()
	if err != nil {
		return s.storeErr("notify", err, "")
	}
	names = append([]string{mailstore.InboxName}, names...)
	subs := map[string]bool{}
	if slices.ContainsFunc(n.filters, func(f notifyFilter) bool { return f.kind == "SUBSCRIBED" }) {
		l, err := s.store.Subscriptions()
		if err != nil {
			return s.storeErr("notify", err, "")
		}
		for _, name := range l {
			subs[name] = true
		}
	}
	old := n.boxes
	n.boxes = nil
	defer func() {
		for _, b := range old {
			b.close()
		}
	}()
	for _, name := range names {
		i := slices.IndexFunc(n.filters, func(f notifyFilter) bool { return f.matches(name, subs) })
		if i < 0 {
			continue
		}
		ev := n.filters[i].ev
		if !ev.newMsg && !ev.expunge && !ev.flags {
			continue // mailbox events only: nothing to watch
		}
		if len(n.boxes) >= maxNotifyBoxes {
			return no("LIMIT", "Too many mailboxes to watch")
		}
		mb, err := s.srv.reg.Open(s.store, name)
		if err != nil {
			continue // gone meanwhile
		}
		if j := slices.IndexFunc(old, func(b *notifyBox) bool { return b.mb == mb }); j >= 0 {
			// The same folder as before (not renamed or recreated): its
			// cursor goes on where it was.
			mb.Release()
			b := old[j]
			b.name, b.ev = name, ev
			n.boxes = append(n.boxes, b)
			old = slices.Delete(old, j, j+1)
			continue
		}
		if err := mb.Sync(false); err != nil {
			mb.Release()
			continue
		}
		w, _ := mb.Watch()
		b := &notifyBox{name: name, mb: mb, w: w, ev: ev}
		if s.srv.watchFolder(mb) {
			b.unwatch = func() { s.srv.unwatchFolder(mb) }
		}
		n.boxes = append(n.boxes, b)
	}
	return nil
}

// allWatched reports whether inotify tells of every change in the set's
// mailboxes (so that the session need not poll them every IdleCheck).
func (n *notifyState) allWatched() bool {
	return !slices.ContainsFunc(n.boxes, func(b *notifyBox) bool { return b.unwatch == nil })
}

// selectedLive reports whether the selected mailbox's changes are sent
// while no command runs.
func (n *notifyState) selectedLive() bool {
	return n.selected != nil && n.selected.any()
}

// publish makes the watched mailboxes known to Server.wakeIdlers.
func (n *notifyState) publish() {
	m := make(map[*mailstore.Mailbox]bool, len(n.boxes))
	for _, b := range n.boxes {
		m[b.mb] = true
	}
	n.mu.Lock()
	n.watching = m
	n.mu.Unlock()
}

func (b *notifyBox) close() {
	if b.unwatch != nil {
		b.unwatch()
	}
	b.w.Close()
	b.mb.Release()
}

func (n *notifyState) release() {
	for _, b := range n.boxes {
		b.close()
	}
	n.boxes = nil
}

// endNotify drops the session's NOTIFY set (NOTIFY NONE, a new SET, the
// end of the connection).
func (s *session) endNotify() {
	if n := s.notify.Swap(nil); n != nil {
		s.srv.setNotifier(s, false)
		n.release()
	}
}

// watches reports whether a change of mb concerns the NOTIFY set; other
// goroutines call it (Server.wakeIdlers), so it reads the watched
// mailboxes under mu.
func (n *notifyState) watches(mb *mailstore.Mailbox) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.watching[mb]
}

// notifyWatches is watches for another session, nil-safe.
func (se *session) notifyWatches(mb *mailstore.Mailbox) bool {
	n := se.notify.Load()
	return n != nil && n.watches(mb)
}

// statusKind says why a watched mailbox's STATUS is sent; the items
// follow Dovecot's, which clients are tuned to.
type statusKind uint8

const (
	statusInitial    statusKind = iota // NOTIFY SET STATUS
	statusCount                        // messages arrived or were expunged
	statusFlags                        // flags changed
	statusRenumbered                   // a new UIDVALIDITY
)

// writeNotifyStatus writes the STATUS of a watched mailbox (RFC 5465
// §5.2–5.4): everything a client keeps of a mailbox it has not
// selected at first and after a renumbering, MESSAGES, UIDNEXT and
// UNSEEN when the count moved, UNSEEN when flags changed; HIGHESTMODSEQ
// too where FlagChange is wanted and the server keeps modseqs.
func (s *session) writeNotifyStatus(b *notifyBox, kind statusKind) {
	sum := b.mb.Status()
	s.w.Raw("* STATUS ")
	s.writeMailbox(b.name)
	s.w.Raw(" (")
	sep := ""
	item := func(k string, v uint64) {
		s.w.Raw(sep + k + " ")
		s.w.Number(v)
		sep = " "
	}
	whole := kind == statusInitial || kind == statusRenumbered
	if whole || kind == statusCount {
		item("MESSAGES", uint64(sum.Messages))
		item("UIDNEXT", uint64(sum.UIDNext))
	}
	if whole {
		item("UIDVALIDITY", uint64(sum.UIDValidity))
	}
	item("UNSEEN", uint64(sum.Unseen))
	if b.ev.flags {
		item("HIGHESTMODSEQ", b.mb.HighestModSeq())
	}
	s.w.Raw(")\r\n")
}

// notifyPoll sends what the NOTIFY set asks for: the watched mailboxes'
// changes as STATUS, the mailbox events other sessions queued as LIST.
// Called when no command runs.
func (s *session) notifyPoll(rescan bool) error {
	n := s.notify.Load()
	if n == nil {
		return nil
	}
	n.mu.Lock()
	queue, overflow, stale := n.queue, n.overflow, n.stale
	n.queue, n.stale = nil, false
	n.mu.Unlock()
	if overflow {
		s.endNotify()
		s.w.Raw("* OK [NOTIFICATIONOVERFLOW] Too many events, NOTIFY is off\r\n")
		return nil
	}
	for _, ev := range queue {
		s.writeMailboxEvent(n, ev)
	}
	if stale {
		if err := n.resolve(s); err != nil {
			s.endNotify()
			s.w.Raw("* OK [NOTIFICATIONOVERFLOW] Too many mailboxes, NOTIFY is off\r\n")
			return nil
		}
		n.publish()
	}
	if rescan && len(n.boxes) > 0 {
		// Changes by other programs (Dovecot, a delivery agent): two
		// stats per mailbox, for at most maxRescan mailboxes a tick,
		// in turn. Deliveries and other sessions wake the session and
		// need no rescan.
		for range min(maxRescan, len(n.boxes)) {
			n.next %= len(n.boxes)
			b := n.boxes[n.next]
			n.next++
			if err := b.mb.Sync(false); err != nil {
				s.logger.Warn("imap: rescan failed", "folder", b.name, "err", err)
			}
		}
	}
	for _, b := range n.boxes {
		changes := b.w.Changes(true)
		if len(changes) == 0 || (s.sel != nil && s.sel.mb == b.mb) {
			continue // the selected mailbox reports through its own view
		}
		var added, gone, flagged, renumbered bool
		for _, c := range changes {
			switch c.Kind {
			case mailstore.Added:
				added = true
			case mailstore.Expunged:
				gone = true
			case mailstore.FlagsChanged:
				flagged = true
			case mailstore.Invalidated:
				renumbered = true
			}
		}
		switch {
		case renumbered:
			s.writeNotifyStatus(b, statusRenumbered)
		case added && b.ev.newMsg || gone && b.ev.expunge:
			s.writeNotifyStatus(b, statusCount)
		case flagged && b.ev.flags:
			s.writeNotifyStatus(b, statusFlags)
		}
	}
	return s.w.Err()
}

// writeMailboxEvent writes one mailbox event as LIST (RFC 5465 §5.4,
// §5.5) when a filter takes it.
func (s *session) writeMailboxEvent(n *notifyState, ev mailboxEvent) {
	want := func(name string) bool {
		for _, f := range n.filters {
			// SUBSCRIBED cannot be told without the list: PERSONAL rules.
			if f.matches(name, nil) || f.kind == "SUBSCRIBED" {
				if ev.subscription {
					return f.ev.subscr
				}
				return f.ev.mailboxName
			}
		}
		return false
	}
	if !want(ev.name) && (ev.oldName == "" || !want(ev.oldName)) {
		return
	}
	s.w.Raw("* LIST (")
	switch {
	case ev.deleted:
		s.w.Raw(`\NonExistent`)
	case ev.subscription && ev.subscribed:
		s.w.Raw(`\Subscribed`)
	}
	s.w.Raw(`) "` + delim + `" `)
	s.writeMailbox(ev.name)
	if ev.oldName != "" {
		s.w.Raw(` ("OLDNAME" (`)
		s.writeMailbox(ev.oldName)
		s.w.Raw("))")
	}
	s.w.CRLF()
}

// mailboxChanged tells the user's other sessions with a NOTIFY set that
// the mailbox list changed (CREATE, DELETE, RENAME, SUBSCRIBE) and has
// this session's own set look at the list again.
func (s *session) mailboxChanged(ev mailboxEvent) {
	if n := s.notify.Load(); n != nil {
		n.mu.Lock()
		n.stale = true
		n.mu.Unlock()
	}
	path := s.store.Path()
	s.srv.mu.Lock()
	defer s.srv.mu.Unlock()
	s.srv.conns.Each(func(se *session) {
		if se == s {
			return
		}
		n := se.notify.Load()
		if n == nil || n.storePath != path {
			return
		}
		n.mu.Lock()
		if len(n.queue) >= maxNotifyQueue {
			n.overflow = true
		} else {
			n.queue = append(n.queue, ev)
		}
		n.stale = n.stale || !ev.subscription
		n.mu.Unlock()
		se.woken.Store(true)
		_ = se.raw.SetReadDeadline(time.Now())
	})
}

// waitNotify is waitCommand for a session with a NOTIFY set: it sends
// what happened while no command runs, until a command comes or timeout
// passes. As in IDLE (cmdIdle), a change signalled (by another session,
// a delivery, inotify) is reported notifyDelay later with those that
// came meanwhile, so that a burst of deliveries is one EXISTS or STATUS,
// not one each; and the session looks for changes itself every
// IdleCheck (WatchedIdleCheck when inotify tells it of every change).
//
// Nothing is sent while the client's next command is already read
// (pipelined): that command reports the changes, so that an EXPUNGE
// never moves the sequence numbers between a command the client sent
// and its reply, as Dovecot sends NOTIFY updates only when no command
// is queued (imap_client_notify_command_freed).
func (s *session) waitNotify(timeout time.Duration) error {
	end := time.Now().Add(timeout)
	n := s.notify.Load()
	if n == nil {
		return nil // not reached: waitCommand checked
	}
	check := s.srv.opts.IdleCheck
	if n.allWatched() {
		// inotify wakes the session for other programs' changes, as in
		// IDLE: the look of its own is a safety net.
		check = s.srv.opts.WatchedIdleCheck
	}
	if s.sel != nil && n.selectedLive() {
		// Wake-ups for the selected mailbox come through idleOn, as in
		// IDLE; they begin before the first report, so that a change is
		// either in it or wakes the session.
		s.srv.setIdleOn(s, s.sel.mb)
		defer s.stopIdle()
		if s.srv.watchFolder(s.sel.mb) {
			defer s.srv.unwatchFolder(s.sel.mb)
		} else {
			check = s.srv.opts.IdleCheck
		}
	}
	// What happened during the last command goes out now, not at the
	// next tick. A signal that came meanwhile stays: this report does
	// not look at the disk, and what another program changed is seen
	// when the signal's batch is due.
	if s.r.Buffered() > 0 {
		return nil
	}
	if err := s.notifyNow(false); err != nil {
		return err
	}
	if s.notify.Load() == nil {
		return s.waitUntil(end)
	}
	// due is when the changes signalled are reported (zero: none is
	// waiting); pollAt when the session looks for changes itself.
	var due time.Time
	pollAt := time.Now().Add(check)
	for {
		wait := end
		for _, t := range []time.Time{due, pollAt} {
			if !t.IsZero() && t.Before(wait) {
				wait = t
			}
		}
		_ = s.conn.SetReadDeadline(wait)
		if s.shutdown.Load() { // after the deadline: see waitCommand
			return errShutdown
		}
		var err error
		signalled := false
		if s.woken.Swap(false) {
			// Woken while busy: the deadline just set may have
			// overwritten the wake-up.
			err, signalled = os.ErrDeadlineExceeded, true
		} else if _, err = s.r.Peek(); err == nil {
			if s.shutdown.Load() {
				return errShutdown
			}
			return nil
		}
		if s.woken.Swap(false) {
			signalled = true
		}
		now := time.Now()
		if !isTimeout(err) || !now.Before(end) {
			return err
		}
		if s.shutdown.Load() {
			return errShutdown
		}
		// A folder deleted or renamed under the session ends it at once.
		if err := s.selectedGone(); err != nil {
			return err
		}
		if signalled && due.IsZero() {
			due = now.Add(s.srv.notifyDelay())
		}
		if (due.IsZero() || now.Before(due)) && now.Before(pollAt) {
			continue
		}
		if s.r.Buffered() > 0 {
			return nil // a command came meanwhile: it reports
		}
		if err := s.notifyNow(true); err != nil {
			return err
		}
		if s.notify.Load() == nil {
			return s.waitUntil(end)
		}
		due, pollAt = time.Time{}, now.Add(check)
	}
}

// waitUntil waits for a command as without a NOTIFY set, once the set
// ended (NOTIFICATIONOVERFLOW), until end.
func (s *session) waitUntil(end time.Time) error {
	s.stopIdle()
	_ = s.conn.SetReadDeadline(end)
	if s.shutdown.Load() {
		return errShutdown
	}
	if _, err := s.r.Peek(); err != nil {
		return err
	}
	if s.shutdown.Load() {
		return errShutdown
	}
	return nil
}

// notifyNow sends the pending notifications while no command runs: the
// selected mailbox's updates (when the set asks for them) and the rest.
func (s *session) notifyNow(rescan bool) error {
	n := s.notify.Load()
	if n == nil {
		return nil
	}
	if s.sel != nil && n.selectedLive() {
		if rescan {
			if err := s.sel.mb.Sync(false); err != nil {
				s.logger.Warn("imap: rescan failed", "err", err)
			}
		}
		// SELECTED-DELAYED keeps expunges for the next command, so that
		// sequence numbers do not move under a client that is about to
		// send one.
		if err := s.pushUpdates(!n.delayed); err != nil {
			return err
		}
	}
	if err := s.notifyPoll(rescan); err != nil {
		return err
	}
	if err := s.flush(); err != nil {
		return err
	}
	if s.z != nil {
		// Waiting: the compressor's megabyte goes, as in IDLE.
		s.z.sleep()
	}
	return nil
}

// notifyNewMessages writes the FETCH of MessageNew's attributes for
// messages that just joined the selected view (after their EXISTS).
func (s *session) notifyNewMessages(uids []uint32) error {
	n := s.notify.Load()
	if n == nil || n.selected == nil || len(n.selected.fetch) == 0 || len(uids) == 0 {
		return nil
	}
	fl, ok := s.sel.mb.FlagsOf(uids)
	for i, u := range uids {
		seq, found := slices.BinarySearch(s.sel.view, u)
		if !found || !ok[i] {
			continue
		}
		if err := s.fetchOne(uint32(seq+1), u, fl[i], n.selected.fetch, false); err != nil {
			if isConnErr(err) {
				return err
			}
			continue // gone meanwhile
		}
	}
	s.trimBuffers()
	return nil
}
