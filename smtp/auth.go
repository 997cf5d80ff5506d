package smtp

import (
	"errors"
	"net/netip"
	"strings"
	"time"

	"github.com/emersion/go-sasl"
	gosmtp "github.com/emersion/go-smtp"

	"courriel/directory"
	"courriel/loginguard"
)

// ThrottleOptions tune the throttling of failed logins. A failure is
// counted against the client address (one /64 for IPv6) and against the
// login name; the delay before the 535 reply grows with the larger count,
// so a distributed guess at one login slows down too. Only the address is
// ever refused outright: refusing a login would let anyone lock its owner
// out, so the right password from another address still works.
type ThrottleOptions struct {
	FreeFailures int           // failures answered at once (default 2)
	BaseDelay    time.Duration // delay after the first paid failure, doubled after each (1s)
	MaxDelay     time.Duration // cap of the delay (16s)
	IPLimit      int           // failures from one address in Window before 454 without checking (10)
	Window       time.Duration // failures older than this are forgotten (15 min)
	PerSession   int           // failures in one connection before 421 and disconnect (3)
	MaxEntries   int           // bound of each table, against memory exhaustion (10000)
}

func (o *ThrottleOptions) setDefaults() {
	if o.FreeFailures <= 0 {
		o.FreeFailures = 2
	}
	if o.BaseDelay <= 0 {
		o.BaseDelay = time.Second
	}
	if o.MaxDelay <= 0 {
		o.MaxDelay = 16 * time.Second
	}
	if o.IPLimit <= 0 {
		o.IPLimit = 10
	}
	if o.Window <= 0 {
		o.Window = 15 * time.Minute
	}
	if o.PerSession <= 0 {
		o.PerSession = 3
	}
	if o.MaxEntries <= 0 {
		o.MaxEntries = 10000
	}
}

// ipKey groups IPv6 clients by /64, which one host usually owns whole
// (loginguard's unit; the per-address connection limit counts the same).
func ipKey(a netip.Addr) string { return loginguard.Network(a) }

// newGuard is the failed-login throttle of a server built without a shared
// one (Options.Guard): the same rules, from AuthThrottle.
func newGuard(o ThrottleOptions, now func() time.Time) *loginguard.Guard {
	return loginguard.New(loginguard.Options{
		FreeFailures: o.FreeFailures, BaseDelay: o.BaseDelay, MaxDelay: o.MaxDelay,
		NetLimit: o.IPLimit, Window: o.Window, MaxEntries: o.MaxEntries, Now: now,
	})
}

// AuthMechanisms are the SASL mechanisms EHLO offers: none before TLS
// (SPEC §1, seed smtpd_tls_auth_only).
func (s *session) AuthMechanisms() []string {
	if s.srv.o.Kind == Cluster && (s.tls != nil || s.clusterInClear()) {
		return []string{sasl.Plain}
	}
	if s.tls == nil {
		return nil
	}
	return []string{sasl.Plain, sasl.Login}
}

// AuthOffered refuses AUTH where EHLO offers no mechanism (before TLS),
// with Postfix's words for the seed's listeners, before anything else of
// the command is looked at (its place in a transaction, its syntax, any
// credentials). On 587 (smtpd_tls_security_level = encrypt) Postfix's
// command loop answers every command but EHLO, HELO, STARTTLS, NOOP and
// QUIT with 530 5.7.0 before STARTTLS. On 25 (may, with
// smtpd_tls_auth_only = yes) it never activates SASL before TLS, so
// smtpd_sasl_auth_cmd answers "503 5.5.1 Error: authentication not
// enabled"; its "504 5.5.4 Encryption required..." branch comes after
// that test and is never reached (smtpd_sasl_proto.c, Postfix 3.7).
// The cluster listener keeps 530: it is courriel's own.
func (s *session) AuthOffered() error {
	if s.tls != nil || s.clusterInClear() {
		return nil
	}
	if k := s.srv.o.Kind; k == Submission || k == Cluster {
		return s.fail(stageAuth, replyStartTLSFirst)
	}
	return s.fail(stageAuth, replyAuthNotEnabled)
}

