package imap

import (
	"bytes"
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
// user's own mailboxes. The parts are gathered in memory, bounded by the
// APPEND limit, then go to the Appender like any other message, so a
// MULTIAPPEND stays all or nothing.

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
	if *mb == nil {
		m, err := s.srv.reg.Open(s.store, name)
		if err != nil {
			return s.storeErr("append", err, "TRYCREATE")
		}
		*mb, *app = m, m.NewAppender()
	}
	if err := checkKeywords(flags, *mb); err != nil {
		return err
	}
	limit := int64(s.srv.opts.AppendLimit)
	var msg []byte
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
			left := limit - int64(len(msg))
			if left <= 0 {
				return no("TOOBIG", "Message too large (APPENDLIMIT "+strconv.FormatInt(limit, 10)+")")
			}
			li, err := s.r.LiteralHeaderCheck(left, false, nil)
			if err != nil {
				var le *wire.LimitError
				if errors.As(err, &le) && le.TooBig {
					le.Msg = "Message too large (APPENDLIMIT " + strconv.FormatInt(limit, 10) + ")"
				}
				return err
			}
			start := len(msg)
			msg = append(msg, make([]byte, li.Size)...)
			_, err = io.ReadFull(s.r, msg[start:])
			return err
		case "URL":
			raw, err := s.r.AString()
			if err != nil {
				return err
			}
			part, err := s.urlPart(raw, src)
			if err != nil {
				return err
			}
			if int64(len(msg)+len(part)) > limit {
				return no("TOOBIG", "Message too large (APPENDLIMIT "+strconv.FormatInt(limit, 10)+")")
			}
			msg = append(msg, part...)
			return nil
		}
		return bad("", "Expected TEXT or URL in CATENATE")
	})
	if err != nil {
		return err
	}
	if len(msg) == 0 {
		return no("", "Message is empty")
	}
	if err := s.checkQuota(*total+int64(len(msg)), int64((*app).Len())+1); err != nil {
		return err
	}
	*total += int64(len(msg))
	if err := (*app).Add(bytes.NewReader(msg), toFlags(flags), date); err != nil {
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
// left of its read budget. Only one is kept: memory stays within two
// APPEND limits, the message built and one source.
type catSources struct {
	last   catKey
	raw    []byte
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

// urlPart resolves a CATENATE URL to its bytes (CRLF lines, as FETCH
// serves them). Every failure is BADURL: a URL outside the user's own
// mailboxes, a UIDVALIDITY that changed, a message that is gone.
func (s *session) urlPart(raw string, src *catSources) ([]byte, error) {
	u, err := parseIMAPURL(raw, s.user.Login)
	if err != nil {
		return nil, badURL(raw, "Invalid URL: "+err.Error())
	}
	var mb *mailstore.Mailbox
	if u.mailbox == "" {
		if s.sel == nil {
			return nil, badURL(raw, "A relative URL needs a selected mailbox")
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
				return nil, badURL(raw, "No such mailbox")
			}
			return nil, s.storeErr("append", err, "")
		}
		defer m.Release()
		if err := m.Sync(false); err != nil {
			return nil, s.storeErr("append", err, "")
		}
		mb = m
	}
	if u.uidValidity != 0 && u.uidValidity != mb.UIDValidity() {
		return nil, badURL(raw, "UIDVALIDITY has changed")
	}
	b, err := s.catSource(raw, mb, u.uid, src)
	if err != nil {
		return nil, err
	}
	it := u.section
	part := extractBody(b, it.path, it.sec, it.fields, it.not)
	if u.partial {
		if u.offset >= int64(len(part)) {
			return nil, nil
		}
		end := int64(len(part))
		if u.size >= 0 && u.offset+u.size < end {
			end = u.offset + u.size
		}
		part = part[u.offset:end]
	}
	return part, nil
}

// catSource reads a URL's message (CRLF lines), once per CATENATE, within
// the command's read budget.
func (s *session) catSource(raw string, mb *mailstore.Mailbox, uid uint32, src *catSources) ([]byte, error) {
	key := catKey{mb, uid}
	if src.raw != nil && src.last == key {
		return src.raw, nil
	}
	src.raw = nil
	limit := int64(s.srv.opts.AppendLimit)
	size, _, err := mb.Meta(uid)
	if err != nil {
		return nil, badURL(raw, "No such message")
	}
	if size > limit {
		return nil, no("TOOBIG", "Message too large (APPENDLIMIT "+strconv.FormatInt(limit, 10)+")")
	}
	if size > src.budget {
		return nil, no("TOOBIG", "The URLs name too much data")
	}
	src.budget -= size
	b, _, err := mb.ReadMessage(uid, nil, 0)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, badURL(raw, "No such message")
		}
		return nil, s.storeErr("append", err, "")
	}
	if crlf, changed := appendCRLF(nil, b); changed {
		b = crlf
	}
	src.last, src.raw = key, b
	return b, nil
}
