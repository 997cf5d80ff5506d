package directory

import (
	"context"
	"courriel/cluster"
	"errors"
	"fmt"
	"path"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/go-ldap/ldap/v3"
)

// Map names one lookup table, as `courriel lookup MAP KEY` spells it.
type Map string

const (
	MapDomains Map = "domains"
	MapAliases Map = "aliases"
	MapMailbox Map = "mailbox"
	MapUID     Map = "uid"
	MapGID     Map = "gid"
	MapSenders Map = "senders"
	MapUser    Map = "user"
)

// Maps lists every map Lookup knows, in display order.
var Maps = []Map{MapDomains, MapAliases, MapMailbox, MapUID, MapGID, MapSenders, MapUser}

// maxKeyLen bounds keys: an SMTP path is at most 256 octets (RFC 5321
// §4.5.3.1.3); logins are shorter still.
const maxKeyLen = 320

// normalizeKey lower-cases a key (the postfixUser attributes match
// case-insensitively, and so must the cache). ok is false for keys that can
// name nothing: empty, too long, control characters, invalid UTF-8.
func normalizeKey(key string) (string, bool) {
	if key == "" || len(key) > maxKeyLen || !utf8.ValidString(key) {
		return "", false
	}
	for _, r := range key {
		if r < 0x20 || r == 0x7f {
			return "", false
		}
	}
	return strings.ToLower(key), true
}

func (d *Directory) query(m Map) Query {
	q := d.opts.Queries
	switch m {
	case MapDomains:
		return q.Domains
	case MapAliases:
		return q.Aliases
	case MapMailbox:
		return q.Mailbox
	case MapUID:
		return q.UID
	case MapGID:
		return q.GID
	case MapSenders:
		return q.Senders
	case MapUser:
		return q.User
	}
	return Query{}
}

// entries runs q for key and returns the matching entries with attrs.
// A need attribute ("": none) narrows the search to the entries that have
// it, for a caller that skips the others anyway: then what a size limit
// counts is what the lookup uses. A maildrop shared by hundreds of alias
// entries (lists, forwards) is one mailbox entry to the mailbox query,
// whatever the server's limits (see withAttribute).
func (d *Directory) entries(ctx context.Context, q Query, key string, attrs []string, need string) ([]*ldap.Entry, error) {
	key, ok := normalizeKey(key)
	if !ok {
		return nil, nil
	}
	filter, ok, err := expandFilter(q.Filter, key)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	if !ok {
		return nil, nil
	}
	return d.search(ctx, withAttribute(filter, need), attrs)
}

// loginEntries runs the user query q for a login (a uid: expandLogin's
// %u) and returns the matching entries with attrs.
func (d *Directory) loginEntries(ctx context.Context, q Query, login string, attrs []string) ([]*ldap.Entry, error) {
	login, ok := normalizeKey(login)
	if !ok {
		return nil, nil
	}
	filter, ok, err := expandLoginFilter(q.Filter, login)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	if !ok {
		return nil, nil
	}
	return d.search(ctx, filter, attrs)
}

// withAttribute is filter restricted to the entries that have attribute a
// (a presence filter, RFC 4515), or filter itself when a is "". The
// caller's answer is unchanged: an entry without a yields no value of a,
// and one a reader may not read fails the presence test as it would yield
// nothing. filter is a compiled-valid filter, in parentheses (Query's
// validate), and a an attribute name (no '(', ')', '=', '*').
func withAttribute(filter, a string) string {
	if a == "" {
		return filter
	}
	return "(&" + filter + "(" + a + "=*))"
}

// values runs q for key and returns its formatted results, like postmap -q.
func (d *Directory) values(ctx context.Context, q Query, key string) ([]string, error) {
	entries, err := d.entries(ctx, q, key, []string{q.ResultAttribute}, q.ResultAttribute)
	if err != nil {
		return nil, err
	}
	return resultValues(q, entries)
}

