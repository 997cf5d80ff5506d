package managesieve

import (
	"bufio"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"runtime/debug"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"courriel/cluster"
	"courriel/directory"
	"courriel/sieve/scripts"
)

type state uint8

const (
	stateNotAuth state = iota
	stateAuth
)

// session is one connection, served by one goroutine.
type session struct {
	srv *Server
	// raw is the accepted connection, never replaced (Close and Shutdown
	// use it from other goroutines); conn is the TLS one after STARTTLS.
	raw, conn net.Conn
	br        *bufio.Reader
	bw        *bufio.Writer
	// ip is the client's address: the connection's, or after a front
	// node's cluster login the one that node saw (proxy.go).
	ip       string
	port     uint16 // the client's port, as ip
	id       string
	log      *slog.Logger
	tls      bool
	shutdown atomic.Bool

	state   state
	user    directory.User
	store   *scripts.Store // nil until login
	fails   int            // failed logins
	errors  int            // protocol errors
	cmds    int            // commands read
	preAuth int            // commands read while not logged in
	lineLen int            // bytes of the current command outside literals
	// loginBy ends every wait before login: PreAuthTimeout after
	// connect, not reset by commands or bytes (see readDeadline).
	loginBy time.Time

	// origin is what a front node's XCLIENT said about the client,
	// trusted once hopLogin is set; hop is the home node's connection of
	// a session passed through to it (proxy.go).
	origin   cluster.Origin
	hopLogin bool
	hop      *hop
}

func newSession(s *Server, c net.Conn, ip string) *session {
	se := &session{srv: s, raw: c, conn: c, ip: ip, loginBy: time.Now().Add(s.opts.PreAuthTimeout)}
	_, se.port = cluster.AddrPort(c.RemoteAddr())
	se.br = bufio.NewReaderSize(connReader{se}, 4096)
	se.bw = bufio.NewWriterSize(connWriter{se}, 4096)
	se.id = newID()
	se.log = s.log.With("conn_id", se.id)
	return se
}

// connReader and connWriter follow se.conn across STARTTLS.
type connReader struct{ se *session }

func (r connReader) Read(p []byte) (int, error) { return r.se.conn.Read(p) }

type connWriter struct{ se *session }

func (w connWriter) Write(p []byte) (int, error) {
	_ = w.se.conn.SetWriteDeadline(time.Now().Add(writeTimeout))
	return w.se.conn.Write(p)
}

// readDeadline is when a wait of d from now ends: no later than loginBy
// before login. A client trickling one byte at a time, or a command a
// minute, is not heard for longer than PreAuthTimeout in all.
func (se *session) readDeadline(d time.Duration) time.Time {
	t := time.Now().Add(d)
	if se.state == stateNotAuth && t.After(se.loginBy) {
		return se.loginBy
	}
	return t
}

// errClose ends the session after what was written is flushed.
var errClose = errors.New("managesieve: close the connection")

// reply is a NO (or BYE when bye) answer to a command; as an error it
// is written by the loop and the session goes on.
type reply struct {
	code, msg string
	bye       bool
}

func (r *reply) Error() string { return r.msg }

func no(code, msg string) *reply { return &reply{code: code, msg: msg} }

// syntaxError is a command that could not be read; its line has been
// consumed.
type syntaxError struct{ msg string }

func (e *syntaxError) Error() string { return e.msg }

func (se *session) serve() {
	defer func() {
		if v := recover(); v != nil {
			// A bug costs this connection, not the server.
			se.log.Error("managesieve: session panic", "panic", v, "stack", string(debug.Stack()))
		}
		if se.store != nil {
			se.store.Close()
		}
		se.raw.Close()
		se.srv.dropSession(se)
	}()
	se.writeCapabilities()
	se.writeResp("OK", "", "courriel ManageSieve ready.")
	if se.flush() != nil {
		return
	}
	for {
		if se.shutdown.Load() {
			se.writeResp("BYE", "", "Server shutting down.")
			_ = se.flush()
			return
		}
		_ = se.conn.SetReadDeadline(se.readDeadline(se.srv.opts.IdleTimeout))
		name, args, err := se.readCommand()
		if err == nil && name == "" {
			continue // an empty line
		}
		if err == nil {
			se.cmds++
			if se.state == stateNotAuth {
				se.preAuth++
			}
			if se.cmds > se.srv.opts.MaxCommands || se.preAuth > maxPreAuthCmds {
				se.writeResp("BYE", "", "Too many commands.")
				_ = se.flush()
				return
			}
			err = se.dispatch(name, args)
		}
		var r *reply
		var syn *syntaxError
		switch {
		case err == nil:
		case errors.As(err, &r):
			if r.bye {
				se.writeResp("BYE", r.code, r.msg)
				_ = se.flush()
				return
			}
			se.writeResp("NO", r.code, r.msg)
		case errors.As(err, &syn):
			se.errors++
			what := "Error in MANAGESIEVE command"
			if name != "" {
				what += " " + name
			}
			se.writeResp("NO", "", what+": "+syn.msg)
			if se.errors >= maxErrors {
				se.writeResp("BYE", "", "Too many invalid commands.")
				_ = se.flush()
				return
			}
		case errors.Is(err, errClose):
			_ = se.flush()
			return
		default:
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				if se.shutdown.Load() {
					se.writeResp("BYE", "", "Server shutting down.")
				} else {
					se.writeResp("BYE", "", "Disconnected for inactivity.")
				}
				_ = se.flush()
			} else if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				se.log.Debug("managesieve: connection ended", "err", err)
			}
			return
		}
		if se.flush() != nil {
			return
		}
		if se.hop != nil {
			se.splice()
			return
		}
	}
}

