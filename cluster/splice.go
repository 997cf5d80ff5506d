package cluster

import (
	"net"
	"time"
)

// Splice is a session passed through to its home node once both logins
// are done: bytes are copied both ways until either side ends, and then
// the other side is ended too. What the protocol says before is the
// server's; the splice is the same for every protocol.
type Splice struct {
	// Client is the client's connection (the TLS one after STARTTLS);
	// CloseClient closes the accepted connection underneath it, so that
	// a read blocked in TLS returns.
	Client      net.Conn
	CloseClient func()
	Home        net.Conn
	// ToHome is what the client pipelined after its login, ToClient what
	// the home node sent after its login reply: each goes first.
	ToHome, ToClient []byte
	// WriteTimeout bounds every write.
	WriteTimeout time.Duration
	// Copy copies src to dst until either fails, writing with Write; nil
	// copies with a buffer of DefaultSpliceBuf each way.
	Copy func(dst, src net.Conn)
}

// DefaultSpliceBuf is each direction's buffer when Splice.Copy is nil.
const DefaultSpliceBuf = 4 << 10

// Run copies until either side ends and returns once both copies have.
func (sp *Splice) Run() {
	cp := sp.Copy
	if cp == nil {
		cp = sp.copy
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if len(sp.ToClient) > 0 && sp.Write(sp.Client, sp.ToClient) != nil {
			sp.CloseClient()
			sp.Home.Close()
			return
		}
		sp.ToClient = nil // the home reader's buffer, free to go
		cp(sp.Client, sp.Home)
		sp.CloseClient() // the home node ended the session: so does this node
	}()
	if len(sp.ToHome) == 0 || sp.Write(sp.Home, sp.ToHome) == nil {
		sp.ToHome = nil
		cp(sp.Home, sp.Client)
	}
	sp.Home.Close()
	<-done
}

// Write writes b to dst within WriteTimeout.
func (sp *Splice) Write(dst net.Conn, b []byte) error {
	_ = dst.SetWriteDeadline(time.Now().Add(sp.WriteTimeout))
	_, err := dst.Write(b)
	return err
}

func (sp *Splice) copy(dst, src net.Conn) {
	buf := make([]byte, DefaultSpliceBuf)
	for {
		n, err := src.Read(buf)
		if n > 0 && sp.Write(dst, buf[:n]) != nil {
			return
		}
		if err != nil {
			return
		}
	}
}
