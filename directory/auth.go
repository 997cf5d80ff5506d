package directory

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// maxPasswordLen bounds what is sent to the server.
const maxPasswordLen = 1024

// SenderLogins returns the logins (uid values) allowed to use addr as their
// envelope sender (seed: smtpd_sender_login_maps), the owners of its
// domain's catch-all when it has none of its own, as in Postfix.
// ErrNotFound: nobody.
func (d *Directory) SenderLogins(ctx context.Context, addr string) ([]string, error) {
	return d.valuesOrCatchAll(ctx, d.opts.Queries.Senders, addr)
}

// LookupUser finds a login user by uid, or by any of its addresses (alias
// or maildrop) when login contains '@': an address listed on its entry,
// never one its domain's catch-all takes.
func (d *Directory) LookupUser(ctx context.Context, login string) (User, error) {
	uid, err := d.loginUID(ctx, login)
	if err != nil {
		return User{}, err
	}
	q := d.opts.Queries.User
	mq := d.opts.Queries.Mailbox
	attrs := []string{q.ResultAttribute, mq.ResultAttribute, d.opts.Queries.UID.ResultAttribute, d.opts.Queries.GID.ResultAttribute, "uid"}
	attrs = append(attrs, d.quotaAttributes()...)
	if d.opts.HomeAttribute != "" {
		attrs = append(attrs, d.opts.HomeAttribute)
	}
	// Every entry of the login, with a home or not: two are ambiguous.
	entries, err := d.loginEntries(ctx, q, uid, attrs)
	if err != nil {
		return User{}, err
	}
	if len(entries) == 0 {
		return User{}, ErrNotFound
	}
	if len(entries) > 1 {
		return User{}, fmt.Errorf("%w: %d entries for login %s (%s): the login must name one entry only",
			ErrUnavailable, len(entries), uid, entryDNs(entries))
	}
	e := entries[0]
	home, ok := singlePath(e, q)
	if !ok {
		return User{}, fmt.Errorf("%w: entry %s: no single %s", ErrUnavailable, e.DN, q.ResultAttribute)
	}
	u := User{Login: uid, DN: e.DN}
	if u.Home, err = checkMaildir(home); err != nil {
		return User{}, fmt.Errorf("%w: login %s: %v", ErrUnavailable, uid, err)
	}
	u.Home = strings.TrimSuffix(u.Home, "/")
	// The maildir by the rule delivery uses (the mailbox query's attribute
	// and result_format, seed: homeDirectory + "/mailbox/"), so that IMAP
	// serves the folder delivery writes to.
	maildir, ok := singlePath(e, mq)
	if !ok {
		return User{}, fmt.Errorf("%w: entry %s: no single %s for the maildir", ErrUnavailable, e.DN, mq.ResultAttribute)
	}
	if u.Maildir, err = checkMaildir(maildir); err != nil {
		return User{}, fmt.Errorf("%w: login %s: maildir: %v", ErrUnavailable, uid, err)
	}
	uidv, _ := single(e, Query{ResultAttribute: d.opts.Queries.UID.ResultAttribute, ResultFormat: "%s"})
	gidv, _ := single(e, Query{ResultAttribute: d.opts.Queries.GID.ResultAttribute, ResultFormat: "%s"})
	if u.UID, err = d.checkID(uidv, d.opts.MinUID); err != nil {
		return User{}, fmt.Errorf("%w: login %s: uid: %v", ErrUnavailable, uid, err)
	}
	if u.GID, err = d.checkID(gidv, 1); err != nil {
		return User{}, fmt.Errorf("%w: login %s: gid: %v", ErrUnavailable, uid, err)
	}
	if vals := e.GetEqualFoldAttributeValues("uid"); len(vals) == 1 {
		u.Login = vals[0]
	}
	var quota []string
	for _, a := range d.quotaAttributes() {
		v, _ := single(e, Query{ResultAttribute: a, ResultFormat: "%s"})
		quota = append(quota, v)
	}
	if u.QuotaBytes, u.QuotaMessages, err = d.parseQuota(quota); err != nil {
		return User{}, fmt.Errorf("%w: login %s: quota: %v", ErrUnavailable, uid, err)
	}
	if u.Node, err = d.homeNode(e); err != nil {
		return User{}, err
	}
	return u, nil
}