// resultValues are q's formatted results in entries; ErrNotFound when
// there are none.
func resultValues(q Query, entries []*ldap.Entry) ([]string, error) {
	var out []string
	for _, e := range entries {
		for _, v := range e.GetEqualFoldAttributeValues(q.ResultAttribute) {
			if f, ok := formatResult(q.ResultFormat, v); ok {
				out = append(out, f)
			}
		}
	}
	if len(out) == 0 {
		return nil, ErrNotFound
	}
	return out, nil
}

// Lookup runs one map for key and returns its values as postmap -q would
// (MapUser returns the user's home directory). ErrNotFound when none.
// MapDomains answers as ClassifyDomain asks, by existence: the domain
// itself when any entry matches, however many do.
func (d *Directory) Lookup(ctx context.Context, m Map, key string) ([]string, error) {
	q := d.query(m)
	if q.Filter == "" {
		return nil, fmt.Errorf("unknown map %q (want one of %v)", m, Maps)
	}
	if m == MapDomains {
		if err := d.hosted(ctx, key); err != nil {
			return nil, err
		}
		k, _ := normalizeKey(key)
		return []string{k}, nil
	}
	if m == MapUser {
		// The key is a login, as LookupUser looks it up: a uid, or an
		// address of the user.
		uid, err := d.loginUID(ctx, key)
		if err != nil {
			return nil, err
		}
		entries, err := d.loginEntries(ctx, q, uid, []string{q.ResultAttribute})
		if err != nil {
			return nil, err
		}
		return resultValues(q, entries)
	}
	return d.values(ctx, q, key)
}

// singleLogin is e's uid attribute when it has one value, as LookupUser
// reads the login; "" otherwise.
func singleLogin(e *ldap.Entry) string {
	if vals := e.GetEqualFoldAttributeValues("uid"); len(vals) == 1 {
		return vals[0]
	}
	return ""
}

