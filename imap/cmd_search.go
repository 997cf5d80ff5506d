package imap

import (
	"io"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/emersion/go-message/charset"
	"github.com/emersion/go-message/textproto"

	"courriel/imap/mailstore"
	"courriel/imap/wire"
	"courriel/internal/envaddr"
)

// searchKey is one node of a parsed SEARCH program (RFC 9051 §6.4.4).
type searchKey struct {
	op    string // upper-case key name; "AND" for a parenthesised list
	set   wire.NumSet
	flag  string
	n     int64
	date  time.Time
	field string
	value string
	kids  []*searchKey
	mod   uint64 // MODSEQ
	fold  []byte // BODY and TEXT: value case-folded, at its first use (searchtext.go)
}

type searchArgs struct {
	esearch                          bool // RETURN given
	retMin, retMax, retAll, retCount bool
	retSave                          bool
	retUpdate, retPartial            bool   // RFC 5267 (context.go)
	partLo, partHi                   uint32 // PARTIAL's window
	root                             *searchKey
	modseq                           uint64 // MODSEQ of the response (RFC 7162 §3.1.5); 0: none
}

func (s *session) parseSearch() (*searchArgs, error) {
	a := &searchArgs{}
	if err := s.r.SP(); err != nil {
		return nil, err
	}
	root := &searchKey{op: "AND"}
	first := true
	for {
		if !first {
			if eol, err := s.r.AtEOL(); err != nil {
				return nil, err
			} else if eol {
				break
			}
			if err := s.r.SP(); err != nil {
				return nil, err
			}
		}
		c, err := s.r.Peek()
		if err != nil {
			return nil, err
		}
		if c == 'R' || c == 'r' || c == 'C' || c == 'c' {
			// RETURN (...) and CHARSET x come before the keys.
			if first || len(root.kids) == 0 {
				word, err := s.r.Token(func(c byte) bool { return wire.IsAtomChar(c) }, "search key")
				if err != nil {
					return nil, err
				}
				switch strings.ToUpper(word) {
				case "RETURN":
					if err := s.r.SP(); err != nil {
						return nil, err
					}
					if err := s.parseReturn(a, true); err != nil {
						return nil, err
					}
					first = false
					continue
				case "CHARSET":
					if err := s.r.SP(); err != nil {
						return nil, err
					}
					if err := s.readSearchCharset(); err != nil {
						return nil, err
					}
					first = false
					continue
				default:
					k, err := s.parseKeyNamed(word)
					if err != nil {
						return nil, err
					}
					root.kids = append(root.kids, k)
					first = false
					continue
				}
			}
		}
		k, err := s.parseKey()
		if err != nil {
			return nil, err
		}
		root.kids = append(root.kids, k)
		first = false
	}
	if err := s.r.CRLF(); err != nil {
		return nil, err
	}
	if len(root.kids) == 0 {
		return nil, bad("", "Missing search keys")
	}
	if a.esearch && a.impliesAll() {
		a.retAll = true // RFC 4731: RETURN () means ALL
	}
	if err := a.checkUpdate(); err != nil {
		return nil, err
	}
	a.root = root
	return a, nil
}

func (s *session) parseKey() (*searchKey, error) {
	c, err := s.r.Peek()
	if err != nil {
		return nil, err
	}
	switch {
	case c == '(':
		k := &searchKey{op: "AND"}
		err := s.r.List(false, func() error {
			kk, err := s.parseKey()
			k.kids = append(k.kids, kk)
			return err
		})
		return k, err
	case c == '*' || c == '$' || (c >= '0' && c <= '9'):
		set, err := s.r.SeqSet()
		return &searchKey{op: "SEQ", set: set}, err
	}
	word, err := s.r.Token(func(c byte) bool { return wire.IsAtomChar(c) }, "search key")
	if err != nil {
		return nil, err
	}
	return s.parseKeyNamed(word)
}

