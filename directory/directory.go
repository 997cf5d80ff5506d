package directory

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-ldap/ldap/v3"
)

// Directory answers courriel's lookups from LDAP. It is safe for concurrent
// use; build one in cmd and share it.
type Directory struct {
	opts     Options // immutable after New
	scope    int
	searches *connPool // bound as the service account
	binds    *connPool // used only for user password binds
	cache    *searchCache

	nSearches atomic.Int64
	nHits     atomic.Int64
	nBinds    atomic.Int64
	nErrors   [numErrorKinds]atomic.Int64 // by index in ErrorKinds()

	// plain holds the servers that refused a paged search to the reader
	// and answered the same search without the control: searches to them
	// are sent plain (pagedSearch) for a while.
	plain pagingRefusals
}

// Stats counts the work done, for benchmarks and metrics.
type Stats struct {
	Searches  int64 // LDAP searches sent to the server
	CacheHits int64 // lookups answered without a search
	Binds     int64 // user password binds
	// Errors counts the operations the directory could not answer
	// (ErrUnavailable), by kind: every one of ErrorKinds(), zeros included.
	Errors map[string]int64
}

// ErrorKinds returns the kinds of Stats.Errors:
//
//	connect  no connection: dial, TLS, StartTLS or the service bind failed
//	timeout  the server did not answer in time
//	network  a connection broke during a request
//	server   the server answered with an error (busy, unwilling, a limit)
func ErrorKinds() []string { return []string{"connect", "timeout", "network", "server"} }

const (
	errConnect = iota // indexes in ErrorKinds()
	errTimeout
	errNetwork
	errServer
	numErrorKinds
)

// countError counts one failure to answer; connecting says it happened
// while getting a connection.
func (d *Directory) countError(err error, connecting bool) {
	kind := errServer
	switch {
	case isTimeout(err):
		kind = errTimeout
	case connecting:
		kind = errConnect
	case errors.Is(err, errTooManyPages):
		// Not the connection: what the server answered.
	case transportError(err):
		kind = errNetwork
	}
	d.nErrors[kind].Add(1)
}

// isTimeout reports whether err is a server that did not answer in time.
func isTimeout(err error) bool {
	var ne net.Error
	// go-ldap reports its request timeout as a network error with this text.
	return errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout() ||
		ldap.IsErrorAnyOf(err, ldap.LDAPResultTimeLimitExceeded, ldap.LDAPResultTimeout) ||
		strings.Contains(err.Error(), "timed out")
}

// New checks o and returns a Directory. It does not connect: the first
// lookup does (see Ping to check the server at start-up).
func New(o Options) (*Directory, error) {
	o.MailboxDomains = append([]string(nil), o.MailboxDomains...)
	o.setDefaults()
	if err := o.validate(); err != nil {
		return nil, fmt.Errorf("directory: %w", err)
	}
	tlsConf, err := buildTLSConfig(&o)
	if err != nil {
		return nil, fmt.Errorf("directory: %w", err)
	}
	scope, _ := scopeValue(o.Scope)
	d := &Directory{opts: o, scope: scope}
	d.searches = newConnPool(&d.opts, tlsConf, o.BindDN, o.BindPassword)
	d.binds = newConnPool(&d.opts, tlsConf, "", "")
	// What one pool learns of a hung server spares the other's setup.
	d.searches.failed = newFailedURLs()
	d.binds.failed = d.searches.failed
	d.cache = newSearchCache(o.CacheTTL, o.NegativeCacheTTL, o.Now)
	// Answers read on a fallback server may lag the preferred one's.
	d.searches.onRetire = d.cache.flush
	return d, nil
}

// Close drops idle connections, and the busy ones when their calls end.
func (d *Directory) Close() error {
	d.searches.close()
	d.binds.close()
	return nil
}

// Stats returns counters since New.
func (d *Directory) Stats() Stats {
	st := Stats{Searches: d.nSearches.Load(), CacheHits: d.nHits.Load(), Binds: d.nBinds.Load(),
		Errors: make(map[string]int64, numErrorKinds)}
	for i, k := range ErrorKinds() {
		st.Errors[k] = d.nErrors[i].Load()
	}
	return st
}

// preferURL retires the connections to the URLs after URLs[at], which
// answers again: lookups and binds go back to it.
func (d *Directory) preferURL(at int) {
	d.searches.retire(at)
	d.binds.retire(at)
}

// FlushCache forgets every cached answer (SIGHUP).
func (d *Directory) FlushCache() { d.cache.flush() }

// MailboxDomains returns the configured mailbox domains.
func (d *Directory) MailboxDomains() []string { return append([]string(nil), d.opts.MailboxDomains...) }

