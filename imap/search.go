package imap

import (
	"bufio"
	"bytes"
	"io"
	"strings"
	"time"

	goimap "github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	gomessage "github.com/emersion/go-message"
	"github.com/emersion/go-message/mail"
	"github.com/emersion/go-message/textproto"

	"courriel/imap/mailstore"
)

// maxSearchDepth bounds NOT/OR nesting; the library's parser already limits
// the command to 50 KiB, this keeps evaluation shallow as well.
const maxSearchDepth = 64

func (s *session) Search(kind imapserver.NumKind, criteria *goimap.SearchCriteria, _ *goimap.SearchOptions) (*goimap.SearchData, error) {
	sel := s.sel
	if depth(criteria, 0) > maxSearchDepth {
		return nil, &goimap.Error{Type: goimap.StatusResponseTypeBad, Code: goimap.ResponseCodeLimit, Text: "Search criteria nested too deeply"}
	}
	seqs, uids := sel.resolve(goimap.SeqSet{{Start: 1, Stop: 0}})
	fl, ok := sel.mb.FlagsOf(uids)
	data := &goimap.SearchData{}
	var seqSet goimap.SeqSet
	var uidSet goimap.UIDSet
	for i, uid := range uids {
		if !ok[i] {
			continue
		}
		m := &searchMsg{s: s, seq: seqs[i], uid: uid, flags: fl[i]}
		if !m.match(criteria) {
			continue
		}
		num := seqs[i]
		if kind == imapserver.NumKindUID {
			num = uid
			uidSet.AddNum(goimap.UID(uid))
		} else {
			seqSet.AddNum(num)
		}
		if data.Min == 0 || num < data.Min {
			data.Min = num
		}
		if num > data.Max {
			data.Max = num
		}
		data.Count++
	}
	if kind == imapserver.NumKindUID {
		data.All = uidSet
	} else {
		data.All = seqSet
	}
	return data, nil
}

func depth(c *goimap.SearchCriteria, d int) int {
	if d > maxSearchDepth {
		return d
	}
	m := d
	for i := range c.Not {
		m = max(m, depth(&c.Not[i], d+1))
	}
	for i := range c.Or {
		m = max(m, depth(&c.Or[i][0], d+1), depth(&c.Or[i][1], d+1))
	}
	return m
}

// searchMsg evaluates criteria on one message, reading what it needs once:
// flags and UIDs are in memory, sizes and dates in the cache, the header
// only for header keys, the body only for BODY and TEXT.
type searchMsg struct {
	s     *session
	seq   uint32
	uid   uint32
	flags mailstore.Flags

	env    *goimap.Envelope
	header *textproto.Header
	raw    []byte
	failed bool
}

func (m *searchMsg) match(c *goimap.SearchCriteria) bool {
	sel := m.s.sel
	for _, set := range c.SeqNum {
		if !seqContains(set, m.seq, uint32(len(sel.view))) {
			return false
		}
	}
	for _, set := range c.UID {
		if !uidContains(set, m.uid, sel.view[len(sel.view)-1]) {
			return false
		}
	}
	if len(c.Flag) > 0 || len(c.NotFlag) > 0 {
		names := flagsToIMAP(sel.mb.FlagNames(m.flags))
		for _, f := range c.Flag {
			if !hasFlag(names, f) {
				return false
			}
		}
		for _, f := range c.NotFlag {
			if hasFlag(names, f) {
				return false
			}
		}
	}
	if c.Larger != 0 || c.Smaller != 0 || !c.Since.IsZero() || !c.Before.IsZero() {
		size, date, err := sel.mb.Meta(m.uid)
		if err != nil {
			return false
		}
		if c.Larger != 0 && size <= c.Larger {
			return false
		}
		if c.Smaller != 0 && size >= c.Smaller {
			return false
		}
		if !matchDate(date, c.Since, c.Before) {
			return false
		}
	}
	if !c.SentSince.IsZero() || !c.SentBefore.IsZero() {
		env := m.envelope()
		if env == nil || env.Date.IsZero() || !matchDate(env.Date, c.SentSince, c.SentBefore) {
			return false
		}
	}
	for _, h := range c.Header {
		if !m.matchHeader(h.Key, h.Value) {
			return false
		}
	}
	for _, t := range c.Body {
		if !m.matchBody(t, false) {
			return false
		}
	}
	for _, t := range c.Text {
		if !m.matchBody(t, true) {
			return false
		}
	}
	for i := range c.Not {
		if m.match(&c.Not[i]) {
			return false
		}
	}
	for i := range c.Or {
		if !m.match(&c.Or[i][0]) && !m.match(&c.Or[i][1]) {
			return false
		}
	}
	return true
}

func seqContains(set goimap.SeqSet, seq, n uint32) bool {
	for _, r := range set {
		lo, hi := rangeBounds(r.Start, r.Stop, n)
		if seq >= lo && seq <= hi {
			return true
		}
	}
	return false
}

// rangeBounds orders a range's ends, "*" (0) standing for last (RFC 9051
// §9: "*" is the largest number in use; a:b equals b:a).
func rangeBounds(start, stop, last uint32) (lo, hi uint32) {
	lo, hi = start, stop
	if lo == 0 {
		lo = last
	}
	if hi == 0 {
		hi = last
	}
	if lo > hi {
		lo, hi = hi, lo
	}
	return lo, hi
}