// loginUID maps a login name to the uid to look up: itself, or for an
// address, the one login the sender query gives for that very address
// (itself when the query gives none).
// Never through a catch-all: "@domain" owned by one account would let any
// made-up address of the domain log in as it, each name a fresh start for
// loginguard's per-login failure count. The catch-all is for sender
// ownership only (SenderLogins, as Postfix's smtpd_sender_login_maps looks
// up @domain too); Dovecot's pass_filter matches the typed login itself.
func (d *Directory) loginUID(ctx context.Context, login string) (string, error) {
	if strings.Contains(login, `"`) {
		// No login is quoted (Dovecot takes none): the address lookups'
		// unquoting (internalForm) would give every login 2^n spellings,
		// each a fresh start for loginguard's per-login failure count.
		return "", ErrNotFound
	}
	if !strings.Contains(login, "@") {
		if _, ok := normalizeKey(login); !ok {
			return "", ErrNotFound
		}
		return login, nil
	}
	if local, domain := splitAddress(login); local == "" || domain == "" {
		// "@domain" is the catch-all's own key: no login.
		return "", ErrNotFound
	}
	q := d.opts.Queries.Senders
	logins, err := d.values(ctx, q, login)
	if errors.Is(err, ErrNotFound) {
		// No entry lists the address: it may be a uid itself (directories
		// that name users by address), which the user query finds as
		// Dovecot's user_filter (uid=%u) finds the login typed.
		return login, nil
	}
	if err != nil {
		return "", err
	}
	if l, ok := oneLogin(logins); ok {
		return l, nil
	}
	// The senders query also finds the entries whose maildrop the address
	// is: every list and forward that delivers to a user names the user's
	// own address (alice@xoyize.xyz, the maildrop of the lists "team"
	// and "mixed"), which must still log in as the user (Thunderbird's
	// autoconfig gives the address as the login). The entries that have
	// a home are the accounts; alias-only entries have none. An address
	// shared by two accounts still names no single account to log into.
	home := d.opts.Queries.User.ResultAttribute
	entries, err := d.entries(ctx, q, login, []string{q.ResultAttribute, home}, home)
	if err != nil {
		return "", err
	}
	logins, err = resultValues(q, entries)
	if err != nil {
		return "", err
	}
	if l, ok := oneLogin(logins); ok {
		return l, nil
	}
	return "", ErrNotFound
}

// oneLogin is the login when logins name one (case aside).
func oneLogin(logins []string) (string, bool) {
	for _, l := range logins {
		if !strings.EqualFold(l, logins[0]) {
			return "", false
		}
	}
	return logins[0], len(logins) > 0
}

// Authenticate checks login's password by binding to the directory as the
// user, and returns the user. login is a uid or any address of the user.
// Errors: ErrInvalidCredentials (whatever the cause: unknown user, wrong
// password, empty password — an empty password would be an anonymous bind
// that always succeeds), or ErrUnavailable.
func (d *Directory) Authenticate(ctx context.Context, login, password string) (User, error) {
	if password == "" || len(password) > maxPasswordLen || strings.IndexByte(password, 0) >= 0 ||
		!utf8.ValidString(password) || login == "" || strings.IndexByte(login, 0) >= 0 {
		return User{}, ErrInvalidCredentials
	}
	u, err := d.LookupUser(ctx, login)
	if errors.Is(err, ErrNotFound) {
		return User{}, ErrInvalidCredentials
	}
	if err != nil {
		return User{}, err
	}
	dn := u.DN
	if d.opts.AuthBindDN != "" {
		if dn, err = expandDN(d.opts.AuthBindDN, u.Login); err != nil {
			return User{}, ErrInvalidCredentials
		}
	}
	if err := d.bind(ctx, dn, password); err != nil {
		return User{}, err
	}
	return u, nil
}
