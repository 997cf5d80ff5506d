// Evaluating a test and matching its values against its keys.

package sieve

import "strings"

// test runs a test within the run's budget: the work it did may have
// spent it, and its answer is then not to be acted on.
func (r *runner) test(t *Test) (bool, error) {
	if err := r.step(t.Pos); err != nil {
		return false, err
	}
	ok, err := r.evalTest(t)
	if err == nil && r.budget.err != nil {
		r.at = t.Pos
		return false, r.limitError()
	}
	return ok, err
}

func (r *runner) evalTest(t *Test) (bool, error) {
	n := r.s.nodes[t]
	switch t.Name {
	case "true":
		return true, nil
	case "false":
		return false, nil
	case "not":
		ok, err := r.test(t.Tests[0])
		return !ok, err
	case "allof", "anyof":
		if v, ok := r.s.constantTest(t); ok {
			// Pigeonhole folds these at compile time: anyof (X, true) is
			// true without running X, whose :matches sets no variables.
			return v, nil
		}
		all := t.Name == "allof"
		for _, sub := range t.Tests {
			ok, err := r.test(sub)
			if err != nil {
				return false, err
			}
			if ok != all {
				return ok, nil
			}
		}
		return all, nil
	case "exists":
		if _, ok := n.tags["mime"]; ok {
			return r.mimeExists(n, r.strs(n.pos[0])), nil
		}
		for _, h := range r.strs(n.pos[0]) {
			if !r.headerExists(h) {
				return false, nil
			}
		}
		return true, nil
	case "size":
		// the message as edited, as Pigeonhole measures it
		limit, size := n.pos[0].Number, uint64(max(r.msg.Size+r.sizeDelta, 0))
		if _, ok := n.tags["over"]; ok {
			return size > limit, nil
		}
		return size < limit, nil
	case "header":
		// :index counts the fields of all the names given, in that order
		// (Pigeonhole's reading)
		var values []string
		if _, ok := n.tags["mime"]; ok {
			values = r.mimeHeaderValues(n, r.strs(n.pos[0]))
		} else {
			for _, h := range r.strs(n.pos[0]) {
				values = append(values, r.decoded(h)...)
			}
		}
		values = pickIndex(n, values)
		return r.matchValues(n, values, r.strs(n.pos[1])), nil
	case "address", "envelope":
		part := "all"
		for _, p := range []string{"localpart", "domain", "user", "detail"} {
			if _, ok := n.tags[p]; ok {
				part = p
			}
		}
		var addrs []mailAddr
		var unparsed []string // values :all sees whole, other parts only when empty
		if t.Name == "address" {
			var fields []string // :index counts the fields of all the names
			_, inParts := n.tags["mime"]
			for _, h := range r.strs(n.pos[0]) {
				if !inParts {
					fields = append(fields, r.headerValues(h)...)
					continue
				}
				for _, part := range r.mimeFields(n, h) {
					fields = append(fields, part...)
				}
			}
			for _, v := range pickIndex(n, fields) {
				r.budget.spend(decodeCost * len(v))
				list, ok := headerAddresses(v)
				if !ok {
					unparsed = append(unparsed, list...)
					continue
				}
				for _, a := range list {
					addrs = append(addrs, splitAddrSpec(a))
				}
			}
		} else {
			for _, p := range r.strs(n.pos[0]) {
				var v string
				switch strings.ToLower(p) {
				case "from":
					v = r.env.From
				case "to":
					v = r.env.To
				case "auth": // no authenticated sender at local delivery
					continue
				default:
					return false, r.errorf(t.Pos, "envelope part %q is not supported", p)
				}
				if a, ok := parseEnvelopeAddress(v); ok {
					addrs = append(addrs, a)
				} else {
					unparsed = append(unparsed, v) // the null sender
				}
			}
		}
		var values []string
		for _, v := range unparsed {
			// as Pigeonhole: a value that is no address is seen whole
			// by :all, and by every part when empty
			if part == "all" || v == "" {
				values = append(values, v)
			}
		}
		for _, a := range addrs {
			if v, ok := a.part(part); ok {
				values = append(values, v)
			}
		}
		if m := r.newMatcher(n); m.typ == "count" {
			// Pigeonhole counts the addresses, with or without the part
			// (an address without a +detail still counts for :detail).
			return m.countMatch(len(addrs)+len(unparsed), r.strs(n.pos[1])), nil
		}
		return r.matchValues(n, values, r.strs(n.pos[1])), nil
	case "hasflag":
		var flags []string
		if n.pos[0].Kind == ArgTag {
			flags = r.flags
		} else {
			for _, v := range r.strs(n.pos[0]) {
				flags = append(flags, strings.Fields(r.getVar(v))...)
			}
		}
		// For :is and :contains, as in Pigeonhole, keys are flag lists
		// too: "a b" is the keys "a" and "b"; :matches and :value take
		// them whole.
		keys := r.strs(n.pos[1])
		if m := r.newMatcher(n); m.typ == "is" || m.typ == "contains" {
			var split []string
			for _, k := range keys {
				split = append(split, strings.Fields(k)...)
			}
			keys = split
		}
		return r.matchValues(n, flags, keys), nil
	case "string":
		var values []string
		for _, v := range r.strs(n.pos[0]) {
			if m := r.newMatcher(n); m.typ != "count" || v != "" {
				values = append(values, v)
			}
		}
		return r.matchValues(n, values, r.strs(n.pos[1])), nil
	case "body":
		return r.bodyTest(n)
	case "date", "currentdate":
		return r.dateTest(t, n)
	case "spamtest", "virustest":
		return r.spamTest(t, n)
	case "duplicate":
		return r.duplicateTest(t, n)
	case "ihave":
		return !n.ihaveMissing, nil
	case "environment":
		return r.environmentTest(n), nil
	case "valid_notify_method", "notify_method_capability":
		return r.notifyTest(t, n)
	}
	return false, r.errorf(t.Pos, "test %s cannot run", t.Name)
}

// matchValues is true when one value matches one key; for :matches the
// first such pair sets the match variables.
func (r *runner) matchValues(n *node, values, keys []string) bool {
	m := r.newMatcher(n)
	if m.typ == "count" {
		return m.countMatch(len(values), keys)
	}
	for _, v := range values {
		for _, k := range keys {
			ok, caps := m.match(v, k)
			if ok {
				if caps != nil && r.s.required["variables"] {
					r.match = caps
				}
				return true
			}
		}
	}
	return false
}