func (s *session) parseKeyNamed(word string) (*searchKey, error) {
	op := strings.ToUpper(word)
	k := &searchKey{op: op}
	str := func() (string, error) {
		if err := s.r.SP(); err != nil {
			return "", err
		}
		return s.r.AString()
	}
	// text is a string the message is searched for, in UTF-8 once read
	// in the search's charset. Bytes that are not UTF-8 where UTF-8 (or
	// US-ASCII, part of it) was said are a malformed key, answered BAD as
	// Dovecot does, rather than a search that can only find nothing.
	text := func() (string, error) {
		v, err := str()
		if err != nil {
			return "", err
		}
		if s.searchCS != "" {
			return toUTF8(s.searchCS, v)
		}
		if !utf8.ValidString(v) {
			return "", bad("", "Invalid search key: "+op+" string is not UTF-8")
		}
		return v, nil
	}
	switch op {
	case "ALL", "ANSWERED", "DELETED", "DRAFT", "FLAGGED", "NEW", "OLD", "RECENT", "SEEN",
		"UNANSWERED", "UNDELETED", "UNDRAFT", "UNFLAGGED", "UNSEEN":
		return k, nil
	case "BCC", "CC", "FROM", "TO", "SUBJECT", "BODY", "TEXT":
		v, err := text()
		k.value = v
		return k, err
	case "KEYWORD", "UNKEYWORD":
		if err := s.r.SP(); err != nil {
			return nil, err
		}
		f, err := s.parseFlag()
		k.flag = f
		return k, err
	case "HEADER":
		f, err := text()
		if err != nil {
			return nil, err
		}
		v, err := text()
		k.field, k.value = f, v
		return k, err
	case "BEFORE", "ON", "SINCE", "SENTBEFORE", "SENTON", "SENTSINCE":
		v, err := str()
		if err != nil {
			return nil, err
		}
		k.date, err = parseDate(v)
		return k, err
	case "LARGER", "SMALLER":
		if err := s.r.SP(); err != nil {
			return nil, err
		}
		n, err := s.r.Number64()
		k.n = int64(n)
		return k, err
	case "OLDER", "YOUNGER":
		// RFC 5032: an interval in seconds before the server's now, taken
		// once per command as Dovecot does, so that every message of one
		// search is measured against the same instant.
		if err := s.r.SP(); err != nil {
			return nil, err
		}
		n, err := s.r.Number()
		if err == nil && n == 0 {
			err = bad("", op+" needs a non-zero interval")
		}
		k.date = time.Now().Add(-time.Duration(n) * time.Second)
		return k, err
	case "UID":
		if err := s.r.SP(); err != nil {
			return nil, err
		}
		set, err := s.r.SeqSet()
		k.set = set
		return k, err
	case "MODSEQ":
		return k, s.parseSearchModSeq(k)
	case "NOT":
		if err := s.r.Enter(); err != nil {
			return nil, err
		}
		defer s.r.Leave()
		if err := s.r.SP(); err != nil {
			return nil, err
		}
		kk, err := s.parseKey()
		k.kids = []*searchKey{kk}
		return k, err
	case "OR":
		if err := s.r.Enter(); err != nil {
			return nil, err
		}
		defer s.r.Leave()
		for range 2 {
			if err := s.r.SP(); err != nil {
				return nil, err
			}
			kk, err := s.parseKey()
			if err != nil {
				return nil, err
			}
			k.kids = append(k.kids, kk)
		}
		return k, nil
	}
	return nil, bad("", "Unknown search key "+sanitize(word))
}

