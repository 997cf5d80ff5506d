package directory

import (
	"errors"
	"fmt"
	"strings"

	"github.com/go-ldap/ldap/v3"
)

// splitAddress splits at the last '@' (RFC 5321 local parts may be quoted
// and contain '@'; the domain never does).
func splitAddress(s string) (local, domain string) {
	i := strings.LastIndexByte(s, '@')
	if i < 0 {
		return s, ""
	}
	return s[:i], s[i+1:]
}

// expand substitutes %s, %u, %d and %% in tmpl, passing every substituted
// value through esc. ok is false when tmpl needs a part the key lacks.
func expand(tmpl, key string, esc func(string) string) (out string, ok bool, err error) {
	local, domain := splitAddress(key)
	return expandParts(tmpl, key, local, domain, esc)
}

// expandLogin is expand for a login's templates (the user query's filter,
// AuthBindDN): %u is the whole login, as Dovecot's %u in the user_filter
// and auth_bind_userdn they replace, so that a uid that is an address
// (alice@example.org, as multi-domain directories name their users) is
// looked up and bound to as it is, not as its part before '@', which is
// another user's uid or nobody's. %s is the login too, %d its part after
// the last '@'. A uid without '@' expands as expand expands it.
func expandLogin(tmpl, login string, esc func(string) string) (out string, ok bool, err error) {
	_, domain := splitAddress(login)
	return expandParts(tmpl, login, login, domain, esc)
}

// expandParts is expand with the key's parts given.
func expandParts(tmpl, key, local, domain string, esc func(string) string) (out string, ok bool, err error) {
	// One allocation for the usual filter or result (every lookup makes
	// one), not one per growth of the builder.
	var b strings.Builder
	b.Grow(len(tmpl) + 2*len(key))
	for i := 0; i < len(tmpl); i++ {
		c := tmpl[i]
		if c != '%' {
			b.WriteByte(c)
			continue
		}
		i++
		if i == len(tmpl) {
			return "", false, errors.New("template ends with a lone %")
		}
		switch tmpl[i] {
		case '%':
			b.WriteByte('%')
		case 's':
			b.WriteString(esc(key))
		case 'u':
			if local == "" {
				return "", false, nil
			}
			b.WriteString(esc(local))
		case 'd':
			if domain == "" {
				return "", false, nil
			}
			b.WriteString(esc(domain))
		default:
			return "", false, fmt.Errorf("unknown escape %%%c in template %q (want %%s, %%u, %%d or %%%%)", tmpl[i], tmpl)
		}
	}
	return b.String(), true, nil
}

// expandFilter builds a search filter from a template; every value is
// escaped per RFC 4515, so no key can change the shape of the filter. An
// address is looked up in its internal form (internalForm), as Postfix's
// tables are.
func expandFilter(tmpl, key string) (string, bool, error) {
	return expand(tmpl, internalForm(key), ldap.EscapeFilter)
}

// internalForm is an address as Postfix looks it up in its tables: a
// quoted local part (RFC 5321 Quoted-string, as smtp keeps one that needs
// quoting: "john doe"@example.org) unquoted, its quoted-pairs undone
// (john doe@example.org); any other key as it is. The filter's escaping
// then applies to what the quotes held ('*', '(', ')', '\' included).
func internalForm(key string) string {
	local, domain := splitAddress(key)
	if len(local) < 2 || local[0] != '"' || local[len(local)-1] != '"' || !strings.Contains(key, "@") {
		return key
	}
	var b strings.Builder
	b.Grow(len(key))
	in := local[1 : len(local)-1]
	for i := 0; i < len(in); i++ {
		c := in[i]
		if c == '\\' && i+1 < len(in) {
			i++
			c = in[i]
		}
		b.WriteByte(c)
	}
	b.WriteByte('@')
	b.WriteString(domain)
	return b.String()
}

// expandLoginFilter builds the user query's filter for a login
// (expandLogin); every value is escaped per RFC 4515.
func expandLoginFilter(tmpl, login string) (string, bool, error) {
	return expandLogin(tmpl, login, ldap.EscapeFilter)
}

// expandDN builds a login's DN from a template (AuthBindDN, expandLogin);
// values are escaped per RFC 4514.
func expandDN(tmpl, key string) (string, error) {
	out, ok, err := expandLogin(tmpl, key, ldap.EscapeDN)
	if err != nil {
		return "", err
	}
	if !ok {
		return "", fmt.Errorf("key %q lacks a part the DN template %q needs", key, tmpl)
	}
	return out, nil
}

// formatResult applies a result_format to one attribute value. ok is false
// when the format needs a part the value lacks, or the value is empty:
// Postfix skips both (db_common_expand: "empty lookup result ... ignored"),
// so that an empty homeDirectory is no home, never "%s/mailbox/" made
// "/mailbox/".
func formatResult(format, value string) (string, bool) {
	if value == "" {
		return "", false
	}
	out, ok, err := expand(format, value, func(s string) string { return s })
	if err != nil {
		return "", false
	}
	return out, ok
}

func (q Query) validate() error {
	if q.Filter == "" {
		return errors.New("empty filter")
	}
	if q.ResultAttribute == "" || strings.ContainsAny(q.ResultAttribute, " ,()=*") {
		return fmt.Errorf("result attribute %q is not an attribute name", q.ResultAttribute)
	}
	f, ok, err := expandFilter(q.Filter, "probe@example.org")
	if err != nil {
		return err
	}
	if ok {
		if _, err := ldap.CompileFilter(f); err != nil {
			return fmt.Errorf("filter %q: %w", q.Filter, err)
		}
	}
	if _, _, err := expand(q.ResultFormat, "probe@example.org", func(s string) string { return s }); err != nil {
		return fmt.Errorf("result format: %w", err)
	}
	return nil
}
