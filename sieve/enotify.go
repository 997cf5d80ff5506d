package sieve

import (
	"errors"
	"fmt"
	"net/mail"
	"net/url"
	"strings"
)

// enotify (RFC 5435) with the mailto method (RFC 5436): the notify action,
// the valid_notify_method and notify_method_capability tests, and set's
// :encodeurl modifier. The run adds a Notify action with the mailto URI
// parsed; sending it (never for an auto-submitted message, from the null
// sender, Auto-Submitted: auto-notified) is the deliverer's, as for
// vacation; Limits.MaxNotifications bounds them. The URI is read as Pigeonhole reads it: one address before the
// "?", more in to= and cc= fields, at most maxNotifyRecipients of them,
// the header fields Pigeonhole reserves ignored, and a later notify's
// recipients that an earlier one already has dropped (RFC 5435 §3.10).

var enotifyCommands = map[string]spec{
	"notify": {ext: "enotify", pos: []valueKind{vString}, tags: map[string]tagSpec{
		"from": {param: vString}, "importance": {param: vString},
		"options": {param: vStrings}, "message": {param: vString}}},
}

var enotifyTests = map[string]spec{
	"valid_notify_method":      {ext: "enotify", pos: []valueKind{vStrings}},
	"notify_method_capability": {ext: "enotify", pos: []valueKind{vString, vString, vStrings}, tags: tags(matchTags)},
}

const (
	// maxNotifyRecipients and maxNotifyHeaders bound what one mailto URI
	// may ask for, as Pigeonhole (NTFY_MAILTO_MAX_*): the recipients past
	// the bound are dropped, the header fields too. The number of
	// notifications of a run is Limits.MaxNotifications at most.
	maxNotifyRecipients = 8
	maxNotifyHeaders    = 16
)

// notifyReservedHeaders are the URI's header fields a notification never
// takes from it (Pigeonhole's list, "date" for its "data" typo): the
// deliverer writes them, or they would forge a trace or a thread.
var notifyReservedHeaders = map[string]bool{
	"auto-submitted": true, "received": true, "message-id": true, "date": true, "data": true, "bcc": true,
	"in-reply-to": true, "references": true, "resent-date": true, "resent-from": true, "resent-sender": true,
	"resent-to": true, "resent-cc": true, "resent-bcc": true, "resent-msg-id": true, "from": true, "sender": true,
	// ours: the notification's own MIME structure and routing
	"mime-version": true, "content-type": true, "content-transfer-encoding": true, "return-path": true,
	"delivered-to": true, "x-sieve-redirected-from": true,
}

// Notification is what a notify action asks for.
type Notification struct {
	Method     string   // the URI, variables expanded
	From       string   // :from; "" for the default (the recipient)
	Importance int      // :importance: 1 high, 2 normal (the default), 3 low
	Options    []string // :options ("name=value"; mailto takes none)
	Message    string   // :message, the notification's subject when HasMessage
	HasMessage bool
	// From the mailto URI (RFC 5436 §2): the recipients as written
	// (decoded; an address, perhaps with a display name), its subject
	// and body, and its other header fields, the reserved ones dropped.
	To, Cc     []string
	Subject    string // HasSubject: the URI's subject
	HasSubject bool
	Body       string // HasBody: the URI's body
	HasBody    bool
	Headers    []NotifyHeader
}

// NotifyHeader is a header field a mailto URI adds to the notification.
type NotifyHeader struct{ Name, Value string }

// Recipients are the addr-specs of To and Cc, in order.
func (n *Notification) Recipients() []string {
	var out []string
	for _, r := range append(append([]string(nil), n.To...), n.Cc...) {
		if a, err := mail.ParseAddress(r); err == nil {
			out = append(out, a.Address)
		}
	}
	return out
}

var errNotifyMethod = errors.New("invalid notify method")

