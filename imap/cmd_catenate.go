package imap

import (
	"errors"
	"io"
	"io/fs"
	"net/url"
	"strconv"
	"strings"
	"time"

	"courriel/imap/mailstore"
	"courriel/imap/wire"
)

// CATENATE (RFC 4469): an APPEND message built from TEXT literals and
// IMAP URLs (RFC 5092) naming messages or parts of messages in the
// user's own mailboxes. The parts are gathered in a spool file (spool.go),
// bounded by the APPEND limit: in memory, ten sessions held 595 MiB
// (QA), and URL parts twice the limit each.

// maxCatParts bounds the parts of one CATENATE.
const maxCatParts = 1000

// appendCatenate reads "CATENATE (" cat-part *(SP cat-part) ")" of one
// APPEND message (the word itself still unread) and adds the message.
func (s *session) appendCatenate(name string, mb **mailstore.Mailbox, app **mailstore.Appender, total *int64, flags []string, date time.Time) error {
	word, err := s.r.Atom()
	if err != nil {
		return err
	}
	if !strings.EqualFold(word, "CATENATE") {
		return bad("", "Expected a literal or CATENATE")
	}
	if err := s.r.SP(); err != nil {
		return err
	}
	// The target first: a missing mailbox is TRYCREATE whatever the parts.
	if err := s.appendTarget(name, mb, app, flags); err != nil {
		return err
	}
	limit := int64(s.srv.opts.AppendLimit)
	tooBig := no("TOOBIG", "Message too large (APPENDLIMIT "+strconv.FormatInt(limit, 10)+")")
	// The message is built in a spool file, part after part, then goes
	// to the Appender like any other message, so a MULTIAPPEND stays all
	// or nothing.
	f, err := s.spool()
	if err != nil {
		return s.storeErr("append", err, "")
	}
	defer f.Close()
	var n int64 // bytes spooled
	parts := 0
	src := &catSources{budget: catReadFactor * limit}
	err = s.r.List(false, func() error {
		if parts++; parts > maxCatParts {
			return bad("", "Too many CATENATE parts")
		}
		kind, err := s.r.Atom()
		if err != nil {
			return err
		}
		if err := s.r.SP(); err != nil {
			return err
		}
		switch strings.ToUpper(kind) {
		case "TEXT":
			left := limit - n
			if left <= 0 {
				return tooBig
			}
			_, err := s.r.LiteralHeaderCheck(left, false, nil)
			if err != nil {
				var le *wire.LimitError
				if errors.As(err, &le) && le.TooBig {
					le.Msg = tooBig.text
				}
				return err
			}
			c, err := io.Copy(f, s.r)
			n += c
			if err != nil {
				if isConnErr(err) {
					return err
				}
				_ = s.r.SkipLiteral()
				return s.storeErr("append", err, "")
			}
			return nil
		case "URL":
			raw, err := s.r.AString()
			if err != nil {
				return err
			}
			c, err := s.urlPart(raw, src, f, limit-n, tooBig)
			n += c
			return err
		}
		return bad("", "Expected TEXT or URL in CATENATE")
	})
	if err != nil {
		return err
	}
	if n == 0 {
		return no("", "Message is empty")
	}
	if err := s.checkQuota(*total+n, int64((*app).Len())+1); err != nil {
		return err
	}
	*total += n
	if err := (*app).Add(io.NewSectionReader(f, 0, n), toFlags(flags), date); err != nil {
		return s.storeErr("append", err, "")
	}
	return nil
}

// catReadFactor bounds the bytes of source messages one CATENATE reads,
// in APPEND limits: a URL may name a small section of a large message,
// and a thousand of them must not cost a thousand reads of it.
const catReadFactor = 4

// catSources is the last source message one CATENATE read, kept for the
// URLs naming it again (parts of one message, most often), and what is
// left of its read budget. A small message is kept in memory (raw, CRLF
// lines); a larger one as its scanned structure (root), its parts copied
// from its file: memory stays within one small message.
type catSources struct {
	last   catKey
	raw    []byte
	root   *mpart
	size   int64 // root's message
	budget int64
}

type catKey struct {
	mb  *mailstore.Mailbox
	uid uint32
}

