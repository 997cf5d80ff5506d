package integration

import (
	"bufio"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"courriel/internal/testenv"
)

// firstLine reads the server's first line on c (bounded), "" when the
// server closed the connection without one.
func firstLine(c net.Conn) string {
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	l, _ := bufio.NewReader(c).ReadString('\n')
	return l
}

// closedWithin says whether the server closes c, reading nothing, before
// the bound.
func closedWithin(c net.Conn, d time.Duration) bool {
	c.SetReadDeadline(time.Now().Add(d))
	n, err := c.Read(make([]byte, 1))
	if n > 0 || err == nil {
		return false
	}
	ne, ok := err.(net.Error)
	return !ok || !ne.Timeout()
}

// HAProxy (send-proxy-v2) in front of courriel: the server sees, limits
// and records the client's own address; headers are required from the
// balancer and refused from everyone else.
func TestProxyProtocolHAProxy(t *testing.T) {
	swaks := requireTool(t, "swaks")
	python := requireTool(t, "python3")
	s := startServer(t, withTOML(`
[smtp]
connection_limit_per_ip = 2
[proxy_protocol]
trusted_networks = ["127.0.0.1"]
header_timeout = "1s"
`))
	check := "send-proxy-v2 check inter 200ms fall 2 rise 1 check-send-proxy"
	h := startHAProxy(t, "", map[string][]haproxyServer{
		"smtp":  {{"courriel", s.SMTP, check}},
		"imaps": {{"courriel", s.IMAPS, check}},
	})

	t.Run("swaks from 127.0.0.7", func(t *testing.T) {
		out, _ := run(t, "", swaks, "--server", h.Front["smtp"], "--local-interface", "127.0.0.7",
			"--from", "someone@example.net", "--to", "test0@hosted-domain.com", "--ehlo", "client.example.net",
			"--header", "Subject: through haproxy")
		if !accepted(out) {
			t.Fatalf("swaks:\n%s", out)
		}
		msg := findMessage(t, s, "xomail", "new", "through haproxy")
		rcvd := msg[strings.Index(msg, "Received:"):]
		rcvd = rcvd[:strings.Index(rcvd, ";")]
		if !strings.Contains(rcvd, "[127.0.0.7]") || strings.Contains(rcvd, "127.0.0.1") {
			t.Errorf("Received does not name the client's address:\n%s", rcvd)
		}
		if !waitLog(s, "client=127.0.0.7") {
			t.Error("the log does not name the client 127.0.0.7")
		}
	})

	t.Run("per-address limit counts the client", func(t *testing.T) {
		var open []net.Conn
		defer func() {
			for _, c := range open {
				c.Close()
			}
		}()
		for i := range 3 {
			c, err := dialFrom("127.0.0.7", h.Front["smtp"])
			if err != nil {
				t.Fatal(err)
			}
			open = append(open, c)
			l := firstLine(c)
			if i < 2 && !strings.HasPrefix(l, "220 ") {
				t.Fatalf("connection %d from 127.0.0.7: %q", i+1, l)
			}
			if i == 2 && !strings.HasPrefix(l, "421 ") {
				t.Errorf("third connection from 127.0.0.7: %q, want 421 (limit 2 per address)", l)
			}
		}
		c, err := dialFrom("127.0.0.8", h.Front["smtp"])
		if err != nil {
			t.Fatal(err)
		}
		open = append(open, c)
		if l := firstLine(c); !strings.HasPrefix(l, "220 ") {
			t.Errorf("127.0.0.8 through the same balancer: %q, want 220", l)
		}
	})

	t.Run("imaplib over IMAPS", func(t *testing.T) {
		script := fmt.Sprintf(`
import imaplib, socket, ssl
class FromSeven(imaplib.IMAP4_SSL):
    def _create_socket(self, timeout):
        sock = socket.create_connection((self.host, self.port), timeout, source_address=("127.0.0.7", 0))
        return self.ssl_context.wrap_socket(sock, server_hostname="localhost")
ctx = ssl.create_default_context(cafile=%q)
m = FromSeven("127.0.0.1", %s, ssl_context=ctx, timeout=20)
m.login("test0@hosted-domain.com", %q)
typ, data = m.select("INBOX")
print("SELECT", typ, data[0].decode())
m.logout()
`, s.ca.CertFile(), port(h.Front["imaps"]), testenv.XomailPassword)
		out, err := run(t, script, python, "-")
		if err != nil || !strings.Contains(out, "SELECT OK") {
			t.Fatalf("imaplib through haproxy: %v\n%s", err, out)
		}
		if !waitLog(s, "ip=127.0.0.7") {
			t.Error("the IMAP log does not name the client 127.0.0.7")
		}
	})

	t.Run("header from an untrusted address", func(t *testing.T) {
		for _, tc := range []struct{ listener, addr, header string }{
			{"smtp v1", s.SMTP, "PROXY TCP4 192.0.2.66 127.0.0.1 4000 25\r\n"},
			{"smtp v2", s.SMTP, "\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\x0c\xc0\x00\x02\x42\x7f\x00\x00\x01\x0f\xa0\x00\x19"},
			{"imaps v1", s.IMAPS, "PROXY TCP4 192.0.2.66 127.0.0.1 4000 993\r\n"},
		} {
			c, err := dialFrom("127.0.0.7", tc.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if strings.HasPrefix(tc.listener, "smtp") {
				if l := firstLine(c); !strings.HasPrefix(l, "220 ") {
					t.Fatalf("%s: greeting %q", tc.listener, l)
				}
			}
			c.Write([]byte(tc.header + "EHLO spoofed.example\r\n"))
			if !closedWithin(c, 10*time.Second) {
				t.Errorf("%s: a PROXY header from 127.0.0.7 did not close the connection", tc.listener)
			}
		}
		// The log reaches the test through a pipe, a moment after the close.
		const refusal = "PROXY header from an address not in proxy_protocol.trusted_networks"
		for i := 0; i < 100 && strings.Count(s.logs(), refusal) < 3; i++ {
			time.Sleep(20 * time.Millisecond)
		}
		if n := strings.Count(s.logs(), refusal); n != 3 {
			t.Errorf("%d refusals logged, want 3", n)
		}
		if strings.Contains(s.logs(), "192.0.2.66") {
			t.Error("a spoofed address reached the log")
		}
	})

	t.Run("trusted peer without header", func(t *testing.T) {
		// HAProxy's checks so far came with a LOCAL header: none refused.
		if strings.Contains(s.logs(), "PROXY header missing or invalid") {
			t.Error("a connection of HAProxy's was refused")
		}
		c, err := dialFrom("127.0.0.1", s.SMTP)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if !closedWithin(c, 10*time.Second) {
			t.Error("a trusted peer without a header was served")
		}
		if !waitLog(s, "PROXY header missing or invalid from a trusted balancer") {
			t.Error("the refusal is not logged")
		}
	})
}
