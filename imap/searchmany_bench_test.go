package imap

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"strings"
	"testing"
	"time"
)

// manyBodyKeysMessage is a plain text message of about 5 MB.
func manyBodyKeysMessage() string {
	line := "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod\n"
	return "From: a@example.org\nTo: b@example.org\nSubject: big\nMIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\n\n" +
		strings.Repeat(line, (5<<20)/len(line))
}

// manyBodyKeys is a SEARCH program of n NOT BODY keys that the message
// does not hold: every one is looked for to the end. distinct gives each
// its own string, else all look for "x".
func manyBodyKeys(n int, distinct bool) string {
	var b strings.Builder
	for i := range n {
		if i > 0 {
			b.WriteByte(' ')
		}
		if distinct {
			fmt.Fprintf(&b, "NOT BODY \"x%04d\"", i)
		} else {
			b.WriteString("NOT BODY \"x\"")
		}
	}
	return b.String()
}

// SEARCH with 1,000 NOT BODY keys over a 5 MB message: the message used
// to be read, decoded and folded once per key (39 s of CPU).
func BenchmarkSearchManyBodyKeys(b *testing.B) {
	e := newEnv(b)
	e.deliver("1700000001.M1P1.test", manyBodyKeysMessage())
	c, err := tls.Dial("tcp", e.addr, clientTLS())
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	cmd := func(tag, s string) []string {
		c.SetDeadline(time.Now().Add(10 * time.Minute))
		if _, err := c.Write([]byte(tag + " " + s + "\r\n")); err != nil {
			b.Fatal(err)
		}
		var out []string
		for {
			l, err := br.ReadString('\n')
			if err != nil {
				b.Fatalf("%s: %v", tag, err)
			}
			out = append(out, strings.TrimRight(l, "\r\n"))
			if strings.HasPrefix(l, tag+" ") {
				return out
			}
		}
	}
	br.ReadString('\n') // greeting
	cmd("l", "LOGIN alice secret")
	cmd("s", "SELECT INBOX")
	for _, distinct := range []bool{false, true} {
		name := "same"
		if distinct {
			name = "distinct"
		}
		prog := manyBodyKeys(1000, distinct)
		b.Run(name, func(b *testing.B) {
			for range b.N {
				got := cmd("x", "SEARCH "+prog)
				if got[0] != "* SEARCH 1" || !strings.HasPrefix(last(got), "x OK") {
					b.Fatalf("SEARCH: %q", got)
				}
			}
		})
	}
}