// imapURL is the part of an IMAP URL (RFC 5092) CATENATE can use: a
// message, or a section of it, or a range of either, in a mailbox.
type imapURL struct {
	mailbox     string // "" for a relative URL (the selected mailbox)
	uidValidity uint32
	uid         uint32
	section     fetchItem
	partial     bool
	offset      int64
	size        int64 // -1: to the end
}

// badURL is CATENATE's refusal of a URL (RFC 4469 §6: BADURL).
func badURL(raw, why string) error {
	return no("BADURL "+urlRespText(raw), why)
}

// urlRespText keeps a URL fit for a response code: no "]", no controls,
// bounded.
func urlRespText(raw string) string {
	if len(raw) > 512 {
		raw = raw[:512]
	}
	return strings.Map(func(r rune) rune {
		if r < 0x21 || r > 0x7e || r == ']' {
			return '?'
		}
		return r
	}, raw)
}

// parseIMAPURL reads an absolute ("imap://user@host/box/;UID=1") or
// relative ("/box;UIDVALIDITY=9/;UID=1/;SECTION=1", ";UID=1") IMAP URL
// naming one message. login is the session's user: an absolute URL
// naming another user, or any URLAUTH or AUTH, is refused.
func parseIMAPURL(raw, login string) (*imapURL, error) {
	u := &imapURL{size: -1}
	rest := raw
	if len(rest) >= 7 && strings.EqualFold(rest[:7], "imap://") {
		rest = rest[7:]
		slash := strings.IndexByte(rest, '/')
		if slash < 0 {
			return nil, errors.New("no mailbox in the URL")
		}
		auth := rest[:slash]
		rest = rest[slash:]
		if at := strings.LastIndexByte(auth, '@'); at >= 0 {
			user := auth[:at]
			if i := strings.IndexByte(user, ';'); i >= 0 {
				return nil, errors.New("AUTH in URLs is not supported")
			}
			user, err := url.PathUnescape(user)
			if err != nil {
				return nil, errors.New("bad user in the URL")
			}
			local, _, _ := strings.Cut(user, "@")
			if !strings.EqualFold(user, login) && !strings.EqualFold(local, login) {
				return nil, errors.New("the URL names another user's mailbox")
			}
		}
	}
	// Segments: "/box;UIDVALIDITY=n", "/;UID=n", "/;SECTION=s", "/;PARTIAL=o.l".
	segs := strings.Split(rest, "/")
	if segs[0] != "" {
		// Relative to the selected mailbox: ";UID=1/;SECTION=…".
		segs = append([]string{"", ""}, segs...)
	}
	segs = segs[1:]
	if len(segs) < 2 {
		return nil, errors.New("the URL names no message")
	}
	box := segs[0]
	if i := strings.IndexByte(box, ';'); i >= 0 {
		param := box[i+1:]
		box = box[:i]
		k, v, _ := strings.Cut(param, "=")
		if !strings.EqualFold(k, "UIDVALIDITY") {
			return nil, errors.New("unknown mailbox parameter in the URL")
		}
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil || n == 0 {
			return nil, errors.New("bad UIDVALIDITY in the URL")
		}
		u.uidValidity = uint32(n)
	}
	name, err := url.PathUnescape(box)
	if err != nil {
		return nil, errors.New("bad mailbox in the URL")
	}
	u.mailbox = name
	seen := map[string]bool{}
	for _, seg := range segs[1:] {
		if !strings.HasPrefix(seg, ";") {
			return nil, errors.New("unexpected path in the URL")
		}
		k, v, ok := strings.Cut(seg[1:], "=")
		k = strings.ToUpper(k)
		if !ok || seen[k] {
			return nil, errors.New("bad parameter in the URL")
		}
		seen[k] = true
		v, err := url.PathUnescape(v)
		if err != nil {
			return nil, errors.New("bad escape in the URL")
		}
		switch k {
		case "UID":
			n, err := strconv.ParseUint(v, 10, 32)
			if err != nil || n == 0 {
				return nil, errors.New("bad UID in the URL")
			}
			u.uid = uint32(n)
		case "SECTION":
			if !seen["UID"] {
				return nil, errors.New("SECTION before UID in the URL")
			}
			it, err := parseURLSection(v)
			if err != nil {
				return nil, err
			}
			u.section = it
		case "PARTIAL":
			if !seen["UID"] {
				return nil, errors.New("PARTIAL before UID in the URL")
			}
			o, l, hasLen := strings.Cut(v, ".")
			off, err := strconv.ParseInt(o, 10, 64)
			if err != nil || off < 0 {
				return nil, errors.New("bad PARTIAL in the URL")
			}
			u.partial, u.offset = true, off
			if hasLen {
				n, err := strconv.ParseInt(l, 10, 64)
				if err != nil || n <= 0 {
					return nil, errors.New("bad PARTIAL in the URL")
				}
				u.size = n
			}
		case "URLAUTH", "EXPIRE":
			return nil, errors.New("URLAUTH is not supported")
		default:
			return nil, errors.New("unknown parameter in the URL")
		}
	}
	if u.uid == 0 {
		return nil, errors.New("the URL names no message")
	}
	return u, nil
}

