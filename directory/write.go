package directory

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/go-ldap/ldap/v3"

	"courriel/cluster"
)

// maxReferralLen bounds a referral URL taken from a server.
const maxReferralLen = 512

// checkWriteURL accepts ldap:// and ldaps:// URLs naming a host, without
// credentials: a write URL from the configuration or a referral.
func checkWriteURL(raw string) error {
	if len(raw) > maxReferralLen {
		return errors.New("too long")
	}
	u, err := url.Parse(raw)
	if err != nil {
		return err
	}
	if u.Scheme != "ldap" && u.Scheme != "ldaps" {
		return errors.New("scheme must be ldap or ldaps")
	}
	if u.Host == "" || u.User != nil {
		return errors.New("want ldap[s]://host[:port]")
	}
	for _, r := range raw {
		if r < 0x21 || r == 0x7f {
			return errors.New("control character or space")
		}
	}
	return nil
}

// SetHomeNode makes node the home node of login (a uid, or an address of
// the user) by writing the home attribute (Options.HomeAttribute) on the
// user's entry, on the provider: adding objectClass inetLocalMailRecipient
// when the attribute is mailHost and the entry lacks the class. node ""
// removes the attribute (the user is at home on every node, as on a
// single node). The local cache is flushed; other nodes see the change at
// replication speed (their watchers) or after their TTL.
func (d *Directory) SetHomeNode(ctx context.Context, login, node string) error {
	a := d.opts.HomeAttribute
	if a == "" {
		return errors.New("directory: no home attribute configured (a cluster's [cluster] node)")
	}
	if node != "" {
		if err := cluster.CheckNodeName(node); err != nil {
			return fmt.Errorf("directory: home node %q: %w", node, err)
		}
		node = strings.ToLower(node)
	}
	dn, err := d.userEntryDN(ctx, login)
	if err != nil {
		return err
	}
	defer d.FlushCache()
	if node == "" {
		req := ldap.NewModifyRequest(dn, nil)
		req.Delete(a, nil)
		err := d.modify(ctx, req)
		if isLDAPCode(err, ldap.LDAPResultNoSuchAttribute) {
			return nil // not homed anywhere already
		}
		return err
	}
	if strings.EqualFold(a, "mailHost") {
		// One atomic modify when the class is missing; when it is there,
		// adding it again fails as a whole (attributeOrValueExists) and
		// the replace alone is sent.
		req := ldap.NewModifyRequest(dn, nil)
		req.Add("objectClass", []string{"inetLocalMailRecipient"})
		req.Replace(a, []string{node})
		err := d.modify(ctx, req)
		if !isLDAPCode(err, ldap.LDAPResultAttributeOrValueExists) {
			return err
		}
	}
	req := ldap.NewModifyRequest(dn, nil)
	req.Replace(a, []string{node})
	return d.modify(ctx, req)
}

// SetPassword replaces the userPassword of login (a uid, or an address of
// the user) with hash, a value as slapd stores it ({SSHA}…, see
// courriel/directory/password), on the provider. The entry is the one
// Authenticate binds to (Options.AuthBindDN, or the user's entry).
func (d *Directory) SetPassword(ctx context.Context, login, hash string) error {
	if hash == "" || len(hash) > 2*maxPasswordLen || strings.ContainsAny(hash, "\x00\r\n") {
		return errors.New("directory: unusable password hash")
	}
	dn, err := d.userEntryDN(ctx, login)
	if err != nil {
		return err
	}
	if d.opts.AuthBindDN != "" {
		uid, err := d.loginUID(ctx, login)
		if err != nil {
			return err
		}
		if dn, err = expandDN(d.opts.AuthBindDN, uid); err != nil {
			return fmt.Errorf("directory: bind DN of %s: %w", uid, err)
		}
	}
	req := ldap.NewModifyRequest(dn, nil)
	req.Replace("userPassword", []string{hash})
	if d.readsAttribute("userPassword") {
		// Only then can a cached answer hold the old password; otherwise
		// a password change keeps the cache, as the Watcher does.
		defer d.FlushCache()
	}
	return d.modify(ctx, req)
}

// userEntryDN finds login's entry with the user query, uncached: a write
// must not act on an answer cached before the entry moved or went away.
func (d *Directory) userEntryDN(ctx context.Context, login string) (string, error) {
	uid, err := d.loginUID(ctx, login)
	if err != nil {
		return "", err
	}
	key, ok := normalizeKey(uid)
	if !ok {
		return "", ErrNotFound
	}
	filter, ok, err := expandLoginFilter(d.opts.Queries.User.Filter, key)
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	if !ok {
		return "", ErrNotFound
	}
	entries, err := d.searchNow(ctx, filter, []string{noAttributes}, false)
	if err != nil {
		return "", err
	}
	switch len(entries) {
	case 0:
		return "", ErrNotFound
	case 1:
		return entries[0].DN, nil
	}
	return "", fmt.Errorf("%w: %d entries for login %s", ErrUnavailable, len(entries), uid)
}