func cmdSearch(s *session, tag string, uid bool) error {
	s.searchCS = ""
	a, err := s.parseSearch()
	if err != nil {
		return err
	}
	hitSeqs, hitUIDs, err := s.searchHits(a.root)
	if err != nil {
		return err
	}
	if usesModSeq(a.root) {
		s.enableCondstore()
		a.modseq = s.searchModSeq(a, hitUIDs)
	}
	nums := hitSeqs
	if uid {
		nums = hitUIDs
	}
	if a.retSave {
		switch {
		case a.retMin && !a.retMax && len(hitUIDs) > 0:
			s.searchRes = hitUIDs[:1:1]
		case a.retMax && !a.retMin && len(hitUIDs) > 0:
			s.searchRes = hitUIDs[len(hitUIDs)-1:]
		case a.retMin && a.retMax && len(hitUIDs) > 0:
			s.searchRes = []uint32{hitUIDs[0], hitUIDs[len(hitUIDs)-1]}
		default:
			s.searchRes = slices.Clone(hitUIDs)
		}
	}
	if !a.esearch {
		s.w.Raw("* SEARCH")
		for _, n := range nums {
			s.w.SP()
			s.w.Number(uint64(n))
		}
		if a.modseq != 0 {
			s.w.Raw(" (MODSEQ " + strconv.FormatUint(a.modseq, 10) + ")")
		}
		s.w.CRLF()
		return s.ok(tag, "", "Search completed", uid)
	}
	if a.retSave && !a.retMin && !a.retMax && !a.retCount && !a.retAll && !a.retPartial {
		return s.ok(tag, "", "Search completed", uid)
	}
	s.writeESearch(tag, uid, a, nums, uidSetString)
	s.saveContext(tag, uid, a, a.root, nil, hitUIDs)
	return s.ok(tag, "", "Search completed", uid)
}

// parseReturn reads RETURN's option list (RFC 4731; SAVE from RFC 5182
// where allowed) into a; RETURN () means ALL.
func (s *session) parseReturn(a *searchArgs, saveOK bool) error {
	a.esearch = true
	return s.r.List(true, func() error {
		o, err := s.r.Atom()
		if err != nil {
			return err
		}
		switch strings.ToUpper(o) {
		case "MIN":
			a.retMin = true
		case "MAX":
			a.retMax = true
		case "ALL":
			a.retAll = true
		case "COUNT":
			a.retCount = true
		case "UPDATE":
			a.retUpdate = true
		case "PARTIAL":
			return s.parsePartial(a)
		case "SAVE":
			if !saveOK {
				return bad("", "SAVE is not offered here")
			}
			a.retSave = true
		default:
			return bad("", "Unknown return option "+sanitize(o))
		}
		return nil
	})
}

// writeESearch writes the ESEARCH response of SEARCH or SORT RETURN:
// nums in the command's order, ALL written by set.
func (s *session) writeESearch(tag string, uid bool, a *searchArgs, nums []uint32, set func([]uint32) string) {
	s.w.Raw(`* ESEARCH (TAG "` + tag + `")`)
	if uid {
		s.w.Raw(" UID")
	}
	if len(nums) > 0 {
		if a.retMin {
			s.w.Raw(" MIN " + strconv.FormatUint(uint64(nums[0]), 10))
		}
		if a.retMax {
			s.w.Raw(" MAX " + strconv.FormatUint(uint64(nums[len(nums)-1]), 10))
		}
		if a.retAll {
			s.w.Raw(" ALL " + set(nums))
		}
	}
	if a.retCount {
		s.w.Raw(" COUNT " + strconv.Itoa(len(nums)))
	}
	if a.retPartial {
		s.writePartial(a, nums, set)
	}
	if a.modseq != 0 {
		s.w.Raw(" MODSEQ " + strconv.FormatUint(a.modseq, 10))
	}
	s.w.CRLF()
}

// charsetSearch reads " charset search-keys" of SORT and THREAD, where
// no RETURN may follow the charset.
func (s *session) charsetSearch() (*searchKey, error) {
	if err := s.r.SP(); err != nil {
		return nil, err
	}
	s.searchCS = ""
	if err := s.readSearchCharset(); err != nil {
		return nil, err
	}
	a, err := s.parseSearch()
	if err != nil {
		return nil, err
	}
	if a.esearch {
		return nil, bad("", "RETURN is not allowed after the charset")
	}
	return a.root, nil
}

// searchHits runs a SEARCH program over the selected mailbox: the
// sequence numbers and UIDs of the messages it matches, ascending.
func (s *session) searchHits(root *searchKey) (hitSeqs, hitUIDs []uint32, err error) {
	sel := s.sel
	uids := sel.view
	fl, ok := sel.mb.FlagsOf(uids)
	defer s.trimBuffers()
	for i, u := range uids {
		if !ok[i] {
			continue
		}
		m := &searchMsg{s: s, seq: uint32(i + 1), uid: u, flags: fl[i]}
		hit := m.match(root)
		if m.err != nil {
			return nil, nil, m.err
		}
		if hit {
			hitSeqs = append(hitSeqs, uint32(i+1))
			hitUIDs = append(hitUIDs, u)
		}
	}
	return hitSeqs, hitUIDs, nil
}

