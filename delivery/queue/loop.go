package queue

import (
	"bytes"
	"context"
	"net/netip"
	"strings"
)

// Mail that would loop back to this host is not sent to it, as Postfix's
// smtp(8) does (smtp_addr.c smtp_find_self and smtp_truncate_self,
// smtp_proto.c): a host whose domain's MX points at us by mistake, or a
// route to ourselves, would otherwise get its own relay refusal, or take
// the message and queue it for itself again.
//
//   - Addresses: an MX host with one of Options.LocalAddrs is this host.
//     It and every MX host of equal or worse preference are dropped; the
//     better ones are tried. When none is better, the mail bounces,
//     5.4.6 "mail for DOMAIN loops back to myself", or waits, 4.4.4
//     "unable to find primary relay for DOMAIN", when better MX hosts
//     exist that have no address now. A host named without MX lookup
//     (an implicit MX, a [nexthop], an address literal) that is this host
//     bounces the same way.
//   - Names: a server whose reply to EHLO (or HELO) names it as
//     Options.Hostname is this host too: 5.4.6 when it is a best MX host
//     (no other host is tried), 4.4.6 otherwise (the next one is). One
//     that only greets with our name is logged, as Postfix warns
//     "greeted me with my own hostname".
//
// Both apply only to SMTP on port 25 (Postfix's SMTP_MISC_FLAG_LOOP_DETECT):
// a route to another port is a service the admin chose (a filter, a
// submission relay on this very host), and a cluster node is ours by
// design.

// loopDetect says whether mail to h is checked for a loop back to us.
func (h hop) loopDetect() bool { return h.node == "" && h.port == "25" }

// loopDest is what a route's mail is for, in the loop's failure text.
func loopDest(rt route) string {
	if rt.nexthop.Host != "" {
		return rt.nexthop.Host
	}
	return rt.domain
}

// isSelf says whether one of ips is an address of this host.
func (q *Queue) isSelf(ips []netip.Addr) bool {
	for _, ip := range ips {
		if q.o.self[ip.Unmap().WithZone("")] {
			return true
		}
	}
	return false
}

// looked is one hop's address lookup.
type looked struct {
	ips []netip.Addr
	ad  addrDNS
	f   *failure
}

// lookLevel looks up the addresses of hops[i] and of every hop after it
// with the same preference (hops are sorted by preference), into res,
// and says whether one of them is this host: then it and every hop after
// it are not to be tried (smtp_truncate_self).
func (q *Queue) lookLevel(ctx context.Context, hops []hop, i int, res []looked) (self bool) {
	for j := i; j < len(hops) && hops[j].pref == hops[i].pref; j++ {
		ips, ad, f := q.addrs(ctx, hops[j])
		res[j] = looked{ips, ad, f}
		self = self || f == nil && q.isSelf(ips)
	}
	return self
}

// selfFailure is the failure of a route whose best MX host with
// addresses is this host: a loop, or, when better MX hosts exist whose
// addresses could not be had, the wait for them.
func selfFailure(h hop, bestPref uint16) *failure {
	if h.pref != bestPref {
		return tempFailure("4.4.4", "unable to find primary relay for "+h.dest)
	}
	return permFailure("5.4.6", "mail for "+h.dest+" loops back to myself")
}

// ehloLoop checks the names a server gave in its greeting and its reply
// to EHLO (head: the first bytes it sent) against Options.Hostname. It
// returns the failure when the EHLO reply names us, and logs a greeting
// that does.
func (q *Queue) ehloLoop(h hop, relay string, head []byte) *failure {
	if !h.loopDetect() {
		return nil
	}
	greet, ehlo := setupNames(head)
	if strings.EqualFold(greet, q.o.Hostname) {
		q.log.Warn("host greeted me with my own hostname", "relay", relay, "hostname", q.o.Hostname)
	}
	if !strings.EqualFold(ehlo, q.o.Hostname) {
		return nil
	}
	q.log.Warn("host replied to HELO/EHLO with my own hostname", "relay", relay, "hostname", q.o.Hostname)
	if h.bestMX {
		f := permFailure("5.4.6", "mail for "+h.dest+" loops back to myself")
		f.loop = true
		return f
	}
	return tempFailure("4.4.6", "mail for "+h.dest+" loops back to myself")
}

// setupHead bounds what is kept of a server's first bytes for
// setupNames: a greeting of a few lines and the first line of the reply
// to EHLO.
const setupHead = 8 << 10

// setupNames finds in a server's first bytes the first word of its
// greeting (its name, RFC 5321 §4.3.1) and of the first line of its
// first 250 reply after it (EHLO's or HELO's, §4.1.1.1); "" when not
// there.
func setupNames(head []byte) (greet, ehlo string) {
	first := true // the next line begins a reply
	inGreeting := true
	for len(head) > 0 {
		line, rest, ok := bytes.Cut(head, []byte("\n"))
		if !ok {
			break // a partial line
		}
		head = rest
		l := strings.TrimRight(string(line), "\r")
		if len(l) < 3 {
			return greet, ehlo
		}
		if first {
			word := ""
			if len(l) > 4 {
				word, _, _ = strings.Cut(strings.TrimLeft(l[4:], " "), " ")
			}
			switch {
			case inGreeting:
				greet = word
			case l[:3] == "250":
				return greet, word
			}
		}
		first = len(l) == 3 || l[3] == ' '
		if first {
			inGreeting = false
		}
	}
	return greet, ehlo
}
