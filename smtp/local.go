package smtp

import (
	"net"
	"os/user"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
)

// localPeer is the client of the Local socket, as the kernel names it
// (SO_PEERCRED): the process that connected, not what it says. Immutable.
type localPeer struct {
	uid, gid uint32
	pid      int32
	// user is the uid's login name (the passwd database), "" when it has
	// none.
	user string
}

// peerCredentials reads the peer's credentials of a Unix domain socket.
func peerCredentials(nc net.Conn) (*localPeer, error) {
	uc, ok := nc.(*net.UnixConn)
	if !ok {
		return nil, &net.OpError{Op: "peer credentials", Net: "unix", Err: unix.ENOTSOCK}
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return nil, err
	}
	var cred *unix.Ucred
	var cerr error
	if err := raw.Control(func(fd uintptr) {
		cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return nil, err
	}
	if cerr != nil {
		return nil, cerr
	}
	p := &localPeer{uid: cred.Uid, gid: cred.Gid, pid: cred.Pid}
	if u, err := user.LookupId(strconv.FormatUint(uint64(cred.Uid), 10)); err == nil {
		p.user = u.Username
	}
	return p, nil
}

// admitLocal names the Local socket's client from its credentials: the
// log's client is "local" with the uid, user name and pid, and the
// connection limit per client (MaxConnsPerIP) counts per uid, so that one
// user's burst of cron jobs does not lock out the others. A peer without
// credentials (not a Unix socket) is refused: false, connection closed.
func (s *Server) admitLocal(c *conn) bool {
	p, err := peerCredentials(c.Conn)
	if err != nil {
		s.log.Warn("local client without peer credentials: refused", "conn_id", c.id, "err", err)
		c.Conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
		c.Conn.Write([]byte("421 4.7.0 " + s.o.Hostname + " Cannot identify the local client\r\n"))
		c.Conn.Close()
		return false
	}
	c.peer = p
	c.key = "uid:" + strconv.FormatUint(uint64(p.uid), 10)
	c.log = s.log.With("conn_id", c.id, "client", "local", "uid", p.uid, "user", logValue(p.user, 64), "pid", p.pid)
	return true
}

// localReceived is the Received: field of a message from the Local
// socket, naming the submitting process's uid and user as Postfix's pickup
// names the userid (RFC 5321 §4.4: the "from" clause is the client,
// here the local user):
//
//	Received: from local (uid 1000, user alice)
//		by host (courriel) id MSGID
//		for <rcpt>; Wed, 25 Nov 2026 10:16:36 +0000 (UTC)
//
// "by host (courriel) " and "for <rcpt>" are what the loop check reads
// (header.go), as in the fields of the other listeners.
func (s *session) localReceived(now time.Time) []byte {
	b := make([]byte, 0, 512)
	b = append(b, "Received: from local (uid "...)
	b = strconv.AppendUint(b, uint64(s.c.peer.uid), 10)
	if s.c.peer.user != "" {
		b = append(b, ", user "...)
		b = append(b, cleanHelo(s.c.peer.user)...)
	}
	b = append(b, ")\r\n"...)
	return s.appendBy(b, "", now)
}