// Mailbox returns where mail for the maildrop address is stored. Values
// from the directory are checked: one entry, an absolute clean path, and
// numeric ids no lower than MinUID. A bad entry is ErrUnavailable (an admin
// must fix it; mail waits instead of bouncing).
func (d *Directory) Mailbox(ctx context.Context, addr string) (*Mailbox, error) {
	q := d.opts.Queries
	var home, uid, gid string
	var quota []string // values of the quota attributes, "" when absent
	var userHome, node, login string
	var addrs []string
	if q.Mailbox.Filter == q.UID.Filter && q.UID.Filter == q.GID.Filter {
		attrs := []string{q.Mailbox.ResultAttribute, q.UID.ResultAttribute, q.GID.ResultAttribute}
		attrs = append(attrs, d.quotaAttributes()...)
		attrs = append(attrs, q.User.ResultAttribute, q.Domains.ResultAttribute, "uid")
		if d.opts.HomeAttribute != "" {
			attrs = append(attrs, d.opts.HomeAttribute)
		}
		entries, err := d.entries(ctx, q.Mailbox, addr, attrs, q.Mailbox.ResultAttribute)
		if err != nil {
			return nil, err
		}
		// Alias-only entries (lists, chains) carry the maildrop too but no
		// home: like Postfix's virtual_mailbox_maps, they yield nothing.
		entries = slices.DeleteFunc(slices.Clone(entries), func(e *ldap.Entry) bool {
			return len(e.GetEqualFoldAttributeValues(q.Mailbox.ResultAttribute)) == 0
		})
		if len(entries) == 0 {
			return nil, ErrNotFound
		}
		if len(entries) > 1 {
			return nil, fmt.Errorf("%w: %d entries have maildrop %s and a %s (%s): its mail waits until the maildrop is kept on one of them only",
				ErrUnavailable, len(entries), addr, q.Mailbox.ResultAttribute, entryDNs(entries))
		}
		e := entries[0]
		var ok bool
		if home, ok = singlePath(e, q.Mailbox); !ok {
			return nil, fmt.Errorf("%w: entry %s: no single %s", ErrUnavailable, e.DN, q.Mailbox.ResultAttribute)
		}
		if uid, ok = single(e, q.UID); !ok {
			return nil, fmt.Errorf("%w: entry %s: no single %s", ErrUnavailable, e.DN, q.UID.ResultAttribute)
		}
		if gid, ok = single(e, q.GID); !ok {
			return nil, fmt.Errorf("%w: entry %s: no single %s", ErrUnavailable, e.DN, q.GID.ResultAttribute)
		}
		for _, a := range d.quotaAttributes() {
			v, _ := single(e, Query{ResultAttribute: a, ResultFormat: "%s"})
			quota = append(quota, v)
		}
		if h, ok := singlePath(e, Query{ResultAttribute: q.User.ResultAttribute, ResultFormat: "%s"}); ok {
			if h, err := checkMaildir(h); err == nil {
				userHome = strings.TrimSuffix(h, "/")
			}
		}
		if a := q.Domains.ResultAttribute; a != "" {
			addrs = e.GetEqualFoldAttributeValues(a)
			if len(addrs) > maxAddresses {
				addrs = addrs[:maxAddresses]
			}
		}
		if node, err = d.homeNode(e); err != nil {
			return nil, err
		}
		login = singleLogin(e)
	} else {
		var err error
		if home, err = d.onePath(ctx, q.Mailbox, addr); err != nil {
			return nil, err
		}
		if uid, err = d.one(ctx, q.UID, addr); err != nil {
			return nil, err
		}
		if gid, err = d.one(ctx, q.GID, addr); err != nil {
			return nil, err
		}
		// The home and addresses of the maildrop's entry, for Sieve
		// delivery: one search more, answered by the cache afterwards.
		attrs := []string{q.User.ResultAttribute, q.Domains.ResultAttribute, "uid"}
		if d.opts.HomeAttribute != "" {
			attrs = append(attrs, d.opts.HomeAttribute)
		}
		entries, err := d.entries(ctx, q.Mailbox, addr, attrs, q.User.ResultAttribute)
		if err != nil {
			return nil, err
		}
		entries = slices.DeleteFunc(slices.Clone(entries), func(e *ldap.Entry) bool {
			return len(e.GetEqualFoldAttributeValues(q.User.ResultAttribute)) == 0
		})
		if len(entries) == 1 {
			if h, ok := singlePath(entries[0], Query{ResultAttribute: q.User.ResultAttribute, ResultFormat: "%s"}); ok {
				if h, err := checkMaildir(h); err == nil {
					userHome = strings.TrimSuffix(h, "/")
				}
			}
			if a := q.Domains.ResultAttribute; a != "" {
				addrs = entries[0].GetEqualFoldAttributeValues(a)
				if len(addrs) > maxAddresses {
					addrs = addrs[:maxAddresses]
				}
			}
			if node, err = d.homeNode(entries[0]); err != nil {
				return nil, err
			}
			login = singleLogin(entries[0])
		}
		for _, a := range d.quotaAttributes() {
			vals, err := d.values(ctx, Query{Filter: q.Mailbox.Filter, ResultAttribute: a, ResultFormat: "%s"}, addr)
			if err != nil && !errors.Is(err, ErrNotFound) {
				return nil, err
			}
			v := ""
			if len(vals) == 1 {
				v = vals[0]
			}
			quota = append(quota, v)
		}
	}
	mb := &Mailbox{Address: strings.ToLower(addr), Maildir: home, Home: userHome, Addresses: addrs, Node: node, Login: login}
	var err error
	if mb.Maildir, err = checkMaildir(home); err != nil {
		return nil, fmt.Errorf("%w: maildrop %s: %v", ErrUnavailable, addr, err)
	}
	if mb.UID, err = d.checkID(uid, d.opts.MinUID); err != nil {
		return nil, fmt.Errorf("%w: maildrop %s: uid: %v", ErrUnavailable, addr, err)
	}
	if mb.GID, err = d.checkID(gid, 1); err != nil {
		return nil, fmt.Errorf("%w: maildrop %s: gid: %v", ErrUnavailable, addr, err)
	}
	if mb.QuotaBytes, mb.QuotaMessages, err = d.parseQuota(quota); err != nil {
		return nil, fmt.Errorf("%w: maildrop %s: quota: %v", ErrUnavailable, addr, err)
	}
	return mb, nil
}