// Auth starts AUTH with mech, once AuthOffered has let it through.
func (s *session) Auth(mech string) (sasl.Server, error) {
	if s.c.countCommand() {
		return nil, s.dropWith(replyTooManyCmds)
	}
	s.mu.Lock()
	s.authMech = strings.ToUpper(mech)
	s.mu.Unlock()
	if s.srv.o.Kind == Cluster {
		if !strings.EqualFold(mech, sasl.Plain) {
			return nil, s.fail(stageAuth, replyAuthUnknownMech)
		}
		return saslGuard{s, sasl.NewPlainServer(s.clusterAuth)}, nil
	}
	switch strings.ToUpper(mech) {
	case sasl.Plain:
		return saslGuard{s, sasl.NewPlainServer(s.authPlain)}, nil
	case sasl.Login:
		return saslGuard{s, &loginServer{auth: s.authenticate}}, nil
	}
	return nil, s.fail(stageAuth, replyAuthUnknownMech)
}

// clusterInClear: a Cluster listener without TLS (the cluster's hops in
// clear, on a private network) takes the cluster login without STARTTLS.
func (s *session) clusterInClear() bool {
	return s.srv.o.Kind == Cluster && s.srv.o.TLSConfig == nil
}

func (s *session) authPlain(identity, login, password string) error {
	if identity != "" && identity != login {
		// No proxy authorization (RFC 4616 §2): treat as a failure.
		return s.authFailed(login, replyBadAuthzid)
	}
	return s.authenticate(login, password)
}

func (s *session) authenticate(login, password string) error {
	if s.srv.guard.Blocked(s.c.ip) {
		s.log.Warn("auth refused: client throttled", "ip", s.c.ip.String())
		return s.authFailed("", replyAuthThrottled)
	}
	user, err := s.srv.o.Directory.Authenticate(s.ctx, login, password)
	switch {
	case err == nil:
		s.mu.Lock()
		s.user = &user
		s.mu.Unlock()
		s.srv.guard.Succeeded(login, s.c.ip)
		s.log.Info("auth ok", "sasl_username", logValue(user.Login, 64))
		return nil
	case errors.Is(err, directory.ErrInvalidCredentials):
		d := s.srv.guard.Failed(login, s.c.ip)
		s.log.Warn("auth failed", "login", logValue(login, 64), "delay", d)
		if d > 0 {
			s.srv.o.Sleep(s.ctx, d)
		}
		return s.authFailed(login, replyAuthFailed)
	default:
		s.log.Error("auth: directory unavailable", "err", err)
		return s.fail(stageAuth, err)
	}
}

// authFailed counts a failure in this connection and closes it after
// PerSession failures (Postfix smtpd_hard_error_limit has the same aim).
func (s *session) authFailed(login string, r *gosmtp.SMTPError) error {
	s.srv.o.Metrics.AuthFailure(s.srv.o.Listener)
	if s.c.authFailures.Add(1) >= int32(s.srv.o.AuthThrottle.PerSession) {
		return s.dropWith(replyTooManyFails)
	}
	return s.fail(stageAuth, r)
}

// saslGuard turns a mechanism's own errors (bad encoding, too many steps)
// into a proper reply, never the error's text.
type saslGuard struct {
	s *session
	sasl.Server
}

func (g saslGuard) Next(response []byte) ([]byte, bool, error) {
	ch, done, err := g.Server.Next(response)
	if err != nil {
		var se *gosmtp.SMTPError
		if !errors.As(err, &se) {
			g.s.srv.o.Metrics.AuthFailure(g.s.srv.o.Listener)
			err = g.s.fail(stageAuth, replyBadAuthData)
		}
	}
	return ch, done, err
}

// loginServer is the LOGIN mechanism (draft-murchison-sasl-login), which
// go-sasl implements only as a client; Outlook and old phones still use it.
type loginServer struct {
	auth     func(login, password string) error
	step     int
	username string
}

var errLoginSteps = errors.New("sasl: unexpected LOGIN response")

func (l *loginServer) Next(response []byte) ([]byte, bool, error) {
	switch l.step {
	case 0:
		l.step = 1
		if response == nil {
			return []byte("Username:"), false, nil
		}
		fallthrough // initial response is the user name
	case 1:
		l.username = string(response)
		l.step = 2
		return []byte("Password:"), false, nil
	case 2:
		l.step = 3
		return nil, true, l.auth(l.username, string(response))
	}
	return nil, false, errLoginSteps
}
