package directory

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/go-ldap/ldap/v3"
)

// Reconnection delays of a Watcher: doubled after each failed attempt,
// back to the minimum once a sync search reached its persist phase.
const (
	watchMinBackoff = 250 * time.Millisecond
	watchMaxBackoff = 15 * time.Second
	// watchBuffer is how many sync messages go-ldap may read ahead.
	watchBuffer = 64
)

// errSyncUnsupported: the server does not answer the sync request control
// (no syncprov overlay, or a directory that is not OpenLDAP).
var errSyncUnsupported = errors.New("the server does not support the LDAP sync control (RFC 4533)")

// Watcher keeps a persistent sync search (RFC 4533 refreshAndPersist)
// open on the directory's first URL that answers — a node's local replica,
// else the next server listed, as lookups fail over — and calls its flush
// function for every change the server reports that may change a lookup's
// answer, so that a new alias or a moved user takes effect at replication
// speed instead of after the cache TTL. A change that leaves every
// attribute a lookup reads as it was (a password, a ppolicy or lastbind
// timestamp) flushes nothing, as long as the service account may read
// every attribute the filters name (checked at each connection; else
// every change flushes): see watchstate.go. While it
// follows a later URL it keeps trying the earlier ones and goes back to
// the first that answers: lookups go there again too, and a
// watch on another server would report changes at that server's pace, not
// the one the answers come from. While it is not connected at all, the
// TTLs alone bound how stale an answer can be. Build it with
// (*Directory).NewWatcher, then Run it.
type Watcher struct {
	d     *Directory
	urls  []string
	flush func()
	attrs []string // immutable; what the sync search asks for (watchAttributes)
	// states are the entries as last reported, to tell a change that
	// touches what lookups read from one that does not. Used by Run's
	// goroutine only.
	states entryStates
	// flushAll: every change flushes, the digests notwithstanding, as a
	// filter attribute may change unseen (searchOnlyAttribute).
	// unreadable is the attribute and reason last logged for it, so that
	// a reconnection that finds the same says nothing. Both used by Run's
	// goroutine only.
	flushAll   bool
	unreadable string

	mu        sync.Mutex
	status    WatchStatus // guarded by mu
	cookie    []byte      // guarded by mu; the last sync cookie, to resume
	cookieURL string      // guarded by mu; the server that gave cookie
}

// errPreferredBack ends a sync search on a fallback URL: an earlier one
// answers again.
var errPreferredBack = errors.New("an earlier directory URL answers again")

// WatchStatus is what a Watcher reports for metrics and logs.
type WatchStatus struct {
	URL string
	// Connected is true while the sync search is in its persist phase:
	// changes are being reported.
	Connected bool
	// Unsupported is set when the server refused the sync control: the
	// watcher stopped and only the TTLs expire cached answers.
	Unsupported bool
	Changes     int64     // change notifications received in persist phases
	LastChange  time.Time // of the last one; zero when none yet
	Connects    int64     // sync searches that reached their persist phase
	// Unread counts the Changes that touched no attribute a lookup reads
	// (a password, an operational timestamp): the cache was kept.
	Unread int64
}

// NewWatcher returns a watcher of d's URLs in order, bound as d's service
// account (who must be allowed the sync search: OpenLDAP applies its size
// limit to the refresh phase, see `courriel ldap-schema -cluster`). flush
// is called on every change that may change an answer and whenever
// changes may have been missed (connection lost, reconnected); nil means
// d.FlushCache.
func (d *Directory) NewWatcher(flush func()) *Watcher {
	if flush == nil {
		flush = d.FlushCache
	}
	return &Watcher{d: d, urls: d.opts.URLs, flush: flush, attrs: d.watchAttributes(),
		states: entryStates{}, status: WatchStatus{URL: d.opts.URLs[0]}}
}

// Status returns a snapshot of the watcher's state.
func (w *Watcher) Status() WatchStatus {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.status
}

// Run watches until ctx ends, reconnecting with bounded backoff after any
// failure. It returns early, after one log line, when the server does not
// support the sync control (as the embedded demo directory).
func (w *Watcher) Run(ctx context.Context) {
	log := w.d.opts.Logger
	backoff := watchMinBackoff
	quiet := false // after the first failure in a row, retries log at debug level
	for ctx.Err() == nil {
		persisted, err := w.session(ctx)
		w.setConnected(false)
		// Whatever changed from now until the next refresh is not reported.
		w.flush()
		if ctx.Err() != nil {
			return
		}
		url := w.Status().URL
		if errors.Is(err, errSyncUnsupported) {
			w.mu.Lock()
			w.status.Unsupported = true
			w.mu.Unlock()
			log.Warn("directory change watch off: cached answers expire by their TTL only", "url", url, "err", err)
			return
		}
		if errors.Is(err, errPreferredBack) {
			log.Info("directory change watch: going back to an earlier URL", "from", url)
			backoff, quiet = watchMinBackoff, false
			continue
		}
		if persisted {
			backoff, quiet = watchMinBackoff, false
		}
		if quiet {
			log.Debug("directory change watch: still not connected", "url", url, "retry_in", backoff, "err", err)
		} else {
			log.Warn("directory change watch lost: cached answers expire by their TTL until it is back", "url", url, "retry_in", backoff, "err", err)
			quiet = true
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, watchMaxBackoff)
	}
}

