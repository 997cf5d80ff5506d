package smtp

import (
	"strings"

	"courriel/delivery/queue"
	"courriel/smtp/wire"
)

// RFC 3461 (DSN): MAIL's RET and ENVID, RCPT's NOTIFY and ORCPT. They are
// taken apart here, strictly, as Postfix's smtpd does (501 5.5.4 for bad
// syntax or a parameter given twice), and travel with the transaction
// (txnDSN) into the queue (queue.WithDSN), which sends the DSNs they ask
// for and passes them on to a next hop that offers DSN. Every decoded
// value is printable US-ASCII (queue.ValidEnvID, queue.ValidORcpt), so
// none can add a line to a DSN or a log.

// offersDSN: DSN is offered where its notifications can be sent, that is
// with a queue, and never on the Cluster listener (a front node reports
// its node copies itself).
func (s *Server) offersDSN() bool {
	return s.o.Queue != nil && s.o.Kind != Cluster
}

// parseRet reads RET= (RFC 3461 §4.3): FULL or HDRS, in any case.
func parseRet(v string) (string, bool) {
	switch strings.ToUpper(v) {
	case queue.RetFull:
		return queue.RetFull, true
	case queue.RetHdrs:
		return queue.RetHdrs, true
	}
	return "", false
}

// parseEnvID reads ENVID= (RFC 3461 §4.4): xtext of at most 100 printable
// US-ASCII characters once decoded.
func parseEnvID(v string) (string, bool) {
	d, ok := decodeXtext(v)
	return d, ok && queue.ValidEnvID(d)
}

// parseNotify reads NOTIFY= (RFC 3461 §4.1): NEVER alone, or any of
// SUCCESS, FAILURE, DELAY once each; the text says what is wrong.
func parseNotify(v string) (string, string) {
	if n := queue.CanonicalNotify(v); n != "" {
		return n, ""
	}
	words := strings.Split(strings.ToUpper(v), ",")
	if len(words) > 1 && strings.Contains(","+strings.ToUpper(v)+",", ",NEVER,") {
		return "", "NOTIFY=NEVER cannot be combined with other NOTIFY values"
	}
	return "", "Bad NOTIFY parameter syntax"
}

// parseORcpt reads ORCPT= (RFC 3461 §4.2): addr-type ";" xtext, the
// address printable US-ASCII once decoded. It returns addr-type;address,
// decoded. An address of RFC 6533's utf-8 type is not xtext but its
// utf-8-addr-xtext form (\x{HEX} escapes), or with SMTPUTF8 on MAIL
// (smtputf8) utf-8-addr-unitext (raw UTF-8 too), and is kept in its
// canonical utf-8-addr-xtext form (queue.UTF8ORcpt). A well-formed value
// past RFC 3461's 500 characters, as sent or as kept (raw UTF-8 written
// as escapes grows), is dropped ("", true), as Postfix takes it: it only
// feeds a DSN's Original-Recipient, and must not cost the recipient.
func parseORcpt(v string, smtputf8 bool) (string, bool) {
	typ, addr, ok := strings.Cut(v, ";")
	if !ok {
		return "", false
	}
	var d string
	if strings.EqualFold(typ, "utf-8") {
		d, ok = queue.UTF8ORcpt(addr, smtputf8)
	} else {
		d, ok = decodeXtext(addr)
	}
	o := typ + ";" + d
	switch {
	case !ok:
		return "", false
	case len(v) > queue.MaxORcptLen || len(o) > queue.MaxORcptLen:
		return "", true
	}
	return o, queue.ValidORcpt(o)
}

// decodeXtext is wire.DecodeXtext with a flag.
func decodeXtext(s string) (string, bool) {
	d, err := wire.DecodeXtext(s)
	return d, err == nil
}

// txnDSN is the transaction's DSN parameters; nil when the client gave
// none, so that the common transaction costs nothing.
type txnDSN struct {
	ret, envid string
	// rcpts: the NOTIFY and ORCPT of each copy, by its dedupeKey (the
	// copies an alias expanded to included); the first RCPT to reach a
	// copy with parameters decides (after a milter's DELRCPT, the first
	// remaining one: milterDelRcpt).
	rcpts    map[string]queue.RcptDSN
	expanded []queue.Expansion // RCPTs with NOTIFY=SUCCESS an alias expanded
}

// dsnFor makes the transaction's txnDSN when it has none.
func (t *txn) dsnFor() *txnDSN {
	if t.dsn == nil {
		t.dsn = &txnDSN{}
	}
	return t.dsn
}

// setDSN gives the copy key the RCPT's parameters d, unless it has some.
func (t *txn) setDSN(key string, d queue.RcptDSN) {
	x := t.dsnFor()
	if x.rcpts == nil {
		x.rcpts = map[string]queue.RcptDSN{}
	}
	if _, ok := x.rcpts[key]; !ok {
		x.rcpts[key] = d
	}
}

// wantsSuccess says whether a copy asks for a success DSN, or an
// expansion is to be reported: the message then goes through the queue,
// whose entry, written before the 250, owes the DSN (never a copy stored
// alone with a notification that could be lost).
func (t *txn) wantsSuccess() bool {
	if t.dsn == nil {
		return false
	}
	if len(t.dsn.expanded) > 0 {
		return true
	}
	for _, d := range t.dsn.rcpts {
		if strings.Contains(d.Notify, queue.NotifySuccess) {
			return true
		}
	}
	return false
}

// dsnOption is the queue's Option carrying the transaction's DSN
// parameters, nil when there are none.
func (t *txn) dsnOption() queue.Option {
	if t.dsn == nil {
		return nil
	}
	return queue.WithDSN(t.dsn.ret, t.dsn.envid, t.dsn.rcpts, t.dsn.expanded)
}

// rcptDSN records the DSN parameters of an RCPT whose address addr the
// directory resolved to dests (copy addresses): an alias expanded with
// NOTIFY=SUCCESS is reported "expanded" and its copies ask no more for
// success, as Postfix's cleanup does with a virtual alias. It returns the
// parameters its copies get (d, or d without SUCCESS), zero for none.
func (t *txn) rcptDSN(addr string, d queue.RcptDSN, dests []string) queue.RcptDSN {
	if d == (queue.RcptDSN{}) {
		return d
	}
	cd := d
	expanded := len(dests) > 1 || len(dests) == 1 && dedupeKey(dests[0]) != dedupeKey(addr)
	if expanded && strings.Contains(d.Notify, queue.NotifySuccess) {
		x := t.dsnFor()
		if !containsFold(x.expanded, addr) {
			x.expanded = append(x.expanded, queue.Expansion{Addr: addr, DSN: d})
		}
		cd.Notify = queue.WithoutSuccess(d.Notify)
	}
	for _, a := range dests {
		t.setDSN(dedupeKey(a), cd)
	}
	// The RCPT itself, for a loop that bounces it (queue.WithFailed).
	t.setDSN(dedupeKey(addr), d)
	return cd
}

func containsFold(es []queue.Expansion, addr string) bool {
	for _, e := range es {
		if dedupeKey(e.Addr) == dedupeKey(addr) {
			return true
		}
	}
	return false
}
