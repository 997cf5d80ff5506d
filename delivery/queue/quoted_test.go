package queue

import (
	"bufio"
	"net"
	"strings"
	"sync"
	"testing"
)

// TestQuotedLocalPartOnTheWire: an address whose local part needs quoting
// (RFC 5321 Quoted-string, kept so by smtp: "john doe"@x, and "x@y"@x,
// which smtp relays for an authenticated client) leaves quoted in MAIL and
// RCPT, byte for byte, as the next hop must read it; it goes to the host
// of the domain after its last '@', and a refused one is named so in the
// DSN, which goes to the quoted sender.
func TestQuotedLocalPartOnTheWire(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	var mu sync.Mutex
	var lines []string
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				r := bufio.NewReader(c)
				c.Write([]byte("220 raw.test ESMTP\r\n"))
				inData := false
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						return
					}
					line = strings.TrimRight(line, "\r\n")
					if inData {
						if line == "." {
							inData = false
							c.Write([]byte("250 2.0.0 ok\r\n"))
						}
						continue
					}
					mu.Lock()
					lines = append(lines, line)
					mu.Unlock()
					switch verb := strings.ToUpper(strings.SplitN(line, " ", 2)[0]); verb {
					case "EHLO":
						c.Write([]byte("250-raw.test\r\n250 8BITMIME\r\n"))
					case "DATA":
						inData = true
						c.Write([]byte("354 go\r\n"))
					case "QUIT":
						c.Write([]byte("221 bye\r\n"))
						return
					default:
						if strings.Contains(line, `"no@such"`) {
							c.Write([]byte("550 5.1.1 no such user\r\n"))
							continue
						}
						c.Write([]byte("250 2.0.0 ok\r\n"))
					}
				}
			}()
		}
	}()
	o := baseOptions(t, t.TempDir(), newClock())
	o.Routes = map[string]string{"remote.test": l.Addr().String()}
	o.Dialer = nil
	b := newBounces()
	o.Bounce = b.fn
	h := start(t, o)
	h.enqueue(`"jane q"@local.test`, `"john doe"@remote.test`, `"a\"b"@remote.test`, `"x@y"@remote.test`)
	h.enqueue(`"x@y"@local.test`, `"no@such"@remote.test`, `"a@b c"@remote.test`)
	r := parseDSN(t, recv(t, b.got, "the DSN"))
	h.waitUntil("the queue is empty", h.empty)
	mu.Lock()
	got := strings.Join(lines, "\n")
	mu.Unlock()
	for _, want := range []string{`MAIL FROM:<"jane q"@local.test>`, `RCPT TO:<"john doe"@remote.test>`, `RCPT TO:<"a\"b"@remote.test>`,
		`RCPT TO:<"x@y"@remote.test>`, `MAIL FROM:<"x@y"@local.test>`, `RCPT TO:<"no@such"@remote.test>`, `RCPT TO:<"a@b c"@remote.test>`} {
		if !strings.Contains(got, want) {
			t.Errorf("no %q among the commands:\n%s", want, got)
		}
	}
	if to := r.header.Get("To"); to != `<"x@y"@local.test>` {
		t.Errorf("DSN To = %q", to)
	}
	if len(r.rcpts) != 1 || r.rcpts[0].Get("Final-Recipient") != `rfc822; "no@such"@remote.test` {
		t.Errorf("DSN recipients %v", r.rcpts)
	}
}
