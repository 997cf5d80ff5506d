package directory

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"courriel/internal/envaddr"
)

var (
	// ErrAliasLoop: alias expansion only leads back to itself. Permanent.
	ErrAliasLoop = fmt.Errorf("%w: alias loop", ErrNotFound)
	// ErrExpansionLimit: alias expansion went past AliasExpansionLimit
	// addresses or AliasRecursionLimit levels. Temporary, as Postfix's
	// cleanup defers the message ("unreasonable virtual_alias_maps map
	// expansion size", 4.6.0) until an admin mends the alias: never a
	// partial expansion, never a bounce.
	ErrExpansionLimit = fmt.Errorf("%w: alias expansion limit exceeded", ErrUnavailable)
)

// ClassifyDomain says whether domain is a mailbox domain (configured), a
// hosted alias domain (found in the directory), or foreign.
func (d *Directory) ClassifyDomain(ctx context.Context, domain string) (DomainClass, error) {
	domain = domainKey(domain)
	if slices.Contains(d.opts.MailboxDomains, domain) {
		return DomainMailbox, nil
	}
	err := d.hosted(ctx, domain)
	switch {
	case err == nil:
		return DomainHosted, nil
	case errors.Is(err, ErrNotFound):
		return DomainForeign, nil
	}
	return DomainForeign, err
}

// domainKey is a domain as ClassifyDomain compares it: lower case,
// without a trailing dot.
func domainKey(domain string) string { return strings.TrimSuffix(strings.ToLower(domain), ".") }

// hosted asks the domains query whether domain is a hosted alias domain:
// any entry matching is a hit (SPEC §2), so only its existence is asked.
func (d *Directory) hosted(ctx context.Context, domain string) error {
	key, ok := normalizeKey(domain)
	if !ok {
		return ErrNotFound
	}
	filter, ok, err := expandFilter(d.opts.Queries.Domains.Filter, key)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	if !ok {
		return ErrNotFound
	}
	return d.exists(ctx, filter)
}

// ResolveRecipient expands addr through the aliases, recursively, to its
// final destinations: local mailboxes and foreign addresses to forward to.
//
// As Postfix's virtual alias expansion: an address that is an alias is
// replaced by its maildrops; one that is not is replaced by those of its
// domain's catch-all "@domain", if any, at every level (so a catch-all of a
// mailbox domain also takes the mail of its users who are not aliases of
// themselves, as in Postfix); a maildrop that names itself is kept; loops are
// cut; a maildrop in a mailbox domain must have a mailbox; one in a hosted
// alias domain must be an alias; anything else is forwarded. Destinations
// that cannot be delivered are dropped (and logged) as long as one remains;
// otherwise ErrNotFound (or ErrAliasLoop). An expansion past its limits is
// ErrExpansionLimit (temporary: the whole recipient, never part of it). Any
// directory trouble is ErrUnavailable: never a bounce.
func (d *Directory) ResolveRecipient(ctx context.Context, addr string) (Resolution, error) {
	return d.resolve(ctx, addr, nil)
}

// ResolveClassified is ResolveRecipient for a caller that has just
// classified addr's domain (ClassifyDomain, as smtp's RCPT does to decide
// on relaying): class is taken as that domain's class instead of asking
// the directory again (a search for a hosted alias domain when the cache
// is off or has expired).
func (d *Directory) ResolveClassified(ctx context.Context, addr string, class DomainClass) (Resolution, error) {
	return d.resolve(ctx, addr, &class)
}

// resolve is ResolveRecipient; class, when set, is the class of addr's
// domain.
func (d *Directory) resolve(ctx context.Context, addr string, class *DomainClass) (Resolution, error) {
	key, ok := normalizeKey(addr)
	local, domain := splitAddress(key)
	if !ok || local == "" || domain == "" {
		return Resolution{}, ErrNotFound
	}
	r := &resolver{d: d, seen: map[string]bool{}, listed: 1}
	if class != nil {
		r.classes = map[string]DomainClass{domainKey(domain): *class}
	}
	err := r.expand(ctx, key, 0)
	if errors.Is(err, ErrExpansionLimit) {
		d.opts.Logger.Warn("alias expansion limit exceeded: the recipient is deferred until the alias is mended",
			"recipient", key, "err", err,
			"expansion_limit", d.opts.AliasExpansionLimit, "recursion_limit", d.opts.AliasRecursionLimit)
	}
	if err != nil && !errors.Is(err, ErrNotFound) {
		return Resolution{}, err
	}
	if len(r.dests) == 0 {
		if err == nil {
			err = ErrNotFound
		}
		return Resolution{}, err
	}
	return Resolution{Recipient: key, Destinations: r.dests}, nil
}

