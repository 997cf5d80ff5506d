package sieve

import (
	"math"
	"net/mail"
	"time"
)

// vacation and vacation-seconds (RFC 5230, RFC 6131): the interpreter's
// part. The run adds a Vacation action describing the reply; whether it
// is sent (null sender, lists, auto-replies, the period memory) and how
// is the deliverer's business. Vacation does not cancel the implicit keep.

var vacationCommands = map[string]spec{
	"vacation": {ext: "vacation", pos: []valueKind{vString}, tags: map[string]tagSpec{
		"days":      {param: vNumber, group: "period"},
		"seconds":   {param: vNumber, group: "period", ext: "vacation-seconds"},
		"subject":   {param: vString},
		"from":      {param: vString},
		"addresses": {param: vStrings},
		"mime":      {},
		"handle":    {param: vString},
	}},
}

// VacationLimits bound the period between two replies to one sender, as
// Pigeonhole's sieve_vacation_min_period (1 day), default_period (7 days)
// and max_period (no limit in Pigeonhole 2.3, Debian's; the newest has 60
// days); a zero field takes that default. A negative Min allows a period
// of 0 (:seconds 0, a reply every time).
type VacationLimits struct {
	Min, Default, Max time.Duration
}

func (l VacationLimits) withDefaults() VacationLimits {
	if l.Min == 0 {
		l.Min = 24 * time.Hour
	}
	if l.Min < 0 {
		l.Min = 0
	}
	if l.Max <= 0 {
		l.Max = math.MaxInt64 / time.Second * time.Second
	}
	if l.Default <= 0 {
		l.Default = 7 * 24 * time.Hour
	}
	l.Default = min(max(l.Default, l.Min), l.Max)
	return l
}

func (s *Script) checkVacation(c *Command, n *node) *Error {
	if a, ok := n.tags["from"]; ok && !s.hasVariables(a.Strings[0]) {
		if _, err := mail.ParseAddress(a.Strings[0]); err != nil {
			return errAt(a.Pos, "vacation: :from address \"%s\" is invalid", a.Strings[0])
		}
	}
	// RFC 5230 §4.2: without :handle, replies differ when their reason,
	// subject, from or MIME flag do. The recipe is Pigeonhole's, on the
	// arguments as written (variables unexpanded).
	h := n.pos[0].Strings[0]
	if a, ok := n.tags["subject"]; ok {
		h += a.Strings[0]
	} else {
		h += "<default-subject>"
	}
	if a, ok := n.tags["from"]; ok {
		h += a.Strings[0]
	} else {
		h += "<default-from>"
	}
	if _, ok := n.tags["mime"]; ok {
		h += "<MIME>"
	} else {
		h += "<NO-MIME>"
	}
	n.handle = h
	return nil
}

func (r *runner) vacation(c *Command, n *node) error {
	for _, a := range r.actions {
		if a.Kind == Vacation {
			return r.errorf(c.Pos, "a second vacation action")
		}
		if a.Kind == Reject {
			return r.errorf(c.Pos, "vacation conflicts with an earlier reject/ereject")
		}
	}
	lim := r.opts.Vacation.withDefaults()
	period := lim.Default
	if a, ok := n.tags["days"]; ok {
		period = clampPeriod(a.Number, 24*3600, lim)
	}
	if a, ok := n.tags["seconds"]; ok {
		period = clampPeriod(a.Number, 1, lim)
	}
	v := &VacationReply{Reason: r.expand(n.pos[0].Strings[0]), Handle: n.handle, Period: period}
	_, v.MIME = n.tags["mime"]
	if a, ok := n.tags["subject"]; ok {
		v.Subject = r.expand(a.Strings[0])
	}
	if a, ok := n.tags["from"]; ok {
		// An invalid address made from variables is not an error in
		// Pigeonhole (it says so and goes on); the reply then comes from
		// the default address rather than carrying it.
		if from := r.expand(a.Strings[0]); from != "" {
			if _, err := mail.ParseAddress(from); err == nil {
				v.From = from
			}
		}
	}
	if a, ok := n.tags["addresses"]; ok {
		// Pigeonhole ignores an invalid address of the list.
		for _, addr := range r.strs(a) {
			if _, err := mail.ParseAddress(addr); err == nil {
				v.Addresses = append(v.Addresses, addr)
			}
		}
	}
	if a, ok := n.tags["handle"]; ok {
		v.Handle = r.expand(a.Strings[0])
	}
	if err := r.add(Action{Kind: Vacation, Vacation: v}); err != nil {
		return r.errorf(c.Pos, "%v", err)
	}
	return nil
}

// clampPeriod is n units (in seconds) kept within the limits, without
// overflow.
func clampPeriod(n, unit uint64, lim VacationLimits) time.Duration {
	maxSec := uint64(lim.Max / time.Second)
	sec := maxSec
	if n <= maxSec/unit {
		sec = n * unit
	}
	d := time.Duration(sec) * time.Second
	return min(max(d, lim.Min), lim.Max)
}
