// Package acceptloop is the accept loop the SMTP, IMAP and ManageSieve
// servers share: each accepted connection goes to the server's admit, a
// temporary accept error (EMFILE, ENFILE, a timeout) is waited out with a
// backoff instead of ending the listener, and the end of the server ends
// the loop without an error.
package acceptloop

import (
	"errors"
	"net"
	"syscall"
	"time"
)

// Backoff bounds: the first wait after a temporary error, and the longest.
const (
	firstDelay = 5 * time.Millisecond
	maxDelay   = time.Second
)

// Run accepts connections on ln and hands each to admit (which must not
// block), until Accept fails for good. It then returns nil if closing
// says the server is shutting down (it closed ln), or the error.
// onTemporary, when not nil, hears each temporary error and the wait.
func Run(ln net.Listener, closing func() bool, onTemporary func(err error, wait time.Duration), admit func(net.Conn)) error {
	var delay time.Duration
	for {
		c, err := ln.Accept()
		if err == nil {
			delay = 0
			admit(c)
			continue
		}
		if closing() {
			return nil
		}
		if !temporary(err) {
			return err
		}
		delay = min(max(2*delay, firstDelay), maxDelay)
		if onTemporary != nil {
			onTemporary(err, delay)
		}
		time.Sleep(delay)
	}
}

// temporary says whether an Accept error is worth waiting out: a timeout,
// or the process or the kernel out of descriptors or memory for now. Such
// an errno is no net.Error timeout, and ending the listener for it let any
// client that could open enough connections stop the whole server.
func temporary(err error) bool {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return true
	}
	for _, e := range []syscall.Errno{syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS, syscall.ENOMEM} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}