// Ping connects, binds as the service account and reads the search base.
func (d *Directory) Ping(ctx context.Context) error {
	c, err := d.searches.get(ctx)
	if err != nil {
		d.countError(err, true)
		return err
	}
	req := ldap.NewSearchRequest(d.opts.BaseDN, ldap.ScopeBaseObject, ldap.NeverDerefAliases,
		1, 0, false, "(objectClass=*)", []string{noAttributes}, nil)
	_, err = c.Search(req)
	d.searches.put(c, err != nil && transportError(err))
	if err != nil {
		d.countError(err, false)
		return fmt.Errorf("%w: reading search base %s: %v", ErrUnavailable, d.opts.BaseDN, err)
	}
	return nil
}

// search runs filter under the base, through the cache. Zero entries is a
// valid answer (not found); every failure is ErrUnavailable.
func (d *Directory) search(ctx context.Context, filter string, attrs []string) ([]*ldap.Entry, error) {
	return d.cachedSearch(ctx, filter, attrs, false)
}

// noAttributes asks the server for no attribute at all (RFC 4511
// §4.5.1.8).
const noAttributes = "1.1"

// exists reports whether filter matches at least one entry: nil or
// ErrNotFound, and ErrUnavailable. It asks for one entry and no attribute,
// so that a domain with more entries than the size limit is still found:
// a sizeLimitExceeded (result 4) that comes with an entry is a hit, since
// slapd's own limits may answer 4 even to a limit of 1.
func (d *Directory) exists(ctx context.Context, filter string) error {
	entries, err := d.cachedSearch(ctx, filter, []string{noAttributes}, true)
	if err != nil {
		return err
	}
	if len(entries) == 0 {
		return ErrNotFound
	}
	return nil
}

// cachedSearch is search, or with one the existence search of exists.
func (d *Directory) cachedSearch(ctx context.Context, filter string, attrs []string, one bool) ([]*ldap.Entry, error) {
	key := filter + "\x00" + strings.Join(attrs, ",")
	if one {
		key += "\x00one"
	}
	entries, hit, err := d.cache.do(ctx, key, func() ([]*ldap.Entry, error) {
		return d.searchNow(ctx, filter, attrs, one)
	})
	if hit {
		d.nHits.Add(1)
	}
	return entries, err
}

// searchNow sends the search: with one, a size limit of 1, and a
// sizeLimitExceeded with an entry is that entry; otherwise in pages
// (pagedSearch).
func (d *Directory) searchNow(ctx context.Context, filter string, attrs []string, one bool) ([]*ldap.Entry, error) {
	req := ldap.NewSearchRequest(d.opts.BaseDN, d.scope, ldap.NeverDerefAliases,
		1, int(d.opts.RequestTimeout.Seconds()), false, filter, attrs, nil)
	var lastErr error
	// A pooled connection may have died with the server since its last use:
	// one retry on a fresh connection (the other pooled ones may be as
	// dead) makes a restarted server transparent.
	for attempt := 0; attempt < 2; attempt++ {
		if err := ctx.Err(); err != nil {
			d.countError(err, false)
			return nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
		}
		c, err := d.searches.getFor(ctx, attempt)
		if err != nil {
			d.countError(err, true)
			return nil, err
		}
		var res *ldap.SearchResult
		if one {
			d.nSearches.Add(1)
			res, err = c.Search(req)
		} else {
			res, err = d.pagedSearch(ctx, c.Search, d.searches.urlOf(c), filter, attrs)
		}
		if err == nil {
			d.searches.put(c, false)
			return res.Entries, nil
		}
		if one && res != nil && len(res.Entries) > 0 && ldap.IsErrorWithCode(err, ldap.LDAPResultSizeLimitExceeded) {
			d.searches.put(c, false)
			return res.Entries[:1], nil
		}
		broken := transportError(err)
		if broken {
			d.searches.timedOut(c, err)
		}
		d.searches.put(c, broken)
		lastErr = err
		// A server that pages without end would do so again.
		if !broken || errors.Is(err, errTooManyPages) {
			break
		}
	}
	d.countError(lastErr, false)
	if ldap.IsErrorWithCode(lastErr, ldap.LDAPResultSizeLimitExceeded) {
		d.opts.Logger.Warn("LDAP search failed: more entries match than a size limit allows; the lookup waits (4xx) until "+
			"the reader may read them all (slapd: olcLimits for the reader with size.prtotal=unlimited, or a higher size.hard)",
			"filter", filter, "size_limit", d.opts.SizeLimit, "err", lastErr)
	} else {
		d.opts.Logger.Warn("LDAP search failed", "filter", filter, "err", lastErr)
	}
	return nil, fmt.Errorf("%w: search %s: %v", ErrUnavailable, filter, lastErr)
}