type resolver struct {
	d    *Directory
	seen map[string]bool // addresses on the current or a finished path
	// listed is the length of Postfix's working list (cleanup_map1n's
	// argv): the recipient, each alias replaced by its targets as it is
	// expanded. The intermediate aliases no longer count, as in Postfix,
	// where argc > virtual_alias_expansion_limit defers the message.
	listed    int
	dests     []Destination
	destIndex map[string]bool
	// classes are the domains classified during this resolution (domainKey
	// → class): asked once each, however many maildrops share a domain.
	classes map[string]DomainClass
}

// classify is ClassifyDomain, once per domain and resolution.
func (r *resolver) classify(ctx context.Context, domain string) (DomainClass, error) {
	k := domainKey(domain)
	if c, ok := r.classes[k]; ok {
		return c, nil
	}
	c, err := r.d.ClassifyDomain(ctx, domain)
	if err != nil {
		return c, err
	}
	if r.classes == nil {
		r.classes = map[string]DomainClass{}
	}
	r.classes[k] = c
	return c, nil
}

func (r *resolver) add(dst Destination) {
	if r.destIndex == nil {
		r.destIndex = map[string]bool{}
	}
	if r.destIndex[dst.Address] {
		return
	}
	r.destIndex[dst.Address] = true
	r.dests = append(r.dests, dst)
}

// expand resolves addr (normalized). A nil error with no destination added
// means every branch below addr was dropped.
func (r *resolver) expand(ctx context.Context, addr string, depth int) error {
	d := r.d
	if depth > d.opts.AliasRecursionLimit {
		return fmt.Errorf("%w: %s is nested more than %d aliases deep", ErrExpansionLimit, addr, d.opts.AliasRecursionLimit)
	}
	if r.seen[addr] {
		return ErrAliasLoop
	}
	r.seen[addr] = true

	values, err := d.aliasValues(ctx, addr)
	switch {
	case err == nil:
		var targets [][2]string // value, target
		for _, value := range values {
			for _, target := range crunchMaildrop(value) {
				targets = append(targets, [2]string{value, target})
			}
		}
		// addr gives its place in the list to its targets.
		r.listed += max(len(targets)-1, 0)
		if r.listed > d.opts.AliasExpansionLimit {
			return fmt.Errorf("%w: more than %d addresses (at %s)", ErrExpansionLimit, d.opts.AliasExpansionLimit, addr)
		}
		var firstErr error
		for _, vt := range targets {
			value, target := vt[0], vt[1]
			drop, ok := normalizeKey(target)
			if ok {
				drop, ok = externalForm(drop)
			}
			if !ok || !envaddr.Valid(drop) {
				// What the queue would refuse after DATA (553 for
				// every recipient) is dropped here, at RCPT.
				d.opts.Logger.Warn("alias target dropped: the maildrop value is no address; fix it in the directory",
					"alias", addr, "value", value, "target", target)
				if firstErr == nil {
					firstErr = fmt.Errorf("%w: alias %s: maildrop %q is no address", ErrNotFound, addr, value)
				}
				continue
			}
			var err error
			if drop == addr {
				// An address that maps to itself is final (Postfix keeps
				// it), and dropped as any other target when it has
				// nowhere to go: Postfix delivers to the alias's other
				// targets and bounces that copy alone.
				err = r.final(ctx, addr)
			} else {
				err = r.expand(ctx, drop, depth+1)
			}
			if err == nil {
				continue
			}
			if !errors.Is(err, ErrNotFound) {
				return err // ErrExpansionLimit among them: all or nothing
			}
			d.opts.Logger.Info("alias target dropped", "alias", addr, "target", drop, "reason", err)
			if firstErr == nil {
				firstErr = err
			}
		}
		if len(r.dests) == 0 && firstErr != nil {
			return firstErr
		}
		return nil
	case errors.Is(err, ErrNotFound):
		return r.final(ctx, addr)
	default:
		return err
	}
}

