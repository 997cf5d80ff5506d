package queue

import (
	"bufio"
	"net"
	"strings"
	"sync"
	"testing"
)

// TestQuotedLocalPartOnTheWire: an address whose local part needs quoting
// (RFC 5321 Quoted-string, kept so by smtp: "john doe"@x) leaves quoted
// in MAIL and RCPT, byte for byte, as the next hop must read it.
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
						c.Write([]byte("250 2.0.0 ok\r\n"))
					}
				}
			}()
		}
	}()
	o := baseOptions(t, t.TempDir(), newClock())
	o.Routes = map[string]string{"remote.test": l.Addr().String()}
	o.Dialer = nil
	h := start(t, o)
	h.enqueue(`"jane q"@local.test`, `"john doe"@remote.test`, `"a\"b"@remote.test`)
	h.waitUntil("the queue is empty", h.empty)
	mu.Lock()
	got := strings.Join(lines, "\n")
	mu.Unlock()
	for _, want := range []string{`MAIL FROM:<"jane q"@local.test>`, `RCPT TO:<"john doe"@remote.test>`, `RCPT TO:<"a\"b"@remote.test>`} {
		if !strings.Contains(got, want) {
			t.Errorf("no %q among the commands:\n%s", want, got)
		}
	}
}