func uidContains(set goimap.UIDSet, uid, maxUID uint32) bool {
	for _, r := range set {
		lo, hi := rangeBounds(uint32(r.Start), uint32(r.Stop), maxUID)
		if uid >= lo && uid <= hi {
			return true
		}
	}
	return false
}

func hasFlag(names []goimap.Flag, f goimap.Flag) bool {
	for _, n := range names {
		if strings.EqualFold(string(n), string(f)) {
			return true
		}
	}
	return false
}

// matchDate compares dates only, ignoring time and zone (RFC 9051 §6.4.4).
func matchDate(t, since, before time.Time) bool {
	d := time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
	if !since.IsZero() && d.Before(time.Date(since.Year(), since.Month(), since.Day(), 0, 0, 0, 0, time.UTC)) {
		return false
	}
	if !before.IsZero() && !d.Before(time.Date(before.Year(), before.Month(), before.Day(), 0, 0, 0, 0, time.UTC)) {
		return false
	}
	return true
}

func (m *searchMsg) envelope() *goimap.Envelope {
	if m.env == nil && !m.failed {
		env, err := m.s.envelope(m.uid)
		if err != nil {
			m.failed = true
			return nil
		}
		m.env = env
	}
	return m.env
}

func containsFold(s, sub string) bool {
	return strings.Contains(strings.ToLower(s), strings.ToLower(sub))
}

func addrText(l []goimap.Address) string {
	var b strings.Builder
	for _, a := range l {
		b.WriteString(a.Name)
		b.WriteString(" <")
		b.WriteString(a.Mailbox)
		b.WriteByte('@')
		b.WriteString(a.Host)
		b.WriteString("> ")
	}
	return b.String()
}

// matchHeader is a case-insensitive substring match on the decoded field
// (RFC 9051 §6.4.4). Address and subject fields use the cached envelope, so
// SEARCH FROM does not reopen every file.
func (m *searchMsg) matchHeader(key, value string) bool {
	switch strings.ToLower(key) {
	case "from", "to", "cc", "bcc", "subject":
		env := m.envelope()
		if env == nil {
			return false
		}
		var text string
		switch strings.ToLower(key) {
		case "from":
			text = addrText(env.From)
		case "to":
			text = addrText(env.To)
		case "cc":
			text = addrText(env.Cc)
		case "bcc":
			text = addrText(env.Bcc)
		case "subject":
			text = env.Subject
		}
		if value == "" {
			return text != ""
		}
		if text != "" || strings.EqualFold(key, "subject") {
			return containsFold(text, value)
		}
		// No address parsed (group syntax, broken field): search the raw
		// field instead; a message with a parsable address never gets here.
	}
	h := m.loadHeader()
	if h == nil {
		return false
	}
	fields := h.FieldsByKey(key)
	if value == "" {
		return fields.Len() > 0
	}
	mh := mail.Header{Header: gomessage.Header{Header: *h}}
	for fields.Next() {
		v, err := mh.Text(fields.Key())
		if err != nil {
			v = fields.Value()
		}
		if containsFold(v, value) || containsFold(fields.Value(), value) {
			return true
		}
	}
	return false
}

func (m *searchMsg) loadHeader() *textproto.Header {
	if m.header == nil && !m.failed {
		h, err := m.s.readHeader(m.uid)
		if err != nil {
			m.failed = true
			return nil
		}
		m.header = &h
	}
	return m.header
}

func (m *searchMsg) matchBody(text string, withHeader bool) bool {
	if m.raw == nil && !m.failed {
		raw, err := m.s.readMessage(m.uid)
		if err != nil {
			m.failed = true
			return false
		}
		m.raw = raw
	}
	if m.raw == nil {
		return false
	}
	if text == "" {
		return true
	}
	e, err := gomessage.Read(bytes.NewReader(m.raw))
	if e == nil {
		// Unparseable: a raw substring search is better than nothing.
		return bytes.Contains(bytes.ToLower(m.raw), bytes.ToLower([]byte(text)))
	}
	_ = err
	return matchEntity(e, strings.ToLower(text), withHeader, 0)
}

func matchEntity(e *gomessage.Entity, lower string, withHeader bool, d int) bool {
	if withHeader {
		var b bytes.Buffer
		_ = textproto.WriteHeader(&b, e.Header.Header)
		if strings.Contains(strings.ToLower(b.String()), lower) {
			return true
		}
	}
	if d > maxBodyDepth {
		return false
	}
	if mr := e.MultipartReader(); mr != nil {
		for {
			p, err := mr.NextPart()
			if err == io.EOF || p == nil {
				return false
			}
			if matchEntity(p, lower, withHeader, d+1) {
				return true
			}
		}
	}
	t, _, _ := e.Header.ContentType()
	if t != "" && !strings.HasPrefix(t, "text/") && !strings.HasPrefix(t, "message/") {
		return false
	}
	br := bufio.NewReader(io.LimitReader(e.Body, 64<<20))
	body, _ := io.ReadAll(br)
	return bytes.Contains(bytes.ToLower(body), []byte(lower))
}