// searchMsg evaluates keys on one message, reading what it needs once:
// flags and UIDs are in memory, sizes and dates in the cache, the header
// only for header keys, the body only for BODY and TEXT.
type searchMsg struct {
	s     *session
	seq   uint32
	uid   uint32
	flags mailstore.Flags

	env    *mailstore.Envelope
	header *textproto.Header
	raw    []byte
	root   *mpart // raw's MIME structure, for BODY and TEXT
	// scanned is the structure of a large message, found in its file
	// and searched from it (raw stays nil): BODY and TEXT.
	scanned *mpart
	failed  bool
	// err is a failure the command answers (no memory for a large
	// message in time), where a message that cannot be read is only
	// not matched.
	err error
}

func (m *searchMsg) match(k *searchKey) bool {
	sel := m.s.sel
	switch k.op {
	case "AND":
		for _, c := range k.kids {
			if !m.match(c) {
				return false
			}
		}
		return true
	case "OR":
		return m.match(k.kids[0]) || m.match(k.kids[1])
	case "NOT":
		return !m.match(k.kids[0])
	case "ALL":
		return true
	case "SEQ":
		if k.set.Saved {
			return slices.Contains(m.s.searchRes, m.uid)
		}
		return inSet(k.set, m.seq, uint32(len(sel.view)))
	case "UID":
		if k.set.Saved {
			return slices.Contains(m.s.searchRes, m.uid)
		}
		return inSet(k.set, m.uid, sel.view[len(sel.view)-1])
	case "ANSWERED":
		return m.flags&mailstore.FlagAnswered != 0
	case "DELETED":
		return m.flags&mailstore.FlagDeleted != 0
	case "DRAFT":
		return m.flags&mailstore.FlagDraft != 0
	case "FLAGGED":
		return m.flags&mailstore.FlagFlagged != 0
	case "SEEN":
		return m.flags&mailstore.FlagSeen != 0
	case "UNANSWERED":
		return m.flags&mailstore.FlagAnswered == 0
	case "UNDELETED":
		return m.flags&mailstore.FlagDeleted == 0
	case "UNDRAFT":
		return m.flags&mailstore.FlagDraft == 0
	case "UNFLAGGED":
		return m.flags&mailstore.FlagFlagged == 0
	case "UNSEEN":
		return m.flags&mailstore.FlagSeen == 0
	case "MODSEQ":
		return sel.mb.ModSeq(m.uid) >= k.mod
	case "RECENT":
		return m.s.isRecent(m.uid)
	case "OLD":
		return !m.s.isRecent(m.uid)
	case "NEW":
		return m.s.isRecent(m.uid) && m.flags&mailstore.FlagSeen == 0
	case "KEYWORD", "UNKEYWORD":
		has := false
		if k.flag == `\Recent` {
			has = m.s.isRecent(m.uid)
		} else {
			for _, n := range sel.mb.FlagNames(m.flags) {
				if strings.EqualFold(n, k.flag) {
					has = true
				}
			}
		}
		return has == (k.op == "KEYWORD")
	case "LARGER", "SMALLER", "BEFORE", "ON", "SINCE", "OLDER", "YOUNGER":
		size, date, err := sel.mb.Meta(m.uid)
		if err != nil {
			return false
		}
		switch k.op {
		case "LARGER":
			return size > k.n
		case "SMALLER":
			return size < k.n
		case "OLDER": // to the second, not the day (RFC 5032 §2)
			return !date.After(k.date)
		case "YOUNGER":
			return !date.Before(k.date)
		}
		return matchDate(date, k.op, k.date)
	case "SENTBEFORE", "SENTON", "SENTSINCE":
		env := m.envelope()
		if env == nil || env.Date.IsZero() {
			// RFC 9051: no usable Date: the internal date stands in.
			_, date, err := sel.mb.Meta(m.uid)
			if err != nil {
				return false
			}
			return matchDate(date, k.op[4:], k.date)
		}
		return matchDate(env.Date, k.op[4:], k.date)
	case "FROM", "TO", "CC", "BCC":
		return m.matchAddress(k.op, k.value)
	case "SUBJECT":
		return m.matchHeader("Subject", k.value)
	case "HEADER":
		return m.matchHeader(k.field, k.value)
	case "BODY":
		return m.matchText(k, false) // searchtext.go
	case "TEXT":
		return m.matchText(k, true)
	}
	return false
}