// parseMailto reads a notification URI; only mailto is known.
func parseMailto(uri string) (*Notification, error) {
	scheme, rest, ok := strings.Cut(uri, ":")
	if !ok || !strings.EqualFold(scheme, "mailto") {
		return nil, fmt.Errorf("%w '%s'", errNotifyMethod, scheme)
	}
	for i := 0; i < len(rest); i++ {
		if c := rest[i]; c <= ' ' || c >= 0x7f || strings.IndexByte(`"<>\^`+"`{|}", c) >= 0 {
			return nil, fmt.Errorf("mailto URI: invalid character %q", c)
		}
	}
	n := &Notification{Method: uri}
	to, query, _ := strings.Cut(rest, "?")
	if strings.Contains(to, ",") {
		// Pigeonhole's reading (RFC 2368's): one address before the "?"
		return nil, errors.New("mailto URI: invalid character ',' in 'to' part")
	}
	seen := map[string]bool{}
	add := func(list *[]string, value string) error {
		for _, r := range strings.Split(value, ",") {
			r = strings.TrimSpace(r)
			if r == "" {
				continue
			}
			a, err := mail.ParseAddress(r)
			if err != nil || !isASCII(a.Address) {
				return fmt.Errorf("mailto URI: invalid recipient '%s'", r)
			}
			key := addressKey(a.Address)
			if seen[key] || len(n.To)+len(n.Cc) >= maxNotifyRecipients {
				continue
			}
			seen[key] = true
			*list = append(*list, r)
		}
		return nil
	}
	if to != "" {
		d, err := url.PathUnescape(to)
		if err != nil {
			return nil, fmt.Errorf("mailto URI: %w", err)
		}
		if err := add(&n.To, d); err != nil {
			return nil, err
		}
	}
	unique := map[string]bool{}
	for _, field := range strings.Split(query, "&") {
		if field == "" {
			continue
		}
		rawName, rawValue, _ := strings.Cut(field, "=")
		name, err1 := url.PathUnescape(rawName)
		value, err2 := url.PathUnescape(rawValue)
		if err1 != nil || err2 != nil {
			return nil, errors.New("mailto URI: invalid %-encoding")
		}
		if !validFieldName(name) {
			return nil, fmt.Errorf("mailto URI: invalid header field name '%s'", name)
		}
		lname := strings.ToLower(name)
		if strings.IndexByte(value, 0) >= 0 || lname != "body" && (strings.ContainsAny(value, "\r\n") || !isASCII(value)) {
			// Pigeonhole's rule: a header field (subject included) is one
			// line of ASCII; only the body may be UTF-8, and have lines
			// (RFC 6068 §2: %0D%0A between them)
			return nil, errors.New("mailto URI: invalid header field body")
		}
		switch {
		case lname == "to":
			err1 = add(&n.To, value)
		case lname == "cc":
			err1 = add(&n.Cc, value)
		case lname == "subject":
			if !n.HasSubject {
				n.Subject, n.HasSubject = value, true
			}
		case lname == "body":
			if !n.HasBody {
				n.Body, n.HasBody = value, true
			}
		case notifyReservedHeaders[lname]:
		case lname == "reply-to" && unique[lname]:
		case len(n.Headers) >= maxNotifyHeaders:
		default:
			unique[lname] = true
			n.Headers = append(n.Headers, NotifyHeader{Name: name, Value: value})
		}
		if err1 != nil {
			return nil, err1
		}
	}
	return n, nil
}

// addressKey compares addresses as Pigeonhole: the local part exactly,
// the domain in any case.
func addressKey(addr string) string {
	if at := strings.LastIndexByte(addr, '@'); at >= 0 {
		return addr[:at] + "@" + strings.ToLower(addr[at+1:])
	}
	return addr
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// validNotifyFrom is :from's check: an address, a display name allowed.
func validNotifyFrom(s string) bool {
	_, err := mail.ParseAddress(s)
	return err == nil
}

func (s *Script) checkNotify(c *Command, n *node) *Error {
	if a, ok := n.tags["importance"]; ok {
		// checked as written, variables or not, as Pigeonhole does
		if v := a.Strings[0]; v != "1" && v != "2" && v != "3" {
			return errAt(a.Pos, "invalid :importance value for notify command: %s", v)
		}
	}
	if a, ok := n.tags["from"]; ok && !s.hasVariables(a.Strings[0]) && !validNotifyFrom(a.Strings[0]) {
		return errAt(a.Pos, "notify: :from address \"%s\" is invalid", a.Strings[0])
	}
	if a, ok := n.tags["options"]; ok {
		for _, o := range a.Strings {
			if name, _, ok := strings.Cut(o, "="); !ok || !validIdentifierDashed(name) {
				return errAt(a.Pos, "notify: invalid option name in option '%s'", o)
			}
		}
	}
	if m := n.pos[0].Strings[0]; !s.hasVariables(m) {
		if _, err := parseMailto(m); err != nil {
			return errAt(n.pos[0].Pos, "notify: %v", err)
		}
	}
	return nil
}

// validIdentifierDashed is an option name: letters, digits, "-", "_", ".".
func validIdentifierDashed(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !isIdentChar(c) && c != '-' && c != '.' {
			return false
		}
	}
	return true
}