// parseURLSection reads a URL's section: part numbers, then HEADER, TEXT,
// MIME or HEADER.FIELDS[.NOT] (fields), as in FETCH BODY[...].
func parseURLSection(v string) (fetchItem, error) {
	var it fetchItem
	rest := v
	for rest != "" && rest[0] >= '0' && rest[0] <= '9' {
		end := strings.IndexByte(rest, '.')
		numStr := rest
		if end >= 0 {
			numStr = rest[:end]
		}
		n, err := strconv.ParseUint(numStr, 10, 31)
		if err != nil || n == 0 {
			return it, errors.New("bad section part in the URL")
		}
		if len(it.path) >= maxBodyDepth {
			return it, errors.New("section too deep in the URL")
		}
		it.path = append(it.path, int(n))
		if end < 0 {
			rest = ""
			break
		}
		rest = rest[end+1:]
		if rest == "" {
			return it, errors.New("bad section in the URL")
		}
	}
	spec, args, _ := strings.Cut(rest, " ")
	switch strings.ToUpper(spec) {
	case "":
	case "HEADER":
		it.sec = secHeader
	case "TEXT":
		it.sec = secText
	case "MIME":
		if len(it.path) == 0 {
			return it, errors.New("MIME needs a part number")
		}
		it.sec = secMIME
	case "HEADER.FIELDS", "HEADER.FIELDS.NOT":
		it.sec = secHeader
		it.not = strings.EqualFold(spec, "HEADER.FIELDS.NOT")
		args = strings.TrimSpace(args)
		if !strings.HasPrefix(args, "(") || !strings.HasSuffix(args, ")") {
			return it, errors.New("bad header list in the URL")
		}
		for _, f := range strings.Fields(args[1 : len(args)-1]) {
			it.fields = append(it.fields, strings.ToUpper(strings.Trim(f, `"`)))
		}
		if len(it.fields) == 0 {
			return it, errors.New("empty header list in the URL")
		}
	default:
		return it, errors.New("unknown section in the URL")
	}
	return it, nil
}

