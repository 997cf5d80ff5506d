package queue

import (
	"strings"

	"courriel/internal/xtext"
)

// RFC 3461's parameters travel with a message: RET and ENVID in its
// envelope (Message.Ret, Message.EnvID), NOTIFY and ORCPT with each
// recipient (Recipient.Notify, Recipient.ORcpt). They decide which DSNs
// the sender gets (notify), what a failure DSN returns (RET), and go on to
// a next hop that offers DSN (transaction).

// The values of RET (RFC 3461 §4.3).
const (
	RetFull = "FULL"
	RetHdrs = "HDRS"
)

// The words of NOTIFY (RFC 3461 §4.1).
const (
	NotifyNever   = "NEVER"
	NotifySuccess = "SUCCESS"
	NotifyFailure = "FAILURE"
	NotifyDelay   = "DELAY"
)

// Bounds of RFC 3461: ENVID 100 octets (§4.4), ORCPT 500 (§4.2).
const (
	MaxEnvIDLen = 100
	MaxORcptLen = 500
)

// RcptDSN is what the client asked with RCPT for one copy: NOTIFY ("" when
// absent, else NEVER or a comma list of SUCCESS, FAILURE, DELAY in that
// order: CanonicalNotify) and ORCPT ("" or addr-type;address, decoded
// from xtext: ValidORcpt).
type RcptDSN struct {
	Notify string
	ORcpt  string
}

// Expansion is a recipient with NOTIFY=SUCCESS an alias of ours expanded to
// other addresses: the sender gets "Action: expanded" for it (as Postfix's
// cleanup reports a virtual alias expansion), and its copies no longer ask
// for success.
type Expansion struct {
	Addr string // the RCPT address
	DSN  RcptDSN
}

// WithDSN adds RFC 3461's parameters to a message: its RET and ENVID (""
// for absent), each copy's NOTIFY and ORCPT by the copy's address
// (lower-cased; the copies a client's recipient expanded to included),
// and the expansions to report. Values that do not pass the envelope's
// checks are dropped. Given after WithFailed, it reaches the failed
// recipients too.
func WithDSN(ret, envid string, rcpts map[string]RcptDSN, expanded []Expansion) Option {
	return func(m *Message) {
		if ret == RetFull || ret == RetHdrs {
			m.Ret = ret
		}
		if ValidEnvID(envid) {
			m.EnvID = envid
		}
		for i := range m.Recipients {
			r := &m.Recipients[i]
			d, ok := rcpts[strings.ToLower(r.Addr)]
			if !ok {
				continue
			}
			r.Notify, r.ORcpt = validDSN(d)
		}
		for _, e := range expanded {
			if !validAddress(e.Addr) || len(m.Expanded) >= len(m.Recipients) {
				continue
			}
			n, o := validDSN(e.DSN)
			m.Expanded = append(m.Expanded, Recipient{Addr: e.Addr, State: StateDelivered, Notify: n, ORcpt: o,
				Action: ActionExpanded, Status: "2.0.0", Reply: "alias expanded"})
		}
	}
}

func validDSN(d RcptDSN) (notify, orcpt string) {
	if CanonicalNotify(d.Notify) == d.Notify {
		notify = d.Notify
	}
	if ValidORcpt(d.ORcpt) {
		orcpt = d.ORcpt
	}
	return notify, orcpt
}

// The actions of a success DSN (RFC 3464 §2.3.3).
const (
	ActionDelivered = "delivered" // stored in a maildir here, or by our home node
	ActionRelayed   = "relayed"   // taken by a next hop that does not offer DSN
	ActionExpanded  = "expanded"  // an alias of ours, expanded
)