// session runs one sync search on a new connection to the first URL that
// answers, until it ends. persisted reports whether it reached the persist
// phase.
func (w *Watcher) session(ctx context.Context) (persisted bool, err error) {
	c, at, err := w.d.searches.dialFirst(ctx, w.urls)
	if err != nil {
		return false, err
	}
	defer c.Close()
	url := w.urls[at]
	w.checkReadable(c, url)
	// The search lasts as long as the connection: no request timeout
	// (go-ldap would end it), and TCP keepalive (on by default in the
	// dialer) notices a peer that vanished.
	c.SetTimeout(0)
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var back chan struct{}
	if at > 0 {
		back = make(chan struct{})
		go w.awaitPreferred(sctx, w.urls[:at], func(i int) {
			// Lookups go back to it too, before the flush that ends this
			// session: nothing read on the fallback is kept.
			w.d.preferURL(i)
			close(back)
			cancel()
		})
	}
	req := ldap.NewSearchRequest(w.d.opts.BaseDN, w.d.scope, ldap.NeverDerefAliases,
		0, 0, false, "(objectClass=*)", w.attrs, nil)
	w.mu.Lock()
	w.status.URL = url
	// A cookie is one server's account of what it sent: another server
	// refreshes from scratch.
	var cookie []byte
	if w.cookieURL == url {
		cookie = w.cookie
	}
	w.cookie, w.cookieURL = cookie, url
	w.mu.Unlock()
	if cookie == nil {
		// The refresh sends every entry again: forget those gone since.
		w.states = entryStates{}
	}
	resp := c.Syncrepl(sctx, req, watchBuffer, ldap.SyncRequestModeRefreshAndPersist, cookie, false)
	refreshing := true
	endRefresh := func() {
		if !refreshing {
			return
		}
		refreshing, persisted = false, true
		// The refresh brought the replica's changes since the cookie (or
		// everything): answers cached meanwhile may be stale.
		w.flush()
		w.mu.Lock()
		w.status.Connected = true
		w.status.Connects++
		w.mu.Unlock()
		w.d.opts.Logger.Info("directory change watch connected", "url", url)
	}
	for resp.Next() {
		if e := resp.Entry(); e != nil {
			var state *ldap.ControlSyncState
			for _, ctl := range resp.Controls() {
				if st, ok := ctl.(*ldap.ControlSyncState); ok {
					state = st
					w.saveCookie(st.Cookie)
				}
			}
			read := w.note(e, state)
			switch {
			case refreshing:
				// endRefresh flushes once for the whole refresh.
			case read, w.flushAll:
				w.changed()
			default:
				w.unread()
			}
			continue
		}
		for _, ctl := range resp.Controls() {
			switch ctl := ctl.(type) {
			case *ldap.ControlSyncInfo:
				switch ctl.Value {
				case ldap.SyncInfoNewcookie:
					w.saveCookie(ctl.NewCookie.Cookie)
				case ldap.SyncInfoRefreshDelete:
					w.saveCookie(ctl.RefreshDelete.Cookie)
					if ctl.RefreshDelete.RefreshDone {
						endRefresh()
					}
				case ldap.SyncInfoRefreshPresent:
					w.saveCookie(ctl.RefreshPresent.Cookie)
					if ctl.RefreshPresent.RefreshDone {
						endRefresh()
					}
				case ldap.SyncInfoSyncIdSet:
					// Entries deleted or still present, by UUID: a change.
					w.saveCookie(ctl.SyncIdSet.Cookie)
					if ctl.SyncIdSet.RefreshDeletes {
						for _, id := range ctl.SyncIdSet.SyncUUIDs {
							delete(w.states, id)
						}
					}
					if !refreshing {
						w.changed()
					}
				}
			case *ldap.ControlSyncDone:
				w.saveCookie(ctl.Cookie)
			}
		}
	}
	err = resp.Err()
	if back != nil && ctx.Err() == nil {
		select {
		case <-back:
			return persisted, errPreferredBack
		default:
		}
	}
	switch {
	case ldap.IsErrorWithCode(err, ldap.LDAPResultUnavailableCriticalExtension):
		return persisted, fmt.Errorf("%w: %v", errSyncUnsupported, err)
	case ldap.IsErrorWithCode(err, ldap.LDAPResultSyncRefreshRequired):
		// The server cannot resume from our cookie: start afresh.
		w.mu.Lock()
		w.cookie = nil
		w.mu.Unlock()
		return persisted, fmt.Errorf("sync search on %s: %w", url, err)
	case err != nil:
		return persisted, w.searchErr(url, err)
	}
	if ctx.Err() != nil {
		return persisted, ctx.Err()
	}
	// A refreshAndPersist search never ends by itself while all is well.
	return persisted, fmt.Errorf("sync search on %s ended by the server", url)
}

