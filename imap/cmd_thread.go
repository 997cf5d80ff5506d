package imap

import (
	"cmp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// THREAD=ORDEREDSUBJECT (RFC 5256 §3): messages with the same base subject
// form a thread whose first message, by sent date, is the parent of the
// others; threads are ordered by the sent date of their first message.

func cmdThread(s *session, tag string, uid bool) error {
	if err := s.r.SP(); err != nil {
		return err
	}
	alg, err := s.r.Atom()
	if err != nil {
		return err
	}
	alg = strings.ToUpper(alg)
	if alg != "ORDEREDSUBJECT" && alg != "REFERENCES" {
		return bad("", "Unknown threading algorithm "+sanitize(alg))
	}
	root, err := s.charsetSearch()
	if err != nil {
		return err
	}
	seqs, uids, err := s.searchHits(root)
	if err != nil {
		return err
	}
	if alg == "REFERENCES" {
		ms := make([]*threadMsg, len(seqs))
		msgs := make([]threadMsg, len(seqs))
		for i := range seqs {
			ms[i] = &msgs[i]
			s.threadMsg(ms[i], seqs[i], uids[i], uid)
		}
		s.trimBuffers()
		var b strings.Builder
		b.WriteString("* THREAD")
		writeThreads(&b, threadReferences(ms))
		s.w.Raw(b.String())
		s.w.CRLF()
		return s.ok(tag, "", "Thread completed", uid)
	}
	type msg struct {
		num     uint32
		seq     uint32
		subject string
		date    time.Time
	}
	ms := make([]msg, len(seqs))
	for i := range seqs {
		m := msg{num: seqs[i], seq: seqs[i]}
		if uid {
			m.num = uids[i]
		}
		if env, err := s.envelope(uids[i]); err == nil && env != nil {
			m.subject = strings.ToUpper(baseSubject(decodeWords(env.Subject)))
			m.date = env.Date
		}
		if m.date.IsZero() {
			_, m.date, _ = s.sel.mb.Meta(uids[i]) // the internal date
		}
		ms[i] = m
	}
	s.trimBuffers()
	byDate := func(x, y msg) int {
		if c := x.date.Compare(y.date); c != 0 {
			return c
		}
		return cmp.Compare(x.seq, y.seq)
	}
	slices.SortFunc(ms, func(x, y msg) int {
		if c := strings.Compare(x.subject, y.subject); c != 0 {
			return c
		}
		return byDate(x, y)
	})
	var threads [][]msg
	for i, m := range ms {
		if i > 0 && m.subject == ms[i-1].subject {
			threads[len(threads)-1] = append(threads[len(threads)-1], m)
			continue
		}
		threads = append(threads, []msg{m})
	}
	slices.SortStableFunc(threads, func(x, y []msg) int { return byDate(x[0], y[0]) })
	var b strings.Builder
	b.WriteString("* THREAD")
	if len(threads) > 0 {
		b.WriteString(" ") // no space between thread-lists (RFC 5256 §4)
	}
	for _, t := range threads {
		b.WriteString("(")
		b.WriteString(strconv.FormatUint(uint64(t[0].num), 10))
		switch {
		case len(t) == 2:
			b.WriteString(" " + strconv.FormatUint(uint64(t[1].num), 10))
		case len(t) > 2:
			b.WriteString(" ")
			for _, c := range t[1:] {
				b.WriteString("(" + strconv.FormatUint(uint64(c.num), 10) + ")")
			}
		}
		b.WriteString(")")
	}
	s.w.Raw(b.String())
	s.w.CRLF()
	return s.ok(tag, "", "Thread completed", uid)
}

// threadMsg gathers what THREAD=REFERENCES needs of a message, all from
// the index (no file read on a warm folder): its Message-ID, its
// References (the first In-Reply-To id without them, RFC 5256 §3), subject
// and sent date (the internal date when it has none).
func (s *session) threadMsg(m *threadMsg, seq, uid uint32, byUID bool) {
	*m = threadMsg{num: seq, seq: seq}
	if byUID {
		m.num = uid
	}
	c := s.sel.mb.Cached(uid)
	env := c.Envelope
	if env == nil {
		env, _ = s.envelope(uid)
	}
	if env != nil {
		m.subject = decodeWords(env.Subject)
		m.date = env.Date
		if id, _, ok := nextMessageID(env.MessageID); ok {
			m.msgID = id
		}
		m.refs = env.References
		if len(m.refs) == 0 && len(env.InReplyTo) > 0 {
			if id, _, ok := nextMessageID(env.InReplyTo[0]); ok {
				m.refs = []string{id}
			}
		}
	}
	if m.date.IsZero() {
		if c.Date != 0 {
			m.date = time.Unix(0, c.Date)
		} else {
			_, m.date, _ = s.sel.mb.Meta(uid)
		}
	}
}
