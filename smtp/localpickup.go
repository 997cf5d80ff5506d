package smtp

import (
	"fmt"
	"net"
	"os/user"
	"strconv"
)

// LocalPeer is the submitter of a message the server takes from its
// maildrop rather than its socket: the owner of the file as the kernel
// recorded it (fstat), as SO_PEERCRED names the socket's client.
type LocalPeer struct {
	UID, GID uint32
	// Source names the message's origin in the log (the maildrop file's
	// name), so that a file submitted twice (a crash between its 250 and
	// its removal) can be recognised.
	Source string
}

// DialLocal is a connection to this Local server's session path whose
// client is p: the same session as the socket's (Received: naming the
// uid and user, the limits, 250 once stored or queued), for Postfix's
// pickup of the maildrop. The server serves the other end of a net.Pipe
// (which has deadlines, so its timeouts hold); the caller speaks SMTP on
// the one returned and closes it. ErrServerClosed once Shutdown began.
func (s *Server) DialLocal(p LocalPeer) (net.Conn, error) {
	if s.o.Kind != Local {
		return nil, fmt.Errorf("smtp: DialLocal on the %v listener", s.o.Kind)
	}
	if s.isClosing() {
		return nil, ErrServerClosed
	}
	client, server := net.Pipe()
	peer := &localPeer{uid: p.UID, gid: p.GID}
	if u, err := user.LookupId(strconv.FormatUint(uint64(p.UID), 10)); err == nil {
		peer.user = u.Username
	}
	c := &conn{Conn: server, srv: s, id: s.ids.next(), peer: peer}
	c.key = "uid:" + strconv.FormatUint(uint64(p.UID), 10)
	c.log = s.log.With("conn_id", c.id, "client", "local", "uid", p.UID, "user", logValue(peer.user, 64), "maildrop", logValue(p.Source, 64))
	// On a goroutine: a refusal's 421 is written to the pipe, which
	// waits for the caller to read it.
	go s.enter(c)
	return client, nil
}