// homeNode reads the home node attribute of an entry: "" when none is
// configured or the entry has none; more than one value, or a value that
// is no node name, is ErrUnavailable (mail waits for an admin).
func (d *Directory) homeNode(e *ldap.Entry) (string, error) {
	a := d.opts.HomeAttribute
	if a == "" {
		return "", nil
	}
	vals := e.GetEqualFoldAttributeValues(a)
	switch {
	case len(vals) == 0:
		return "", nil
	case len(vals) > 1:
		return "", fmt.Errorf("%w: entry %s: %d values of %s", ErrUnavailable, e.DN, len(vals), a)
	}
	if err := cluster.CheckNodeName(vals[0]); err != nil {
		return "", fmt.Errorf("%w: entry %s: %s: %v", ErrUnavailable, e.DN, a, err)
	}
	return strings.ToLower(vals[0]), nil
}

// maxAddresses bounds Mailbox.Addresses: a vacation reply compares them
// with the message's recipients.
const maxAddresses = 1000

// quotaAttributes are the configured quota attributes, storage first.
func (d *Directory) quotaAttributes() []string {
	var a []string
	if d.opts.QuotaAttribute != "" {
		a = append(a, d.opts.QuotaAttribute)
	}
	if d.opts.QuotaMessagesAttribute != "" {
		a = append(a, d.opts.QuotaMessagesAttribute)
	}
	return a
}

// parseQuota reads the values of quotaAttributes (same order, "" absent).
func (d *Directory) parseQuota(vals []string) (bytes, messages int64, err error) {
	i := 0
	if d.opts.QuotaAttribute != "" {
		if bytes, err = ParseQuota(vals[i]); err != nil {
			return 0, 0, err
		}
		i++
	}
	if d.opts.QuotaMessagesAttribute != "" && vals[i] != "" {
		if messages, err = strconv.ParseInt(strings.TrimSpace(vals[i]), 10, 64); err != nil || messages < 0 {
			return 0, 0, fmt.Errorf("bad message count %q", vals[i])
		}
	}
	return bytes, messages, nil
}