func isLDAPCode(err error, code uint16) bool {
	var le *ldap.Error
	return errors.As(err, &le) && le.ResultCode == code
}

// writer returns the bind of writes.
func (d *Directory) writer() (dn, pw string) {
	if d.opts.WriteBindDN != "" {
		return d.opts.WriteBindDN, d.opts.WriteBindPassword
	}
	return d.opts.BindDN, d.opts.BindPassword
}

// writePool is a connection pool (never kept: writes are rare) on urls,
// bound as the write account. TLS names the host of each URL, not
// Options.ServerName, which names the servers read from.
func (d *Directory) writePool(urls []string) *connPool {
	dn, pw := d.writer()
	p := newConnPool(&d.opts, d.searches.tls.Clone(), dn, pw)
	p.tls.ServerName = ""
	p.urls = urls
	return p
}

// modify sends req to the provider. With WriteURLs, there. Without, it is
// first sent on a read connection: a consumer answers with a referral
// (before any access check) that is followed once, as the write account;
// a single server applies it if the read account may, or refuses it
// (insufficient access), and it is sent again as the write account.
// Result codes come back as *ldap.Error (errors.As); a server that
// cannot be reached is ErrUnavailable.
func (d *Directory) modify(ctx context.Context, req *ldap.ModifyRequest) error {
	if len(d.opts.WriteURLs) > 0 {
		return d.modifyOn(ctx, d.writePool(d.opts.WriteURLs), req, true)
	}
	c, err := d.searches.get(ctx)
	if err != nil {
		return err
	}
	res, err := c.ModifyWithResult(req)
	d.searches.put(c, err != nil && transportError(err) && !isLDAPCode(err, ldap.LDAPResultUnwillingToPerform))
	switch {
	case err == nil:
		return nil
	case isLDAPCode(err, ldap.LDAPResultReferral):
		return d.followReferral(ctx, req, res)
	case isLDAPCode(err, ldap.LDAPResultInsufficientAccessRights):
		if dn, _ := d.writer(); dn != d.opts.BindDN {
			return d.modifyOn(ctx, d.writePool(d.opts.URLs), req, true)
		}
	}
	return d.writeErr(req, err)
}

// modifyOn sends req on a new connection of p; a referral is followed
// when follow is set.
func (d *Directory) modifyOn(ctx context.Context, p *connPool, req *ldap.ModifyRequest, follow bool) error {
	c, err := p.dial(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	res, err := c.ModifyWithResult(req)
	if follow && isLDAPCode(err, ldap.LDAPResultReferral) {
		return d.followReferral(ctx, req, res)
	}
	if err != nil {
		return d.writeErr(req, err)
	}
	return nil
}

// followReferral sends req to the first usable URL of a referral, once: a
// second referral is an error (a loop, or a chain of replicas).
func (d *Directory) followReferral(ctx context.Context, req *ldap.ModifyRequest, res *ldap.ModifyResult) error {
	var ref string
	if res != nil {
		ref = res.Referral
	}
	u, err := url.Parse(ref)
	if err != nil || checkWriteURL(ref) != nil {
		return fmt.Errorf("%w: modify %s: unusable referral %q (set [ldap] write_urls)", ErrUnavailable, req.DN, truncate(ref, 100))
	}
	// A referral names the server and sometimes the DN: the entry is the same.
	target := u.Scheme + "://" + u.Host
	d.opts.Logger.Debug("LDAP write referred", "dn", req.DN, "to", target)
	return d.modifyOn(ctx, d.writePool([]string{target}), req, false)
}

func (d *Directory) writeErr(req *ldap.ModifyRequest, err error) error {
	if transportError(err) && !isLDAPCode(err, ldap.LDAPResultUnwillingToPerform) {
		return fmt.Errorf("%w: modify %s: %w", ErrUnavailable, req.DN, err)
	}
	return fmt.Errorf("directory: modify %s: %w", req.DN, err)
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

// PingWrite connects to WriteURLs and binds as the write account; nil
// when no WriteURLs are configured (the provider is only known from a
// referral, at the first write).
func (d *Directory) PingWrite(ctx context.Context) error {
	if len(d.opts.WriteURLs) == 0 {
		return nil
	}
	c, err := d.writePool(d.opts.WriteURLs).dial(ctx)
	if err != nil {
		return err
	}
	c.Close()
	return nil
}
