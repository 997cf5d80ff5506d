package imap

import (
	"cmp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// THREAD=REFERENCES (RFC 5256 §3), JWZ's algorithm as the RFC words it:
// containers linked by Message-ID and References (In-Reply-To without
// them), empty containers pruned, root threads gathered by base subject,
// siblings ordered by sent date (a dummy by its first child's), ties by
// sequence number.

// threadMsg is one message of a THREAD command.
type threadMsg struct {
	num, seq uint32
	date     time.Time
	subject  string // as written, decoded
	msgID    string
	refs     []string
}

type container struct {
	msg      *threadMsg // nil: a dummy
	parent   *container
	children []*container
	root     bool   // already in the root set
	touched  bool   // children changed when gathering by subject
	subject  string // upper-cased base subject, for the root set
	pos      int    // a root's index in the root set, then in the result
	placed   bool   // a root now in the result
	keyDate  time.Time
	keySeq   uint32
}

func (c *container) hasDescendant(d *container) bool {
	for _, k := range c.children {
		if k == d || k.hasDescendant(d) {
			return true
		}
	}
	return false
}

func (c *container) unlink() {
	if p := c.parent; p != nil {
		p.children = slices.DeleteFunc(p.children, func(k *container) bool { return k == c })
		c.parent = nil
	}
}

// link makes c a child of p unless that would make a loop.
func link(p, c *container) {
	if p == c || c.hasDescendant(p) {
		return
	}
	c.unlink()
	c.parent = p
	p.children = append(p.children, c)
}

// setKey sets what siblings are ordered by: the sent date and sequence
// number of the message, or for a dummy of its first child (its children
// sorted already). Keys are unique among siblings (each has its own first
// message), so an unstable sort gives the one order.
func (c *container) setKey() {
	switch {
	case c.msg != nil:
		c.keyDate, c.keySeq = c.msg.date, c.msg.seq
	case len(c.children) > 0:
		c.keyDate, c.keySeq = c.children[0].keyDate, c.children[0].keySeq
	}
}

func (c *container) first() *threadMsg {
	for c.msg == nil && len(c.children) > 0 {
		c = c.children[0]
	}
	return c.msg
}

func byContainerDate(a, b *container) int {
	if c := a.keyDate.Compare(b.keyDate); c != 0 {
		return c
	}
	return cmp.Compare(a.keySeq, b.keySeq)
}

// threadReferences builds the threads of ms (in sequence order).
func threadReferences(ms []*threadMsg) []*container {
	table := make(map[string]*container, len(ms)*3/2)
	var slab []container // containers allocated in blocks
	alloc := func() *container {
		if len(slab) == cap(slab) {
			slab = make([]container, 0, min(1024, len(ms)+16))
		}
		slab = slab[:len(slab)+1]
		return &slab[len(slab)-1]
	}
	get := func(id string) *container {
		c := table[id]
		if c == nil {
			c = alloc()
			table[id] = c
		}
		return c
	}
	all := make([]*container, 0, len(ms))
	for _, m := range ms {
		// (1A) the references, parent to child.
		var prev *container
		for _, id := range m.refs {
			c := get(id)
			if prev != nil && c.parent == nil {
				link(prev, c)
			}
			prev = c
		}
		// (1B) the message itself; a missing or repeated Message-ID gets a
		// container of its own.
		var c *container
		if m.msgID != "" {
			if c = get(m.msgID); c.msg != nil {
				c = alloc()
			}
		} else {
			c = alloc()
		}
		c.msg = m
		all = append(all, c)
		// A parent set before (from a truncated References elsewhere) gives
		// way to this message's own last reference, unless that would make
		// a loop, in which case it stays a root.
		c.unlink()
		if prev != nil {
			link(prev, c)
		}
	}
	// (2) the root set: every container without a parent.
	var roots []*container
	addRoot := func(c *container) {
		if c.parent == nil && !c.root {
			c.root = true
			roots = append(roots, c)
		}
	}
	for _, c := range all {
		addRoot(c)
	}
	for _, c := range table {
		addRoot(c)
	}
	// (3) prune dummies.
	roots = prune(roots, true)
	// (4) order by sent date, siblings first so that dummies have a date.
	sortTree(roots)
	// (5) gather the root set by base subject (each root's key computed
	// once).
	subjects := make(map[string]*container, len(roots))
	for _, c := range roots {
		m := c.first()
		if m == nil {
			continue
		}
		if subj := baseSubject(m.subject); subj != "" {
			c.subject = strings.ToUpper(subj)
		}
		if c.subject == "" {
			continue
		}
		t := subjects[c.subject]
		if t == nil || (c.msg == nil && t.msg != nil) || (t.msg != nil && c.msg != nil && isReply(t.msg.subject) && !isReply(c.msg.subject)) {
			subjects[c.subject] = c
		}
	}
	for i, c := range roots {
		c.pos = i
	}
	out := make([]*container, 0, len(roots))
	for i := 0; i < len(roots); i++ {
		c := roots[i]
		t := (*container)(nil)
		if c.subject != "" {
			t = subjects[c.subject]
		}
		if t == nil || t == c {
			c.pos, c.placed = len(out), true
			out = append(out, c)
			continue
		}
		t.touched = true
		switch {
		case t.msg == nil && c.msg == nil:
			for _, k := range c.children {
				k.parent = t
			}
			t.children = append(t.children, c.children...)
			c.children = nil
		case t.msg == nil:
			c.parent = t
			t.children = append(t.children, c)
		case c.msg != nil && !isReply(t.msg.subject) && isReply(c.msg.subject):
			c.parent = t
			t.children = append(t.children, c)
		default:
			// A new dummy in t's place, holding both.
			d := &container{children: []*container{t, c}, touched: true, subject: t.subject, pos: t.pos, placed: t.placed}
			t.parent, c.parent = d, d
			if t.placed {
				out[t.pos] = d
			} else {
				roots[t.pos] = d
			}
			subjects[t.subject] = d
		}
	}
	// (6) siblings by sent date: the children that gathering changed,
	// then the roots (the rest is as (4) sorted it).
	for _, c := range out {
		resortTouched(c)
	}
	slices.SortFunc(out, byContainerDate)
	return out
}

// prune removes dummies without children and replaces a dummy with its
// children, except at the root when it has more than one.
func prune(list []*container, root bool) []*container {
	var out []*container
	for _, c := range list {
		c.children = prune(c.children, false)
		for _, k := range c.children {
			k.parent = c
		}
		switch {
		case c.msg != nil:
			out = append(out, c)
		case len(c.children) == 0:
		case root && len(c.children) > 1:
			out = append(out, c)
		default:
			for _, k := range c.children {
				k.parent = c.parent
			}
			out = append(out, prune(c.children, root)...)
		}
	}
	return out
}

// resortTouched sorts again the children of the containers that
// gathering changed: a target of a reply may since have gone under a new
// dummy, so they are looked for below the touched ones too.
func resortTouched(c *container) {
	if !c.touched {
		return
	}
	for _, k := range c.children {
		resortTouched(k)
	}
	slices.SortFunc(c.children, byContainerDate)
	c.setKey()
}

func sortTree(list []*container) {
	for _, c := range list {
		sortTree(c.children)
		c.setKey()
	}
	slices.SortFunc(list, byContainerDate)
}

// isReply: the subject had a Re:/Fwd: leader or a (fwd) trailer.
func isReply(subject string) bool {
	s := strings.Join(strings.Fields(subject), " ")
	if _, ok := cutLeader(strings.TrimLeft(s, " ")); ok {
		return true
	}
	t := strings.TrimRight(s, " ")
	return len(t) >= 5 && strings.EqualFold(t[len(t)-5:], "(fwd)") ||
		len(s) >= 5 && strings.EqualFold(s[:5], "[fwd:")
}

// writeThreads writes each thread as RFC 5256's thread-list: one space
// after THREAD, none between the lists (thread-data = "THREAD" [SP
// 1*thread-list]).
func writeThreads(b *strings.Builder, list []*container) {
	if len(list) > 0 {
		b.WriteString(" ")
	}
	for _, c := range list {
		b.WriteString("(")
		writeMembers(b, c)
		b.WriteString(")")
	}
}

func writeMembers(b *strings.Builder, c *container) {
	if c.msg != nil {
		b.WriteString(strconv.FormatUint(uint64(c.msg.num), 10))
	}
	switch {
	case len(c.children) == 1 && c.msg != nil:
		b.WriteString(" ")
		writeMembers(b, c.children[0])
	case len(c.children) >= 1:
		if c.msg != nil {
			b.WriteString(" ")
		}
		for _, k := range c.children {
			b.WriteString("(")
			writeMembers(b, k)
			b.WriteString(")")
		}
	}
}

// Bounds of the References kept per message (a hostile header may hold
// thousands of ids, or ids of any length): at most maxReferences ids,
// each at most maxMessageIDLen bytes (a longer one is not a message id
// we thread on: skipped), so at most 25,000 bytes and in practice far
// less — never more than the field they come from.
const (
	maxReferences   = 100
	maxMessageIDLen = 250
)

// referenceIDs reads the ids of a References field as THREAD=REFERENCES
// links them. Beyond maxReferences it keeps the first id and the last
// ones, as mail clients trim a long References field (RFC 5322 §3.6.4):
// the thread's root and the nearest ancestors, the last being the parent.
// The ids are copied: the cache must not hold on to the whole field.
func referenceIDs(v string) []string {
	var first string
	var tail []string
	for {
		id, rest, ok := nextMessageID(v)
		if !ok {
			break
		}
		v = rest
		switch {
		case first == "":
			first = strings.Clone(id)
		case len(tail) < maxReferences-1:
			tail = append(tail, strings.Clone(id))
		default:
			copy(tail, tail[1:])
			tail[len(tail)-1] = strings.Clone(id)
		}
	}
	if first == "" {
		return nil
	}
	return append([]string{first}, tail...)
}

// nextMessageID finds the next <...> id in v: the text between the
// brackets without white space (a folded id is one id), skipped when empty
// or longer than maxMessageIDLen. ok is false when there is none left.
func nextMessageID(v string) (id, rest string, ok bool) {
	for {
		i := strings.IndexByte(v, '<')
		if i < 0 {
			return "", "", false
		}
		j := strings.IndexByte(v[i:], '>')
		if j < 0 {
			return "", "", false
		}
		id, v = v[i+1:i+j], v[i+j+1:]
		if strings.ContainsAny(id, " \t\r\n") {
			id = strings.Join(strings.Fields(id), "")
		}
		if id != "" && len(id) <= maxMessageIDLen {
			return id, v, true
		}
	}
}