// aliasValues looks addr up as Postfix's virtual_alias_maps does:
// user@domain, then, only when that has no entry, the catch-all @domain
// (virtual(5): "@domain address ... lowest precedence"). The key "@domain"
// goes through the same template and escaping as any key: %s is
// "@domain", %d the domain, and %u (empty) matches nothing.
func (d *Directory) aliasValues(ctx context.Context, addr string) ([]string, error) {
	return d.valuesOrCatchAll(ctx, d.opts.Queries.Aliases, addr)
}

// valuesOrCatchAll is values for addr, or, only when addr has no entry,
// for its domain's "@domain" (Postfix's mail_addr_find, which
// virtual_alias_maps and smtpd_sender_login_maps go through alike).
func (d *Directory) valuesOrCatchAll(ctx context.Context, q Query, addr string) ([]string, error) {
	values, err := d.values(ctx, q, addr)
	if !errors.Is(err, ErrNotFound) {
		return values, err
	}
	if local, domain := splitAddress(addr); local != "" && domain != "" {
		return d.values(ctx, q, "@"+domain)
	}
	return nil, err
}

// crunchMaildrop splits one maildrop value into addresses as Postfix's
// mail_addr_crunch splits a virtual_alias_maps result: at commas outside
// double quotes, each part trimmed and stripped of one pair of surrounding
// angle brackets. Empty parts are skipped. What comes out is still
// unchecked: the caller validates each address.
func crunchMaildrop(v string) []string {
	var out []string
	add := func(part string) {
		part = strings.TrimSpace(part)
		if len(part) >= 2 && part[0] == '<' && part[len(part)-1] == '>' {
			part = strings.TrimSpace(part[1 : len(part)-1])
		}
		if part != "" {
			out = append(out, part)
		}
	}
	quoted, escaped, start := false, false, 0
	for i := 0; i < len(v); i++ {
		switch c := v[i]; {
		case escaped:
			escaped = false
		case quoted && c == '\\':
			escaped = true
		case c == '"':
			quoted = !quoted
		case c == ',' && !quoted:
			add(v[start:i])
			start = i + 1
		}
	}
	add(v[start:])
	return out
}

// externalForm turns an alias target written in Postfix's internal form,
// its local part unquoted (maildrop: john doe@example.org), into the
// external form the queue stores and relays ("john doe"@example.org), as
// Postfix quotes a table result itself (quote_822_local). A target already
// quoted, or whose local part is a dot-atom (RFC 5321 §4.1.2), is kept as
// it is; internalForm undoes the quoting for the lookups of the next level.
//
// ok is false for what cannot be read as one unquoted local part without
// guessing: '"' and '\' (half of a quoted form, or quoted-pairs Postfix's
// tokenizer would read), '(' and ')' (a comment to Postfix), and '@' (a
// second '@' hidden in a quoted local part is a relay trick smtp refuses in
// a recipient; here it is likelier a typo), and C1 controls. The quoted
// result still has to pass envaddr.Valid: no controls, no '<' or '>', a
// 256-octet path (no local-part limit, as in smtp).
func externalForm(target string) (string, bool) {
	local, domain := splitAddress(target)
	for _, r := range local {
		// C1 controls and the line separators, as smtp refuses them in a
		// local part (normalizeKey already refused C0 and DEL).
		if r >= 0x80 && r < 0xa0 || r == 0x2028 || r == 0x2029 {
			return "", false
		}
	}
	if local == "" || domain == "" || local[0] == '"' || envaddr.DotAtom(local, true) {
		return target, true // Valid decides
	}
	if strings.ContainsAny(local, "\"\\()@") {
		return "", false
	}
	return `"` + local + `"@` + domain, true
}

// final handles an address that is not (or no longer) an alias.
func (r *resolver) final(ctx context.Context, addr string) error {
	_, domain := splitAddress(addr)
	if domain == "" {
		return ErrNotFound
	}
	class, err := r.classify(ctx, domain)
	if err != nil {
		return err
	}
	switch class {
	case DomainMailbox:
		mb, err := r.d.Mailbox(ctx, addr)
		if err != nil {
			return err
		}
		r.add(Destination{Address: addr, Mailbox: mb})
		return nil
	case DomainHosted:
		return ErrNotFound // a hosted alias domain has no mailboxes
	}
	r.add(Destination{Address: addr, Remote: true})
	return nil
}