func (se *session) flush() error { return se.bw.Flush() }

// capabilities are the lines of the greeting, of CAPABILITY and of a
// completed STARTTLS: Pigeonhole's, with SASL empty until TLS is up
// (nobody can log in before) and gone after login, as Dovecot does.
func (se *session) writeCapabilities() {
	o := se.srv.opts
	se.capLine("IMPLEMENTATION", "courriel")
	personal := o.Extensions.ForPersonal(o.GlobalExtensions)
	se.capLine("SIEVE", strings.Join(personal.Capability(), " "))
	if personal.Enabled("enotify") {
		se.capLine("NOTIFY", "mailto")
	}
	se.capLine("MAXREDIRECTS", strconv.Itoa(o.MaxRedirects))
	if se.state == stateNotAuth {
		if se.tls {
			se.capLine("SASL", "PLAIN")
		} else {
			se.capLine("SASL", "")
			if o.TLSConfig != nil {
				se.bw.WriteString("\"STARTTLS\"\r\n")
			}
		}
	} else {
		se.bw.WriteString("\"UNAUTHENTICATE\"\r\n")
	}
	se.capLine("VERSION", "1.0")
}

func (se *session) capLine(name, value string) {
	se.writeString(name)
	se.bw.WriteByte(' ')
	se.writeString(value)
	se.bw.WriteString("\r\n")
}

// writeResp writes OK, NO or BYE with an optional response code (which
// may carry its own arguments, written as they are) and message.
func (se *session) writeResp(kind, code, msg string) {
	se.bw.WriteString(kind)
	if code != "" {
		se.bw.WriteString(" (" + code + ")")
	}
	if msg != "" {
		se.bw.WriteByte(' ')
		se.writeString(msg)
	}
	se.bw.WriteString("\r\n")
}

// writeString writes s quoted when it can be, as a literal otherwise
// (line breaks, NUL, or more than 1,024 octets: RFC 5804 §4).
func (se *session) writeString(s string) {
	if len(s) <= 1024 && !strings.ContainsAny(s, "\r\n\x00") {
		se.bw.WriteByte('"')
		for i := 0; i < len(s); i++ {
			if s[i] == '"' || s[i] == '\\' {
				se.bw.WriteByte('\\')
			}
			se.bw.WriteByte(s[i])
		}
		se.bw.WriteByte('"')
		return
	}
	se.bw.WriteString("{" + strconv.Itoa(len(s)) + "}\r\n")
	se.bw.WriteString(s)
}

// quoteName is a valid script name in a message, as Pigeonhole shows it.
func quoteName(name string) string { return "`" + name + "'" }

func (se *session) startTLS() error {
	cfg := se.srv.opts.TLSConfig
	if se.br.Buffered() > 0 {
		// Commands pipelined after STARTTLS would cross into TLS unprotected.
		se.writeResp("BYE", "", "Data after STARTTLS.")
		return errClose
	}
	se.writeResp("OK", "", "Begin TLS negotiation now.")
	if err := se.flush(); err != nil {
		return err
	}
	tc := tls.Server(se.conn, cfg)
	_ = tc.SetDeadline(se.readDeadline(se.srv.opts.PreAuthTimeout))
	if err := tc.Handshake(); err != nil {
		se.log.Debug("managesieve: STARTTLS handshake failed", "ip", se.ip, "err", err)
		return errClose
	}
	_ = tc.SetDeadline(time.Time{})
	se.conn, se.tls = tc, true
	// RFC 5804 §2.2: the capabilities again, now with SASL mechanisms.
	se.writeCapabilities()
	se.writeResp("OK", "", "TLS negotiation successful.")
	return nil
}

// sanitize makes a string from the network fit for one log field.
func sanitize(s string) string {
	if len(s) > 256 {
		s = s[:256]
	}
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return '?'
		}
		return r
	}, s)
}
