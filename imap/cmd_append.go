package imap

import (
	"errors"
	"io"
	"strconv"
	"strings"
	"time"

	"courriel/imap/mailstore"
	"courriel/imap/wire"
)

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
// appendTarget opens the APPEND's mailbox (*mb, and its appender *app)
// once, for its first message: a missing one is TRYCREATE; and checks
// that it can take the message's keywords.
func (s *session) appendTarget(name string, mb **mailstore.Mailbox, app **mailstore.Appender, flags []string) error {
	if *mb == nil {
		m, err := s.srv.reg.Open(s.store, name)
		if err != nil {
			return s.storeErr("append", err, "TRYCREATE")
		}
		*mb, *app = m, m.NewAppender()
	}
	return checkKeywords(flags, *mb)
}

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
		// Before "+", as Dovecot: the message is not sent for nothing.
		if err := s.appendTarget(name, mb, app, flags); err != nil {
			return err
		}
		if li.Size == 0 {
			// Dovecot's refusal, for any message of a MULTIAPPEND
			// (none is then stored); CATENATE is not refused there.
			return no("", "Can't save a zero byte message")
		}
		return nil
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