func inSet(set wire.NumSet, n, last uint32) bool {
	if last == 0 {
		return false
	}
	for _, r := range set.Ranges {
		lo, hi := rangeBounds(r.Lo, r.Hi, last)
		if n >= lo && n <= hi {
			return true
		}
	}
	return false
}

// matchDate compares dates only, ignoring time and zone (RFC 9051 §6.4.4).
func matchDate(t time.Time, op string, d time.Time) bool {
	day := time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
	ref := time.Date(d.Year(), d.Month(), d.Day(), 0, 0, 0, 0, time.UTC)
	switch op {
	case "BEFORE":
		return day.Before(ref)
	case "ON":
		return day.Equal(ref)
	case "SINCE":
		return !day.Before(ref)
	}
	return false
}

func (m *searchMsg) envelope() *mailstore.Envelope {
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

// matchAddress matches the field's addresses written back in one
// canonical form, as Dovecot 2.3 does (message_address_write, then MIME
// words decoded): `name <local@domain>` or `<local@domain>`, a name or a
// local part that is not all atext quoted, groups as `group: a, b;`, the
// addresses joined by ", ". So `"x@y"@example.net` and `"Smith, Ann"`
// match what a client sees in the header, and `x@y@example.net` does not.
// An empty value asks whether the field exists.
func (m *searchMsg) matchAddress(field, value string) bool {
	env := m.envelope()
	if env == nil {
		return false
	}
	var l []mailstore.Address
	switch field {
	case "FROM":
		l = env.From
	case "TO":
		l = env.To
	case "CC":
		l = env.Cc
	case "BCC":
		l = env.Bcc
	}
	if len(l) == 0 {
		// No address parsed: the field may still be there (empty, or
		// beyond parsing); the header itself decides.
		return m.matchRawHeader(field, value)
	}
	if value == "" {
		return true
	}
	return containsFold(decodeWords(writeAddresses(l)), value)
}

// writeAddresses writes an envelope's address list the way Dovecot's
// message_address_write does, for SEARCH to match on.
func writeAddresses(l []mailstore.Address) string {
	var b strings.Builder
	inGroup := false
	for i, a := range l {
		if a.Host == "" {
			if !inGroup { // a group's start: its name is the mailbox
				if i > 0 {
					b.WriteString(", ")
				}
				writePhrase(&b, a.Mailbox, true)
				b.WriteString(":")
				inGroup = true
				continue
			}
			b.WriteString(";") // the group's end
			inGroup = false
			continue
		}
		switch {
		case i > 0 && l[i-1].Host == "" && inGroup:
			b.WriteString(" ") // the group's first member
		case i > 0:
			b.WriteString(", ")
		}
		adl, name := splitADL(a.Name)
		if name != "" {
			writePhrase(&b, name, true)
			b.WriteByte(' ')
		}
		b.WriteByte('<')
		if adl != "" {
			b.WriteString(adl)
			b.WriteByte(':')
		}
		writePhrase(&b, a.Mailbox, false)
		b.WriteByte('@')
		b.WriteString(a.Host)
		b.WriteByte('>')
	}
	return b.String()
}

// writePhrase writes s as is when it is all atext (dots allowed in a
// local part, not in a name), or holds encoded words (which a quoted
// string would hide from decoding); quoted otherwise.
func writePhrase(b *strings.Builder, s string, name bool) {
	plain := s != "" || !name
	if name && strings.Contains(s, "=?") {
		b.WriteString(s)
		return
	}
	for i := 0; i < len(s) && plain; i++ {
		c := s[i]
		plain = c >= 0x80 || envaddr.IsAtext(c) || c == '.' && !name
	}
	if plain {
		b.WriteString(s)
		return
	}
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		if s[i] == '"' || s[i] == '\\' {
			b.WriteByte('\\')
		}
		b.WriteByte(s[i])
	}
	b.WriteByte('"')
}