// awaitPreferred tries the earlier URLs, with the reconnection backoff,
// until one answers (then calls back once with its index) or ctx ends.
func (w *Watcher) awaitPreferred(ctx context.Context, earlier []string, back func(int)) {
	delay := watchMinBackoff
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(delay):
		}
		for i, url := range earlier {
			if c, err := w.d.searches.dialOne(ctx, url); err == nil {
				c.Close()
				back(i)
				return
			}
		}
		delay = min(2*delay, watchMaxBackoff)
	}
}

// maxCookie bounds what a server can make us keep and send back.
const maxCookie = 1024

func (w *Watcher) saveCookie(c []byte) {
	if len(c) == 0 || len(c) > maxCookie {
		return
	}
	w.mu.Lock()
	w.cookie = append([]byte(nil), c...)
	w.mu.Unlock()
}

func (w *Watcher) changed() {
	w.flush()
	w.mu.Lock()
	w.status.Changes++
	w.status.LastChange = w.d.opts.Now()
	w.mu.Unlock()
}

// unread counts a change that touched nothing a lookup reads: no flush.
func (w *Watcher) unread() {
	w.mu.Lock()
	w.status.Changes++
	w.status.Unread++
	w.status.LastChange = w.d.opts.Now()
	w.mu.Unlock()
}

// note keeps the state an entry notification reports and says whether
// it may change an answer: anything but an entry seen before, unchanged
// in what the sync search returns (a delete, a new entry, a rename, no
// sync state control) may.
func (w *Watcher) note(e *ldap.Entry, st *ldap.ControlSyncState) bool {
	if st == nil {
		return true
	}
	switch st.State {
	case ldap.SyncStateAdd, ldap.SyncStateModify:
		return !w.states.record(st.EntryUUID, e)
	case ldap.SyncStateDelete:
		delete(w.states, st.EntryUUID)
	}
	return true
}

// checkReadable sets flushAll for the session on c: whether the service
// account may read every attribute the filters name there (an ACL may
// differ from one server to the next, or since the last connection),
// and logs when that changes.
func (w *Watcher) checkReadable(c *ldap.Conn, url string) {
	attr, why := w.d.searchOnlyAttribute(c)
	w.flushAll = attr != ""
	key := attr + "\x00" + why
	if attr == "" {
		key = ""
	}
	if key == w.unreadable {
		return
	}
	w.unreadable = key
	if attr == "" {
		w.d.opts.Logger.Info("directory change watch: every filter attribute is readable; "+
			"changes that touch no attribute a lookup reads keep the cache again", "url", url)
		return
	}
	w.d.opts.Logger.Warn("directory change watch flushes on every change: a change to an attribute "+
		"the filters name may not show in what the service account reads (grant it read, not only search)",
		"url", url, "attribute", attr, "reason", why)
}

func (w *Watcher) setConnected(v bool) {
	w.mu.Lock()
	w.status.Connected = v
	w.mu.Unlock()
}

// Check runs one sync search (refreshOnly) on the first URL, the one Run
// watches while it answers, for `courriel check-config`: it fails when the
// server refuses the sync control, the reader may not search, or a size
// limit cuts the refresh.
func (w *Watcher) Check(ctx context.Context) error {
	url := w.urls[0]
	c, err := w.d.searches.dialOne(ctx, url)
	if err != nil {
		return err
	}
	defer c.Close()
	req := ldap.NewSearchRequest(w.d.opts.BaseDN, w.d.scope, ldap.NeverDerefAliases,
		0, 0, false, "(objectClass=*)", []string{"1.1"}, nil)
	resp := c.Syncrepl(ctx, req, watchBuffer, ldap.SyncRequestModeRefreshOnly, nil, false)
	for resp.Next() {
	}
	err = resp.Err()
	switch {
	case ldap.IsErrorWithCode(err, ldap.LDAPResultUnavailableCriticalExtension):
		return fmt.Errorf("%w: %v", errSyncUnsupported, err)
	case err != nil:
		return w.searchErr(url, err)
	}
	return ctx.Err()
}

// searchErr says what failed on url, with the usual cause of a size limit.
func (w *Watcher) searchErr(url string, err error) error {
	if ldap.IsErrorWithCode(err, ldap.LDAPResultSizeLimitExceeded) {
		return fmt.Errorf("sync search on %s: %w (its refresh reads every entry of the search base: "+
			"give the reader no size limit, olcLimits size=unlimited)", url, err)
	}
	return fmt.Errorf("sync search on %s: %w", url, err)
}