// urlPart resolves a CATENATE URL and writes its bytes (CRLF lines, as
// FETCH serves them) to w, at most left of them (else tooBig); it
// returns how many it wrote. Every failure to resolve is BADURL: a URL
// outside the user's own mailboxes, a UIDVALIDITY that changed, a
// message that is gone.
func (s *session) urlPart(raw string, src *catSources, w io.Writer, left int64, tooBig error) (int64, error) {
	u, err := parseIMAPURL(raw, s.user.Login)
	if err != nil {
		return 0, badURL(raw, "Invalid URL: "+err.Error())
	}
	var mb *mailstore.Mailbox
	if u.mailbox == "" {
		if s.sel == nil {
			return 0, badURL(raw, "A relative URL needs a selected mailbox")
		}
		mb = s.sel.mb
	} else {
		name := u.mailbox
		if mailstore.IsInbox(name) {
			name = mailstore.InboxName
		}
		// The registry opens folders of this user's store only: a name
		// cannot leave it (FolderDir refuses "..", "/" and the like).
		m, err := s.srv.reg.Open(s.store, name)
		if err != nil {
			if errors.Is(err, mailstore.ErrNoFolder) || errors.Is(err, mailstore.ErrBadName) {
				return 0, badURL(raw, "No such mailbox")
			}
			return 0, s.storeErr("append", err, "")
		}
		defer m.Release()
		if err := m.Sync(false); err != nil {
			return 0, s.storeErr("append", err, "")
		}
		mb = m
	}
	if u.uidValidity != 0 && u.uidValidity != mb.UIDValidity() {
		return 0, badURL(raw, "UIDVALIDITY has changed")
	}
	if err := s.catSource(raw, mb, u.uid, src); err != nil {
		return 0, err
	}
	it := u.section
	// The range of the section that the URL's PARTIAL keeps.
	cut := func(n int64) (skip, take int64) {
		if !u.partial {
			return 0, n
		}
		if u.offset >= n {
			return n, 0
		}
		end := n
		if u.size >= 0 && u.offset+u.size < end {
			end = u.offset + u.size
		}
		return u.offset, end - u.offset
	}
	var part []byte
	if src.raw != nil {
		part = extractBody(src.raw, it.path, it.sec, it.fields, it.not)
	} else {
		sp, filter := scannedSection(src.root, src.size, it.path, it.sec, it.fields, it.not)
		if filter {
			h, err := readSpan(mb, u.uid, sp)
			if err != nil {
				return 0, s.catReadErr(raw, err)
			}
			part = filterHeader(h, it.fields, it.not)
		} else {
			sp.skip, sp.take = cut(sp.n)
			if sp.take > left {
				return 0, tooBig
			}
			return s.copySpan(raw, mb, u.uid, sp, w)
		}
	}
	skip, take := cut(int64(len(part)))
	if take > left {
		return 0, tooBig
	}
	c, err := w.Write(part[skip : skip+take])
	if err != nil {
		return int64(c), s.storeErr("append", err, "")
	}
	return int64(c), nil
}

// copySpan copies sp of the message uid of mb to w.
func (s *session) copySpan(raw string, mb *mailstore.Mailbox, uid uint32, sp formSpan, w io.Writer) (int64, error) {
	f, _, err := mb.Open(uid)
	if err != nil {
		return 0, s.catReadErr(raw, err)
	}
	defer f.Close()
	r, err := spanReader(f, sp)
	if err != nil {
		return 0, s.storeErr("append", err, "")
	}
	c, err := io.Copy(w, r)
	if err == nil && c != sp.take {
		err = io.ErrUnexpectedEOF // the file changed under us
	}
	if err != nil {
		return c, s.storeErr("append", err, "")
	}
	return c, nil
}

// catReadErr answers a source message that cannot be read.
func (s *session) catReadErr(raw string, err error) error {
	if errors.Is(err, fs.ErrNotExist) {
		return badURL(raw, "No such message")
	}
	return s.storeErr("append", err, "")
}

// catSource makes a URL's message src's last, once per CATENATE, within
// the command's read budget: read into memory (CRLF lines) when small,
// else scanned for its structure.
func (s *session) catSource(raw string, mb *mailstore.Mailbox, uid uint32, src *catSources) error {
	key := catKey{mb, uid}
	if (src.raw != nil || src.root != nil) && src.last == key {
		return nil
	}
	src.raw, src.root = nil, nil
	limit := int64(s.srv.opts.AppendLimit)
	size, _, err := mb.Meta(uid)
	if err != nil {
		return badURL(raw, "No such message")
	}
	if size > limit {
		return no("TOOBIG", "Message too large (APPENDLIMIT "+strconv.FormatInt(limit, 10)+")")
	}
	if size > src.budget {
		return no("TOOBIG", "The URLs name too much data")
	}
	src.budget -= size
	if size > maxKeptBuf {
		root, n, err := scanMessage(mb, uid)
		if err == nil {
			src.last, src.root, src.size = key, root, n
			return nil
		}
		if !errors.Is(err, errScanBounds) {
			return s.catReadErr(raw, err)
		}
		// The file and its CRLF form.
		if err := s.holdMem(2 * size); err != nil {
			return err
		}
	}
	b, _, err := mb.ReadMessage(uid, nil, 0)
	if err != nil {
		return s.catReadErr(raw, err)
	}
	if crlf, changed := appendCRLF(nil, b); changed {
		b = crlf
	}
	src.last, src.raw = key, b
	return nil
}