// pageSize is the page of a paged search (RFC 2696): the usual answer
// fits in one, and it stays under a per-page limit a server may set
// (slapd's size.pr answers adminLimitExceeded to a larger page).
const pageSize = 100

// errTooManyPages: a paged search went on sending cookies with pages that
// hold no entry (pagedSearch), as a server or proxy that answers empty
// pages with a cookie would forever. Not a transport error, but the
// connection, which the server keeps paging state on, is closed.
var errTooManyPages = errors.New("paged search: pages without entries and still a cookie")

// maxEmptyPages bounds the pages in a row that bring no entry and still a
// cookie: a server may end with one empty page, none sends more.
const maxEmptyPages = 2

// pagedSearch reads every entry matching filter, page by page (RFC 2696),
// with search (a connection's Search), up to SizeLimit in all, so that a
// server whose limits bound plain searches but not paged ones (slapd:
// size.prtotal=unlimited beside a low size.hard, as Active Directory's
// MaxPageSize) still answers in full: many entries sharing a maildrop are
// one lookup, not a size-limit error. More than SizeLimit entries is
// sizeLimitExceeded, from the server (the request carries the limit,
// which applies to all pages) or from here. A server without paging
// ignores the control (it is not critical) and answers in one go, as
// before; one that refuses it gets the search plain (unpagedAfterRefusal).
// server is the URL search's connection is on: the refusal is that
// server's (pagingRefusals).
//
// The pages are bounded too, and ctx is checked before each, so that a
// server that keeps sending a cookie must not hold a RCPT and a pooled
// connection for good: every page with entries brings the search nearer
// to SizeLimit, whatever the server's own page size (Active Directory's
// MaxPageSize, a proxy's, may be below ours), and more than
// maxEmptyPages in a row without any is errTooManyPages.
func (d *Directory) pagedSearch(ctx context.Context, search func(*ldap.SearchRequest) (*ldap.SearchResult, error),
	server, filter string, attrs []string) (*ldap.SearchResult, error) {
	if d.plain.refused(server, d.opts.Now()) {
		return d.plainSearch(search, filter, attrs)
	}
	paging := ldap.NewControlPaging(pageSize)
	req := ldap.NewSearchRequest(d.opts.BaseDN, d.scope, ldap.NeverDerefAliases,
		d.opts.SizeLimit, int(d.opts.RequestTimeout.Seconds()), false, filter, attrs, []ldap.Control{paging})
	all := &ldap.SearchResult{}
	empty := 0 // pages in a row without entries, with a cookie
	for page := 0; ; page++ {
		if err := ctx.Err(); err != nil {
			return all, fmt.Errorf("paged search, page %d: %w", page+1, err)
		}
		d.nSearches.Add(1)
		res, err := search(req)
		if page == 0 && ldap.IsErrorWithCode(err, ldap.LDAPResultAdminLimitExceeded) {
			return d.unpagedAfterRefusal(search, server, filter, attrs, err)
		}
		if res != nil {
			all.Entries = append(all.Entries, res.Entries...)
		}
		if err != nil {
			return all, err
		}
		next, _ := ldap.FindControl(res.Controls, ldap.ControlTypePaging).(*ldap.ControlPaging)
		more := next != nil && len(next.Cookie) > 0
		if len(res.Entries) > 0 {
			empty = 0
		} else {
			empty++
		}
		if more && empty > maxEmptyPages {
			return all, fmt.Errorf("%w: %d pages, %d entries", errTooManyPages, page+1, len(all.Entries))
		}
		if len(all.Entries) > d.opts.SizeLimit {
			// The server ignored the request's limit.
			if more {
				// Give up the rest of the paged search: a page size of 0
				// (RFC 2696 §3), so the server drops its state.
				paging.PagingSize = 0
				paging.SetCookie(next.Cookie)
				if _, err := search(req); err != nil && transportError(err) {
					return all, err
				}
			}
			return all, ldap.NewError(ldap.LDAPResultSizeLimitExceeded,
				fmt.Errorf("more than %d entries (Options.SizeLimit)", d.opts.SizeLimit))
		}
		if !more {
			return all, nil
		}
		paging.SetCookie(next.Cookie)
	}
}

