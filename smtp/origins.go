package smtp

import "courriel/delivery/queue"

// rcptOrigins is what each RCPT brought to the transaction: a copy two
// RCPTs reach is in local or remote once (tx.seen), and when one of them
// goes (a milter's DELRCPT, a loop) the copy must stay for the other.
type rcptOrigins struct {
	list  []rcptOrigin   // in RCPT order, one per address
	index map[string]int // an RCPT's dedupeKey → its place in list
}

// rcptOrigin is one RCPT's part: the copies it reached, the orig_to it
// gives them and their DSN parameters.
type rcptOrigin struct {
	key string // dedupeKey of the RCPT address as the milters saw it; "" once removed
	// orig is the copies' orig_to (the RCPT address), "" when its one copy
	// is addressed as itself (a relayed address, an SRS address's sender).
	orig string
	// dsn: its copies' NOTIFY and ORCPT (rcptDSN's), when hasDSN (the
	// RCPT gave parameters; an alias's NOTIFY=SUCCESS leaves them empty).
	dsn    queue.RcptDSN
	hasDSN bool
	copies []string // dedupeKeys of the copies it reached, those already there included
}

// noteOrigin records that the RCPT rcpt reached the copies dests, giving
// them orig and, when given (hasDSN), the DSN parameters dsn. The same
// RCPT again reaches the same copies: its parameters count only where the
// first gave none, as setDSN takes them.
func (s *session) noteOrigin(rcpt, orig string, hasDSN bool, dsn queue.RcptDSN, dests []string) {
	o := s.tx.origins
	if o == nil {
		o = &rcptOrigins{index: map[string]int{}}
		s.tx.origins = o
	}
	k := dedupeKey(rcpt)
	if i, ok := o.index[k]; ok {
		if r := &o.list[i]; !r.hasDSN {
			r.dsn, r.hasDSN = dsn, hasDSN
		}
		return
	}
	keys := make([]string, len(dests))
	for i, d := range dests {
		keys[i] = dedupeKey(d)
	}
	o.index[k] = len(o.list)
	o.list = append(o.list, rcptOrigin{key: k, orig: orig, dsn: dsn, hasDSN: hasDSN, copies: keys})
}

// copyHeir is what a copy gets from the remaining RCPTs that reach it,
// taken from the first ones in RCPT order, as when it was added.
type copyHeir struct {
	orig   string        // a local copy's OrigTo: the first orig
	alias  string        // a remote copy's orig_to: the first orig that is not the copy itself
	dsn    queue.RcptDSN // the first parameters given, when hasDSN
	hasDSN bool
}

// heirs says, for each of the copies, what the RCPTs still in the list
// give it; a copy none reaches any more has no entry.
func (o *rcptOrigins) heirs(copies map[string]bool) map[string]*copyHeir {
	h := make(map[string]*copyHeir, len(copies))
	for _, r := range o.list {
		if r.key == "" {
			continue
		}
		for _, c := range r.copies {
			if !copies[c] {
				continue
			}
			x := h[c]
			if x == nil {
				x = &copyHeir{}
				h[c] = x
			}
			if x.orig == "" {
				x.orig = r.orig
			}
			if x.alias == "" && r.orig != "" && dedupeKey(r.orig) != c {
				x.alias = r.orig
			}
			if !x.hasDSN {
				x.dsn, x.hasDSN = r.dsn, r.hasDSN
			}
		}
	}
	return h
}
