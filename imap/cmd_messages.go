package imap

import (
	"errors"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"courriel/imap/mailstore"
	"courriel/imap/wire"
)

// parseFlagList reads "(" [flag *(SP flag)] ")"; system flags are
// normalised in case, keywords kept as sent.
func (s *session) parseFlagList() ([]string, error) {
	var out []string
	err := s.r.List(true, func() error {
		f, err := s.parseFlag()
		out = append(out, f)
		return err
	})
	return out, err
}

func (s *session) parseFlag() (string, error) {
	if ok, err := s.r.Is('\\'); err != nil {
		return "", err
	} else if ok {
		if star, err := s.r.Is('*'); err != nil || star {
			return `\*`, err
		}
		a, err := s.r.Atom()
		if err != nil {
			return "", err
		}
		for _, sf := range []string{`\Seen`, `\Answered`, `\Flagged`, `\Deleted`, `\Draft`, `\Recent`} {
			if strings.EqualFold(`\`+a, sf) {
				return sf, nil
			}
		}
		return "", bad("", "Unknown system flag \\"+sanitize(a))
	}
	return s.r.Atom()
}

// storableFlags refuses what a client may name but never set: \Recent
// (RFC 3501 §2.3.2) and \* (PERMANENTFLAGS only); Dovecot answers BAD too.
func storableFlags(names []string) error {
	for _, n := range names {
		if n == `\Recent` || n == `\*` {
			return bad("", "Invalid system flag "+n)
		}
	}
	return nil
}

// maxKeywordLen is Dovecot's mail_max_keyword_length.
const maxKeywordLen = 50

// checkKeywords refuses a keyword longer than maxKeywordLen that mb does
// not have yet, in Dovecot's words (its lib-storage error, a NO [CANNOT]
// in IMAP): the command stores nothing. Such a keyword was answered OK
// and dropped. One that mb has (written by an older courriel, or another
// program) stays usable, as in Dovecot, which checks only new keywords.
func checkKeywords(flags []string, mb *mailstore.Mailbox) error {
	var defined []string
	for _, f := range flags {
		if strings.HasPrefix(f, `\`) || len(f) <= maxKeywordLen {
			continue
		}
		if defined == nil {
			defined, _ = mb.DefinedFlags()
		}
		if !slices.ContainsFunc(defined, func(d string) bool { return strings.EqualFold(d, f) }) {
			return no("CANNOT", "Keyword length too long")
		}
	}
	return nil
}

func toFlags(names []string) []string {
	out := make([]string, 0, len(names))
	for _, n := range names {
		if n == `\Recent` || n == `\*` {
			continue // RFC 9051 §2.3.2: \Recent cannot be stored
		}
		out = append(out, n)
	}
	return out
}

// parseDateTime reads RFC 9051 date-time: "dd-Mon-yyyy hh:mm:ss +zzzz".
func parseDateTime(v string) (time.Time, error) {
	t, err := time.Parse("2-Jan-2006 15:04:05 -0700", strings.TrimPrefix(v, " "))
	if err != nil {
		return time.Time{}, bad("", "Invalid date-time")
	}
	return t, nil
}

// parseDate reads a SEARCH date: "d-Mon-yyyy", quoted or not.
func parseDate(v string) (time.Time, error) {
	t, err := time.Parse("2-Jan-2006", v)
	if err != nil {
		return time.Time{}, bad("", "Invalid date")
	}
	return t, nil
}

// APPEND (RFC 9051 §6.3.12) with literal8 (RFC 3516) and APPENDUID (RFC
// 4315). The message is streamed from the connection to the file.
func cmdAppend(s *session, tag string, _ bool) error {
	if err := s.r.SP(); err != nil {
		return err
	}
	name, err := s.mailboxArg()
	if err != nil {
		return err
	}
	var mb *mailstore.Mailbox
	var app *mailstore.Appender
	defer func() {
		if app != nil {
			app.Abort()
		}
		if mb != nil {
			mb.Release()
		}
	}()
	// MULTIAPPEND (RFC 3502): messages follow one another, each with its
	// own flags and date; all are stored or none.
	var total int64
	for n := 0; ; n++ {
		if n > 0 {
			if sp, err := s.r.Is(' '); err != nil {
				return err
			} else if !sp {
				break
			}
		} else if err := s.r.SP(); err != nil {
			return err
		}
		if n >= maxMultiAppend {
			return bad("", "Too many messages in one APPEND")
		}
		if err := s.appendOne(name, &mb, &app, &total); err != nil {
			return err
		}
	}
	if err := s.r.CRLF(); err != nil {
		return err
	}
	uids, err := app.Commit()
	app = nil
	if err != nil {
		return s.storeErr("append", err, "")
	}
	s.srv.wakeIdlers(mb, s)
	code := "APPENDUID " + strconv.FormatUint(uint64(mb.UIDValidity()), 10) + " " + uidSetString(uids)
	return s.ok(tag, code, "Append completed", true)
}

// maxMultiAppend bounds the messages of one APPEND.
const maxMultiAppend = 1000

// appendOne reads one message of an APPEND (flags, date, literal) into app,
// opening the mailbox at the first. total counts the octets of the
// command's messages so far, against the quota.
func (s *session) appendOne(name string, mb **mailstore.Mailbox, app **mailstore.Appender, total *int64) error {
	var flags []string
	if c, err := s.r.Peek(); err != nil {
		return err
	} else if c == '(' {
		if flags, err = s.parseFlagList(); err != nil {
			return err
		}
		if err := storableFlags(flags); err != nil {
			return err
		}
		if err := s.r.SP(); err != nil {
			return err
		}
	}
	var date time.Time
	if c, err := s.r.Peek(); err != nil {
		return err
	} else if c == '"' {
		v, err := s.r.Quoted()
		if err != nil {
			return err
		}
		if date, err = parseDateTime(v); err != nil {
			return err
		}
		if err := s.r.SP(); err != nil {
			return err
		}
	}
	if c, err := s.r.Peek(); err != nil {
		return err
	} else if c == 'C' || c == 'c' {
		return s.appendCatenate(name, mb, app, total, flags, date) // cmd_catenate.go
	}
	// RFC 6855 §4: APPEND ... UTF8 (literal8) after ENABLE UTF8=ACCEPT.
	utf8Ext := false
	if c, err := s.r.Peek(); err != nil {
		return err
	} else if c == 'U' || c == 'u' {
		a, err := s.r.Atom()
		if err != nil {
			return err
		}
		if !strings.EqualFold(a, "UTF8") || !s.utf8() {
			return bad("", "Expected a literal")
		}
		if err := s.r.SP(); err != nil {
			return err
		}
		if err := s.r.Expect('(', "("); err != nil {
			return err
		}
		utf8Ext = true
	}
	li, err := s.r.LiteralHeaderCheck(int64(s.srv.opts.AppendLimit), true, func(li wire.LiteralInfo) error {
		added := 0
		if *app != nil {
			added = (*app).Len()
		}
		if err := s.checkQuota(*total+li.Size, int64(added)+1); err != nil {
			return err
		}
		if *mb == nil {
			m, err := s.srv.reg.Open(s.store, name)
			if err != nil {
				return s.storeErr("append", err, "TRYCREATE")
			}
			*mb, *app = m, m.NewAppender()
		}
		// Before "+", as Dovecot: the message is not sent for nothing.
		return checkKeywords(flags, *mb)
	})
	if err != nil {
		var le *wire.LimitError
		if errors.As(err, &le) && le.TooBig {
			le.Msg = "Message too large (APPENDLIMIT " + strconv.FormatUint(uint64(s.srv.opts.AppendLimit), 10) + ")"
		}
		return err
	}
	*total += li.Size
	var src io.Reader = s.r
	if li.Binary {
		// A literal8 may hold binary content; the maildir stores lines.
		// Its binary parts are stored base64-encoded, so BINARY gives the
		// very bytes back and BODY never serves raw NULs (RFC 3516 §4.2).
		// Which parts those are is known at its end: it is spooled first.
		f, err := s.spool()
		if err != nil {
			_ = s.r.SkipLiteral()
			return s.storeErr("append", err, "")
		}
		defer f.Close()
		if _, err := io.Copy(f, s.r); err != nil {
			if isConnErr(err) {
				return err
			}
			_ = s.r.SkipLiteral()
			return s.storeErr("append", err, "")
		}
		if src, err = binaryEncoded(f, li.Size, s.holdMem); err != nil {
			return s.storeErr("append", err, "")
		}
	}
	if err := (*app).Add(src, toFlags(flags), date); err != nil {
		if isConnErr(err) {
			return err
		}
		_ = s.r.SkipLiteral()
		return s.storeErr("append", err, "")
	}
	if s.r.LiteralLeft() > 0 {
		if err := s.r.SkipLiteral(); err != nil {
			return err
		}
	}
	if utf8Ext {
		if err := s.r.Expect(')', ")"); err != nil {
			return err
		}
	}
	return nil
}

type storeArgs struct {
	set wire.NumSet
	// UNCHANGEDSINCE (RFC 7162 §3.1.3)
	unchangedSince uint64
	conditional    bool
	op             mailstore.StoreOp
	silent         bool
	flags          []string
}

func cmdStore(s *session, tag string, uid bool) error {
	var a storeArgs
	err := s.r.SP()
	if err == nil {
		a.set, err = s.r.SeqSet()
	}
	if err == nil {
		err = s.r.SP()
	}
	if err == nil {
		a.unchangedSince, a.conditional, err = s.parseUnchangedSince()
	}
	var item string
	if err == nil {
		item, err = s.r.Token(func(c byte) bool { return wire.IsAtomChar(c) }, "STORE item")
	}
	if err != nil {
		return err
	}
	item = strings.ToUpper(item)
	a.op = mailstore.StoreReplace
	switch {
	case strings.HasPrefix(item, "+"):
		a.op, item = mailstore.StoreAdd, item[1:]
	case strings.HasPrefix(item, "-"):
		a.op, item = mailstore.StoreRemove, item[1:]
	}
	switch item {
	case "FLAGS":
	case "FLAGS.SILENT":
		a.silent = true
	default:
		return bad("", "Unknown STORE item")
	}
	if err := s.r.SP(); err != nil {
		return err
	}
	if c, err := s.r.Peek(); err != nil {
		return err
	} else if c == '(' {
		if a.flags, err = s.parseFlagList(); err != nil {
			return err
		}
	} else {
		for {
			f, err := s.parseFlag()
			if err != nil {
				return err
			}
			a.flags = append(a.flags, f)
			if sp, err := s.r.Is(' '); err != nil {
				return err
			} else if !sp {
				break
			}
		}
	}
	if err := s.r.CRLF(); err != nil {
		return err
	}
	if err := storableFlags(a.flags); err != nil {
		return err
	}
	if err := s.checkSeqSet(a.set, uid); err != nil {
		return err
	}
	sel := s.sel
	if err := checkKeywords(a.flags, sel.mb); err != nil {
		return err
	}
	if sel.readOnly {
		return errReadOnly
	}
	seqs, uids := s.resolve(a.set, uid)
	if a.conditional {
		s.enableCondstore()
	}
	var modified []uint32
	// In pieces, each one's FETCH responses written out before the next
	// one's files are renamed, as Dovecot streams them: the client reads
	// (and parses) them while the server works, rather than all 100,000
	// after the last rename. Every file has its new name before the
	// tagged OK. The wait for another process's uidlist lock is the
	// command's, spent once over the pieces (see mailstore.FlagWait);
	// renames its pieces deferred are recorded once, before the tagged
	// response (fw.Done).
	var fw mailstore.FlagWait
	for lo := 0; lo < len(uids); lo += storeChunk {
		hi := min(lo+storeChunk, len(uids))
		mod, err := s.storeChunk(&a, &fw, uid, seqs[lo:hi], uids[lo:hi])
		if err != nil {
			fw.Done()
			return err
		}
		modified = append(modified, mod...)
		if hi < len(uids) {
			_ = s.flush() // a write error ends the session at the next read
		}
	}
	fw.Done()
	if len(modified) > 0 {
		return s.ok(tag, "MODIFIED "+uidSetString(modified), "Conditional store failed", uid)
	}
	return s.ok(tag, "", "Store completed", uid)
}

// EXPUNGE and UID EXPUNGE (RFC 4315): the EXPUNGE responses come from the
// change log, like everybody's.
func cmdExpunge(s *session, tag string, uid bool) error {
	var set wire.NumSet
	if uid {
		if err := s.r.SP(); err != nil {
			return err
		}
		var err error
		if set, err = s.r.SeqSet(); err != nil {
			return err
		}
	}
	if err := s.r.CRLF(); err != nil {
		return err
	}
	sel := s.sel
	if sel.readOnly {
		return errReadOnly
	}
	allowed := make(map[uint32]bool, len(sel.view))
	if uid {
		_, uids := s.resolve(set, true)
		for _, u := range uids {
			allowed[u] = true
		}
	} else {
		for _, u := range sel.view {
			allowed[u] = true
		}
	}
	// RFC 9051: only messages this client knows about.
	if _, err := sel.mb.Expunge(func(u uint32) bool { return allowed[u] }, true); err != nil {
		return s.storeErr("expunge", err, "")
	}
	s.srv.wakeIdlers(sel.mb, s)
	return s.ok(tag, "", "Expunge completed", true)
}

// COPY and MOVE (RFC 6851) with COPYUID (RFC 4315).
func cmdCopy(s *session, tag string, uid bool) error {
	move := s.curName() == "MOVE"
	if err := s.r.SP(); err != nil {
		return err
	}
	set, err := s.r.SeqSet()
	if err != nil {
		return err
	}
	dest, err := s.onlyMailboxArg()
	if err != nil {
		return err
	}
	if err := s.checkSeqSet(set, uid); err != nil {
		return err
	}
	sel := s.sel
	if move && sel.readOnly {
		return errReadOnly
	}
	dst, err := s.srv.reg.Open(s.store, dest)
	if err != nil {
		return s.storeErr("copy", err, "TRYCREATE")
	}
	defer dst.Release()
	_, uids := s.resolve(set, uid)
	if len(uids) == 0 {
		if uid {
			return s.ok(tag, "", "No messages", true)
		}
		return no("", "No messages copied")
	}
	var src, dstUIDs []uint32
	if move {
		// A rename within the maildir; the moved messages are expunged
		// from the source through its change log.
		src, dstUIDs, err = sel.mb.MoveTo(dst, uids)
	} else {
		var size int64
		for _, u := range uids {
			if n, _, err := sel.mb.Meta(u); err == nil {
				size += n
			}
		}
		if err := s.checkQuota(size, int64(len(uids))); err != nil {
			return err
		}
		src, dstUIDs, err = sel.mb.CopyTo(dst, uids)
	}
	if err != nil {
		return s.storeErr(strings.ToLower(s.curName()), err, "")
	}
	if len(src) == 0 {
		return no("EXPUNGEISSUED", "Some of the requested messages no longer exist")
	}
	code := "COPYUID " + strconv.FormatUint(uint64(dst.UIDValidity()), 10) + " " + uidSetString(src) + " " + uidSetString(dstUIDs)
	s.srv.wakeIdlers(dst, s)
	if !move {
		return s.ok(tag, code, "Copy completed", true)
	}
	s.w.Raw("* OK [" + code + "] Moved\r\n")
	s.srv.wakeIdlers(sel.mb, s)
	return s.ok(tag, "", "Move completed", true)
}

// uidSetString renders UIDs in the given order as a sequence set,
// compressing consecutive runs (COPYUID pairs the two lists by position).
func uidSetString(uids []uint32) string {
	var b strings.Builder
	for i := 0; i < len(uids); {
		j := i
		for j+1 < len(uids) && uids[j+1] == uids[j]+1 {
			j++
		}
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.FormatUint(uint64(uids[i]), 10))
		if j > i {
			b.WriteByte(':')
			b.WriteString(strconv.FormatUint(uint64(uids[j]), 10))
		}
		i = j + 1
	}
	return b.String()
}

// storeChunk is how many messages a STORE changes before it writes their
// FETCH responses out (see cmdStore): some 40 ms of renames.
const storeChunk = 4096

// storeChunk runs a STORE on some of its messages (seqs and uids, in the
// view's order) and writes their FETCH responses. It returns the messages
// UNCHANGEDSINCE left alone, as sequence numbers or UIDs as the command
// was given.
func (s *session) storeChunk(a *storeArgs, fw *mailstore.FlagWait, uid bool, seqs, uids []uint32) (modified []uint32, err error) {
	sel := s.sel
	// As Dovecot: no FETCH for a message whose flags did not change
	// (the client knows them already); a 20,000-message +FLAGS \Seen
	// on a read folder answers at once.
	oldFlags, _ := sel.mb.FlagsOf(uids)
	var newFlags []mailstore.Flags
	var ok []bool
	var modseqs []uint64
	if a.conditional || s.condstore() {
		// The modseqs come from the same lock as the change: a
		// message expunged meanwhile by another session has none.
		since := uint64(math.MaxUint64)
		if a.conditional {
			since = a.unchangedSince
		}
		var modUIDs []uint32
		newFlags, modseqs, ok, modUIDs, err = sel.mb.StoreFlagsUnchangedSincePiece(fw, uids, a.op, toFlags(a.flags), sel.w, since)
		if uid {
			modified = modUIDs
		} else {
			for _, u := range modUIDs {
				if i, found := slices.BinarySearch(sel.view, u); found {
					modified = append(modified, uint32(i+1))
				}
			}
		}
	} else {
		newFlags, ok, err = sel.mb.StoreFlagsPiece(fw, uids, a.op, toFlags(a.flags), sel.w)
	}
	if err != nil {
		return nil, s.storeErr("store", err, "")
	}
	s.srv.wakeIdlers(sel.mb, s)
	s.announceFlags(false)
	for i := range uids {
		if !ok[i] || newFlags[i] == oldFlags[i] || (a.silent && modseqs == nil) || (modseqs != nil && modseqs[i] == 0) {
			continue
		}
		// .SILENT still reports the new modseq (RFC 7162 §3.1.3).
		s.w.Raw("* ")
		s.w.Number(uint64(seqs[i]))
		s.w.Raw(" FETCH (")
		sep := "" // between items only: "(FLAGS (\\Seen) )" breaks strict parsers
		if !a.silent {
			s.w.Raw("FLAGS (")
			s.writeFlags(uids[i], newFlags[i])
			s.w.Raw(")")
			sep = " "
		}
		// With CONDSTORE on, UID and MODSEQ in every FETCH a STORE
		// causes (RFC 7162 §3.1, errata 1807 of RFC 5162).
		if uid || modseqs != nil {
			s.w.Raw(sep + "UID ")
			s.w.Number(uint64(uids[i]))
			sep = " "
		}
		if modseqs != nil {
			s.w.Raw(sep + modSeqItem(modseqs[i]))
		}
		s.w.Raw(")\r\n")
	}
	return modified, nil
}