// unpagedAfterRefusal answers a search whose first page server refused
// with adminLimitExceeded: slapd answers so when the reader's limits
// forbid paging (olcLimits size.prtotal=disabled) or allow smaller pages
// than ours (size.pr), although the control is not critical. The same
// search is sent plain, as Postfix's dict_ldap sends every search,
// bounded by the server's plain size limits; when that one is answered,
// paging was the cause, and later searches to that server are sent plain
// at once, for pagingRefusalFor. When it is refused too (another admin
// limit: slapd's size.unchecked), the first refusal stands.
func (d *Directory) unpagedAfterRefusal(search func(*ldap.SearchRequest) (*ldap.SearchResult, error),
	server, filter string, attrs []string, refused error) (*ldap.SearchResult, error) {
	res, err := d.plainSearch(search, filter, attrs)
	if ldap.IsErrorWithCode(err, ldap.LDAPResultAdminLimitExceeded) {
		return res, refused
	}
	if err == nil && d.plain.record(server, d.opts.Now()) {
		d.opts.Logger.Warn("the LDAP server refuses paged searches to the reader: lookups on it are plain searches for a while, "+
			"bounded by its plain size limits (slapd: olcLimits size.pr, size.prtotal)",
			"url", server, "for", pagingRefusalFor, "err", refused)
	}
	return res, err
}

// pagingRefusalFor is how long a server that refused paging to the reader
// gets plain searches before it is asked for pages again: a server that
// keeps refusing costs one refused page that often, and an admin who
// changes its limits (paging allowed again, the plain limit lowered below
// a list that only paging reads in full) is followed without a reload.
const pagingRefusalFor = 5 * time.Minute

// pagingRefusals remembers, by URL, the servers that refused a paged
// search to the reader and answered it plain, until when searches to them
// are plain. By server, not for the whole Directory: a replica that
// refuses paging, reached in a failover, must not leave the preferred
// server, whose plain size limit may be below a list that only its paged
// searches return in full, asked plain once lookups are back on it. The
// zero value remembers none.
type pagingRefusals struct {
	mu    sync.Mutex
	until map[string]time.Time // guarded by mu
}

// refused reports whether searches to url are plain at now.
func (r *pagingRefusals) refused(url string, now time.Time) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return now.Before(r.until[url])
}

// record makes searches to url plain from now for pagingRefusalFor, and
// reports whether it did: false when they already are (another search
// refused at the same time), so that a refusal is logged once.
func (r *pagingRefusals) record(url string, now time.Time) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if now.Before(r.until[url]) {
		return false
	}
	if r.until == nil {
		r.until = map[string]time.Time{}
	}
	r.until[url] = now.Add(pagingRefusalFor)
	return true
}

// plainSearch is pagedSearch's one request without the paging control,
// up to SizeLimit entries.
func (d *Directory) plainSearch(search func(*ldap.SearchRequest) (*ldap.SearchResult, error),
	filter string, attrs []string) (*ldap.SearchResult, error) {
	req := ldap.NewSearchRequest(d.opts.BaseDN, d.scope, ldap.NeverDerefAliases,
		d.opts.SizeLimit, int(d.opts.RequestTimeout.Seconds()), false, filter, attrs, nil)
	d.nSearches.Add(1)
	res, err := search(req)
	if err == nil && len(res.Entries) > d.opts.SizeLimit {
		// The server ignored the request's limit.
		return res, ldap.NewError(ldap.LDAPResultSizeLimitExceeded,
			fmt.Errorf("more than %d entries (Options.SizeLimit)", d.opts.SizeLimit))
	}
	return res, err
}

// bind checks a password by binding as dn on a connection kept for binds.
func (d *Directory) bind(ctx context.Context, dn, password string) error {
	for attempt := 0; attempt < 2; attempt++ {
		c, err := d.binds.getFor(ctx, attempt)
		if err != nil {
			d.countError(err, true)
			return err
		}
		d.nBinds.Add(1)
		err = c.Bind(dn, password)
		if err == nil {
			d.binds.put(c, false)
			return nil
		}
		var le *ldap.Error
		if errors.As(err, &le) {
			switch le.ResultCode {
			case ldap.LDAPResultInvalidCredentials, ldap.LDAPResultInappropriateAuthentication,
				ldap.LDAPResultInvalidDNSyntax, ldap.LDAPResultNoSuchObject:
				d.binds.put(c, false)
				return ErrInvalidCredentials
			case ldap.LDAPResultUnwillingToPerform:
				// ppolicy lockouts and the like: a refusal for this user.
				d.binds.put(c, false)
				return fmt.Errorf("%w: %s", ErrInvalidCredentials, le.Err)
			}
		}
		d.binds.timedOut(c, err)
		d.binds.put(c, true)
		if attempt == 1 || !transportError(err) {
			d.countError(err, false)
			return fmt.Errorf("%w: bind: %v", ErrUnavailable, err)
		}
	}
	return ErrUnavailable
}
