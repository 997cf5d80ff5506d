package cluster

import (
	"bufio"
	"context"
	"errors"
	"net"
	"time"
)

// DialHome opens addr, node n's listener of a service, for a session
// passed through, and has greet read the node's greeting. Dial and
// greeting must come within the connect timeout: a node that does not
// answer in time is remembered as down (a greeting greet refuses is no
// sign of a dead node). greet's errors are returned as they are. The
// connection's deadline is still the greeting's: the caller sets the
// next.
func (h *Hops) DialHome(n Node, addr string, greet func(*bufio.Reader) error) (net.Conn, *bufio.Reader, error) {
	deadline := time.Now().Add(h.Cluster().ConnectTimeout())
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	conn, err := h.Dial(ctx, n, addr)
	if err != nil {
		return nil, nil, err
	}
	_ = conn.SetDeadline(deadline)
	br := bufio.NewReaderSize(conn, 4096)
	if err := greet(br); err != nil {
		conn.Close()
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			h.MarkDown(n)
		}
		return nil, nil, err
	}
	return conn, br, nil
}