// CanonicalNotify returns a NOTIFY value (RFC 3461 §4.1: NEVER alone, or
// any of SUCCESS, FAILURE, DELAY once each, in any case) in its canonical
// form, or "" when it is not one.
func CanonicalNotify(v string) string {
	if v == "" {
		return ""
	}
	var success, failure, delay, never bool
	for _, w := range strings.Split(v, ",") {
		var seen *bool
		switch strings.ToUpper(w) {
		case NotifyNever:
			seen = &never
		case NotifySuccess:
			seen = &success
		case NotifyFailure:
			seen = &failure
		case NotifyDelay:
			seen = &delay
		default:
			return ""
		}
		if *seen {
			return ""
		}
		*seen = true
	}
	if never {
		if success || failure || delay {
			return ""
		}
		return NotifyNever
	}
	var out []string
	for _, w := range []struct {
		on   bool
		name string
	}{{success, NotifySuccess}, {failure, NotifyFailure}, {delay, NotifyDelay}} {
		if w.on {
			out = append(out, w.name)
		}
	}
	return strings.Join(out, ",")
}

// notifies says whether a recipient's NOTIFY asks for the DSN named by
// what: without NOTIFY, failures and delays are reported and successes
// not (RFC 3461 §4.1, as Postfix).
func notifies(notify, what string) bool {
	if notify == "" {
		return what != NotifySuccess
	}
	for _, w := range strings.Split(notify, ",") {
		if w == what {
			return true
		}
	}
	return false
}

// WithoutSuccess is notify once a success was reported for it (an
// expansion): SUCCESS dropped, NEVER when nothing is left, as Postfix's
// cleanup does for the addresses an alias expands to.
func WithoutSuccess(notify string) string {
	if !notifies(notify, NotifySuccess) {
		return notify
	}
	var out []string
	for _, w := range strings.Split(notify, ",") {
		if w != NotifySuccess {
			out = append(out, w)
		}
	}
	if len(out) == 0 {
		return NotifyNever
	}
	return strings.Join(out, ",")
}

// ValidEnvID checks an ENVID, decoded: printable US-ASCII (RFC 3461 §4.4),
// 1 to 100 octets, so that it can go into a DSN field and a log line as
// it is.
func ValidEnvID(v string) bool {
	return v != "" && len(v) <= MaxEnvIDLen && printableASCII(v)
}

// ValidORcpt checks an ORCPT, decoded: addr-type ";" address, the type an
// atom (RFC 3461 §4.2), the address printable US-ASCII, at most 500
// octets in all.
func ValidORcpt(v string) bool {
	typ, addr, ok := strings.Cut(v, ";")
	if !ok || typ == "" || addr == "" || len(v) > MaxORcptLen || !printableASCII(addr) {
		return false
	}
	for i := 0; i < len(typ); i++ {
		c := typ[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// printableASCII says whether v has only octets 0x20 to 0x7e.
func printableASCII(v string) bool {
	for i := 0; i < len(v); i++ {
		if v[i] < 0x20 || v[i] > 0x7e {
			return false
		}
	}
	return true
}

// orcptParam is the ORCPT= parameter for a next hop: the client's ORCPT,
// or, as Postfix sends one when there was none, rfc822; the address the
// client named, when it is ASCII ("" otherwise).
func orcptParam(r *Recipient) string {
	v := r.ORcpt
	if v == "" {
		orig := originalRecipient(r)
		if !isASCII(orig) {
			return "" // an rfc822 address is ASCII (RFC 6533's utf-8 type is not written here)
		}
		v = "rfc822;" + orig
	}
	typ, addr, _ := strings.Cut(v, ";")
	return " ORCPT=" + typ + ";" + xtext.Encode(addr)
}

// originalRecipient is the address the client named for r: the alias that
// expanded to it, or r itself.
func originalRecipient(r *Recipient) string {
	orig := r.OrigTo
	if r.Local != nil {
		orig = r.Local.OrigTo
	}
	if orig == "" {
		return r.Addr
	}
	return orig
}

// dsnRcptParams are a recipient's DSN parameters for a next hop that offers
// DSN.
func dsnRcptParams(r *Recipient) string {
	p := ""
	if r.Notify != "" {
		p = " NOTIFY=" + r.Notify
	}
	return p + orcptParam(r)
}

// dsnMailParams are a message's DSN parameters for a next hop that offers
// DSN.
func dsnMailParams(m *Message) string {
	p := ""
	if m.Ret != "" {
		p = " RET=" + m.Ret
	}
	if m.EnvID != "" {
		p += " ENVID=" + xtext.Encode(m.EnvID)
	}
	return p
}