// matchHeader is a case-insensitive substring match on the decoded field
// (RFC 9051 §6.4.4); an empty value matches every message having the
// field. Address fields and a plain Subject are answered from the cached
// envelope, so SEARCH FROM does not reopen every file.
func (m *searchMsg) matchHeader(key, value string) bool {
	switch strings.ToUpper(key) {
	case "FROM", "TO", "CC", "BCC":
		return m.matchAddress(strings.ToUpper(key), value)
	case "SUBJECT":
		if env := m.envelope(); env != nil && env.Subject != "" && !strings.Contains(env.Subject, "=?") {
			return value == "" || containsFold(env.Subject, value)
		}
	}
	return m.matchRawHeader(key, value)
}

// matchHeader is a case-insensitive substring match on the decoded field
// (RFC 9051 §6.4.4); an empty value matches every message having the
// field.
func (m *searchMsg) matchRawHeader(key, value string) bool {
	h := m.loadHeader()
	if h == nil {
		return false
	}
	fields := h.FieldsByKey(key)
	if value == "" {
		return fields.Len() > 0
	}
	for fields.Next() {
		if containsFold(decodeWords(fields.Value()), value) || containsFold(fields.Value(), value) {
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

// searchCharsets are the charsets a BADCHARSET response lists (RFC 9051
// §6.4.4 and §7.1: the list is optional; if given, it lists the charsets
// supported): the ones mail is commonly written in, each of which
// validCharset takes (TestBadCharsetListsSupported). The decoder takes
// many more (every IANA name and alias it knows, as Dovecot takes what
// iconv knows, and lists none): listing them all would make a response
// of kilobytes that no client needs to pick a charset from.
const searchCharsets = "UTF-8 US-ASCII " +
	"ISO-8859-1 ISO-8859-2 ISO-8859-3 ISO-8859-4 ISO-8859-5 ISO-8859-6 ISO-8859-7 " +
	"ISO-8859-8 ISO-8859-9 ISO-8859-10 ISO-8859-13 ISO-8859-14 ISO-8859-15 ISO-8859-16 " +
	"windows-1250 windows-1251 windows-1252 windows-1253 windows-1254 windows-1255 " +
	"windows-1256 windows-1257 windows-1258 KOI8-R KOI8-U " +
	"ISO-2022-JP Shift_JIS EUC-JP EUC-KR GB2312 GBK GB18030 Big5"

// badCharset is the response code refusing a charset no decoder knows.
const badCharset = "BADCHARSET (" + searchCharsets + ")"

// readSearchCharset reads the charset of a SEARCH, SORT or THREAD into
// s.searchCS. UTF-8 and US-ASCII are read as UTF-8; any other charset a
// decoder knows (ISO-8859-1, windows-1252, KOI8-R…, as Dovecot takes
// what iconv knows) has its strings converted to UTF-8 as they are read;
// an unknown one is BADCHARSET, with the list of searchCharsets.
func (s *session) readSearchCharset() error {
	cs, err := s.r.AString()
	if err != nil {
		return err
	}
	switch {
	case isUTF8Charset(cs) && cs != "":
		s.searchCS = ""
	case validCharset(cs):
		s.searchCS = cs
	default:
		return no(badCharset, "Unsupported charset")
	}
	return nil
}

// validCharset says whether a decoder knows cs.
func validCharset(cs string) bool {
	if len(cs) > 64 {
		return false
	}
	_, err := charset.Reader(cs, strings.NewReader(""))
	return err == nil
}

// toUTF8 converts a search string from the charset cs to UTF-8.
func toUTF8(cs, v string) (string, error) {
	r, err := charset.Reader(cs, strings.NewReader(v))
	if err != nil {
		return "", no(badCharset, "Unsupported charset")
	}
	out, err := io.ReadAll(io.LimitReader(r, 4*int64(len(v))+4))
	if err != nil || !utf8.Valid(out) {
		return "", bad("", "Invalid search key: the string is not "+sanitize(cs))
	}
	return string(out), nil
}