// ParseQuota reads a storage quota as admins write it in the directory: a
// number of bytes with an optional K, M, G or T (powers of 1024, as
// Dovecot's quota rules), alone or as Dovecot's "*:storage=1G" rule. "",
// "0" and "-" are no limit.
func ParseQuota(v string) (int64, error) {
	v = strings.TrimSpace(v)
	if i := strings.Index(v, "storage="); i >= 0 {
		v = v[i+len("storage="):]
		if j := strings.IndexAny(v, " :,"); j >= 0 {
			v = v[:j]
		}
	}
	if v == "" || v == "-" {
		return 0, nil
	}
	mult := int64(1)
	switch strings.ToUpper(v[len(v)-1:]) {
	case "B":
		v = v[:len(v)-1]
	case "K":
		mult, v = 1<<10, v[:len(v)-1]
	case "M":
		mult, v = 1<<20, v[:len(v)-1]
	case "G":
		mult, v = 1<<30, v[:len(v)-1]
	case "T":
		mult, v = 1<<40, v[:len(v)-1]
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 || n > (1<<62)/mult {
		return 0, fmt.Errorf("bad quota %q", v)
	}
	return n * mult, nil
}

func single(e *ldap.Entry, q Query) (string, bool) {
	vals := e.GetEqualFoldAttributeValues(q.ResultAttribute)
	if len(vals) != 1 {
		return "", false
	}
	return formatResult(q.ResultFormat, vals[0])
}

// singlePath is single for a path attribute (homeDirectory): the value is
// cleaned (cleanHome) before it is formatted.
func singlePath(e *ldap.Entry, q Query) (string, bool) {
	vals := e.GetEqualFoldAttributeValues(q.ResultAttribute)
	if len(vals) != 1 {
		return "", false
	}
	return formatResult(q.ResultFormat, cleanHome(vals[0]))
}

// cleanHome cleans a path from the directory before it is formatted, as
// Postfix and Dovecot take it: homeDirectory "/var/vmail/u/" with
// "%s/mailbox/" is /var/vmail/u/mailbox/, not ".../u//mailbox/". Only an
// absolute path without a ".." element is cleaned; anything else is left
// as it is, for checkMaildir to refuse.
func cleanHome(v string) string {
	if !path.IsAbs(v) || slices.Contains(strings.Split(v, "/"), "..") {
		return v
	}
	return path.Clean(v)
}

// onePath is one for a path attribute: the value cleaned, then formatted.
func (d *Directory) onePath(ctx context.Context, q Query, key string) (string, error) {
	v, err := d.one(ctx, Query{Filter: q.Filter, ResultAttribute: q.ResultAttribute, ResultFormat: "%s"}, key)
	if err != nil {
		return "", err
	}
	f, ok := formatResult(q.ResultFormat, cleanHome(v))
	if !ok {
		return "", fmt.Errorf("%w: %s %q: result format %q gives nothing", ErrUnavailable, q.ResultAttribute, v, q.ResultFormat)
	}
	return f, nil
}

// one runs q for key and wants exactly one value; several (from one entry
// or several) are ErrUnavailable naming the entries, for an admin to fix.
func (d *Directory) one(ctx context.Context, q Query, key string) (string, error) {
	entries, err := d.entries(ctx, q, key, []string{q.ResultAttribute}, q.ResultAttribute)
	if err != nil {
		return "", err
	}
	var vals []string
	var holders []*ldap.Entry
	for _, e := range entries {
		n := len(vals)
		for _, v := range e.GetEqualFoldAttributeValues(q.ResultAttribute) {
			if f, ok := formatResult(q.ResultFormat, v); ok {
				vals = append(vals, f)
			}
		}
		if len(vals) > n {
			holders = append(holders, e)
		}
	}
	switch {
	case len(vals) == 0:
		return "", ErrNotFound
	case len(vals) > 1:
		return "", fmt.Errorf("%w: %d values of %s for %s (%s): keep one value, on one entry",
			ErrUnavailable, len(vals), q.ResultAttribute, key, entryDNs(holders))
	}
	return vals[0], nil
}

// entryDNs names entries for an admin's log line: their DNs, the first few.
func entryDNs(entries []*ldap.Entry) string {
	const max = 5
	var dns []string
	for i, e := range entries {
		if i == max {
			dns = append(dns, fmt.Sprintf("and %d more", len(entries)-max))
			break
		}
		dns = append(dns, e.DN)
	}
	return strings.Join(dns, "; ")
}

// checkMaildir accepts only an absolute, clean path ending in "/" with no
// control characters: homeDirectory comes from the directory, and whoever
// can write there must not be able to aim deliveries anywhere.
func checkMaildir(p string) (string, error) {
	if !strings.HasSuffix(p, "/") {
		p += "/"
	}
	trimmed := strings.TrimSuffix(p, "/")
	if !path.IsAbs(p) || path.Clean(trimmed) != trimmed || trimmed == "" || trimmed == "/" {
		return "", fmt.Errorf("maildir %q is not an absolute clean path", p)
	}
	for _, r := range p {
		if r < 0x20 || r == 0x7f {
			return "", fmt.Errorf("maildir %q has control characters", p)
		}
	}
	return p, nil
}

func (d *Directory) checkID(s string, min int) (int, error) {
	n, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil {
		return 0, fmt.Errorf("%q is not a number", s)
	}
	if n < min || n > 1<<31-2 {
		return 0, fmt.Errorf("%d is out of range (minimum %d)", n, min)
	}
	return n, nil
}