func (r *runner) notify(c *Command, n *node) error {
	ntf, err := parseMailto(r.expand(n.pos[0].Strings[0]))
	if err != nil {
		return r.errorf(c.Pos, "notify: %v", err)
	}
	ntf.Importance = 2
	if a, ok := n.tags["importance"]; ok {
		ntf.Importance = int(a.Strings[0][0] - '0')
	}
	if a, ok := n.tags["from"]; ok {
		ntf.From = r.expand(a.Strings[0])
		if !validNotifyFrom(ntf.From) {
			return r.errorf(c.Pos, "notify: :from address %q is invalid", ntf.From)
		}
	}
	if a, ok := n.tags["message"]; ok {
		ntf.Message, ntf.HasMessage = r.expand(a.Strings[0]), true
	}
	if a, ok := n.tags["options"]; ok {
		ntf.Options = r.strs(a)
	}
	// RFC 5435 §3.10: a recipient an earlier notification has is not
	// notified again; a notification left with none is a duplicate.
	earlier := false
	for _, b := range r.actions {
		if b.Kind != Notify {
			continue
		}
		earlier = true
		had := map[string]bool{}
		for _, a := range b.Notify.Recipients() {
			had[addressKey(a)] = true
		}
		keep := func(list []string) []string {
			var out []string
			for _, x := range list {
				if a, err := mail.ParseAddress(x); err == nil && had[addressKey(a.Address)] {
					continue
				}
				out = append(out, x)
			}
			return out
		}
		ntf.To, ntf.Cc = keep(ntf.To), keep(ntf.Cc)
	}
	if earlier && len(ntf.To)+len(ntf.Cc) == 0 {
		return nil
	}
	if n := r.countActions(Notify); n >= r.s.limits.MaxNotifications {
		// as too many redirects: the run fails and keeps
		return r.errorf(c.Pos, "more than %d notifications", r.s.limits.MaxNotifications)
	}
	if err := r.add(Action{Kind: Notify, Notify: ntf}); err != nil {
		return r.errorf(c.Pos, "%v", err)
	}
	return nil
}

func (r *runner) countActions(kind ActionKind) int {
	n := 0
	for _, a := range r.actions {
		if a.Kind == kind {
			n++
		}
	}
	return n
}

func (r *runner) notifyTest(t *Test, n *node) (bool, error) {
	switch t.Name {
	case "valid_notify_method":
		for _, u := range r.strs(n.pos[0]) {
			if _, err := parseMailto(u); err != nil {
				return false, nil
			}
		}
		return true, nil
	default: // notify_method_capability
		if _, err := parseMailto(r.expand(n.pos[0].Strings[0])); err != nil {
			return false, nil
		}
		// mailto can say only that the recipient may be online (RFC 5436 §2.6)
		if !strings.EqualFold(r.expand(n.pos[1].Strings[0]), "online") {
			return false, nil
		}
		return r.matchValues(n, []string{"maybe"}, r.strs(n.pos[2])), nil
	}
}

// encodeURL is :encodeurl (RFC 5435 §4.1): every octet but the unreserved
// characters of RFC 3986 percent-encoded.
func encodeURL(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~' {
			b.WriteByte(c)
			continue
		}
		fmt.Fprintf(&b, "%%%02X", c)
	}
	return b.String()
}
