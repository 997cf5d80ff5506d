package imap

import (
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"time"

	goimap "github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"

	"courriel/directory"
	"courriel/imap/mailstore"
)

// session is one connection. Fields are used by the connection's goroutine
// only, except during IDLE, where Idle owns them until it returns.
type session struct {
	srv    *Server
	conn   *imapserver.Conn
	ip     string
	id     string
	logger *slog.Logger

	user  directory.User
	store *mailstore.Store // nil until login

	sel *selected // nil unless a mailbox is selected

	idleMu  sync.Mutex
	closing bool           // guarded by idleMu: Close has begun
	idling  sync.WaitGroup // a running Idle

	// Scratch buffers of FETCH (see readMessage).
	readBuf, crlfBuf []byte
}

var (
	_ imapserver.SessionIMAP4rev2   = (*session)(nil)
	_ imapserver.SessionAppendLimit = (*session)(nil)
)

// specialUse are the folders created at first login (RFC 6154), as the
// seed's Dovecot auto-creates them.
var specialUse = []struct {
	name string
	attr goimap.MailboxAttr
}{
	{"Drafts", goimap.MailboxAttrDrafts},
	{"Sent", goimap.MailboxAttrSent},
	{"Junk", goimap.MailboxAttrJunk},
	{"Trash", goimap.MailboxAttrTrash},
}

func specialUseAttr(name string) goimap.MailboxAttr {
	for _, s := range specialUse {
		if s.name == name {
			return s.attr
		}
	}
	switch name {
	case "Sent Messages":
		return goimap.MailboxAttrSent
	case "Archive":
		return goimap.MailboxAttrArchive
	}
	return ""
}

func (s *session) Close() error {
	s.idleMu.Lock()
	s.closing = true
	s.idleMu.Unlock()
	s.idling.Wait() // stop was closed before Close: Idle returns promptly
	s.unselect()
	if s.store != nil {
		s.store.Close()
		s.store = nil
	}
	s.srv.dropSession(s)
	return nil
}

var errAuthFailed = &goimap.Error{
	Type: goimap.StatusResponseTypeNo,
	Code: goimap.ResponseCodeAuthenticationFailed,
	Text: "Authentication failed",
}

var errAuthUnavailable = &goimap.Error{
	Type: goimap.StatusResponseTypeNo,
	Code: goimap.ResponseCodeUnavailable,
	Text: "Authentication temporarily unavailable, try again later",
}

// Login checks the credentials with the directory (AUTHENTICATE PLAIN ends
// here too). The library only calls it over TLS.
func (s *session) Login(username, password string) error {
	if s.store != nil {
		return &goimap.Error{Type: goimap.StatusResponseTypeBad, Text: "Already authenticated"}
	}
	fail := func(reason string) error {
		d := s.srv.failDelay(s.ip)
		s.logger.Info("imap: login failed", "ip", s.ip, "reason", reason, "delay", d)
		if m := s.srv.opts.Metrics; m != nil {
			m.AuthFailure("imap")
		}
		select {
		case <-time.After(d):
		case <-s.srv.closed:
		}
		return errAuthFailed
	}
	// A NUL could truncate a name in C code further down (RFC 4616 forbids
	// it in PLAIN); never pass it on.
	if username == "" || password == "" || strings.ContainsRune(username, 0) || strings.ContainsRune(password, 0) ||
		len(username) > 256 || len(password) > 1024 {
		return fail("malformed credentials")
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.srv.opts.AuthTimeout)
	defer cancel()
	u, err := s.srv.opts.Auth.Authenticate(ctx, username, password)
	switch {
	case err == nil:
	case errors.Is(err, directory.ErrInvalidCredentials), errors.Is(err, directory.ErrNotFound):
		return fail("invalid credentials")
	default:
		s.logger.Warn("imap: directory unavailable during login", "err", err)
		return errAuthUnavailable
	}
	maildir, err := s.checkMaildir(u)
	if err != nil {
		s.logger.Error("imap: refusing maildir from directory", "login", u.Login, "err", err)
		return errAuthUnavailable
	}
	st, err := mailstore.OpenStore(maildir, mailstore.Owner{UID: u.UID, GID: u.GID, Chown: s.srv.opts.Chown})
	if err != nil {
		s.logger.Error("imap: open maildir", "login", u.Login, "err", err)
		return errAuthUnavailable
	}
	s.srv.loginOK(s.ip)
	s.user, s.store = u, st
	s.logger = s.logger.With("user", u.Login)
	s.logger.Info("imap: login", "ip", s.ip)
	s.ensureSpecialFolders()
	return nil
}

// checkMaildir validates a directory-provided path: absolute, clean, not
// the root, and under AllowedBase when set.
func (s *session) checkMaildir(u directory.User) (string, error) {
	m := u.Maildir
	if m == "" && u.Home != "" {
		m = u.Home + "/mailbox/"
	}
	if !filepath.IsAbs(m) || strings.ContainsRune(m, 0) {
		return "", errors.New("maildir is not an absolute path")
	}
	clean := filepath.Clean(m)
	if clean != strings.TrimSuffix(m, "/") || clean == "/" {
		return "", errors.New("maildir is not a clean path")
	}
	if base := s.srv.opts.AllowedBase; base != "" {
		b := filepath.Clean(base)
		if !strings.HasPrefix(clean, b+"/") {
			return "", errors.New("maildir is outside the allowed base")
		}
	}
	return clean, nil
}

func (s *session) ensureSpecialFolders() {
	for _, f := range specialUse {
		if s.store.Exists(f.name) {
			continue
		}
		if err := s.store.Create(f.name); err != nil && !errors.Is(err, mailstore.ErrFolderExists) {
			s.logger.Warn("imap: create special folder", "folder", f.name, "err", err)
			continue
		}
		if err := s.store.SetSubscribed(f.name, true); err != nil {
			s.logger.Warn("imap: subscribe special folder", "folder", f.name, "err", err)
		}
	}
}

func (s *session) AppendLimit() uint32 { return s.srv.opts.AppendLimit }

func (s *session) Namespace() (*goimap.NamespaceData, error) {
	return &goimap.NamespaceData{
		Personal: []goimap.NamespaceDescriptor{{Prefix: "", Delim: mailstore.Delimiter}},
	}, nil
}
