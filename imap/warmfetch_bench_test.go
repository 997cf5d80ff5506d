package imap

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"fmt"
	"testing"
)

// BenchmarkWarmCommand repeats one command of the side-by-side's warm
// session (BenchmarkBesideDovecot) on a folder of COURRIEL_BENCH_N
// messages over one TLS connection, the client reading the bytes alone:
// profiles (-cpuprofile) show the server's work for that command.
func BenchmarkWarmCommand(b *testing.B) {
	n := benchN()
	e := newEnv(b)
	genMailbox(b, e.maildir, n)
	conn, err := tls.Dial("tcp", e.addr, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	r := bufio.NewReaderSize(conn, 64<<10)
	tag := 0
	run := func(cmd string) int {
		tag++
		t := fmt.Sprintf("T%d", tag)
		fmt.Fprintf(conn, "%s %s\r\n", t, cmd)
		total := 0
		for {
			line, err := r.ReadSlice('\n')
			total += len(line)
			if err == bufio.ErrBufferFull {
				continue
			}
			if err != nil {
				b.Fatal(err)
			}
			if bytes.HasPrefix(line, []byte(t+" ")) {
				if !bytes.HasPrefix(line, []byte(t+" OK")) {
					b.Fatalf("%s: %s", cmd, line)
				}
				return total
			}
		}
	}
	r.ReadSlice('\n') // greeting
	run("LOGIN alice secret")
	run("SELECT INBOX")
	run("FETCH 1:* (ENVELOPE BODYSTRUCTURE)") // the cache filled
	run("STORE 1:* +FLAGS.SILENT (\\Seen)")
	for _, cmd := range []string{"UID FETCH 1:* (FLAGS)", "FETCH 1:* (ENVELOPE)", "STORE 1:* +FLAGS (\\Seen)"} {
		b.Run(cmd, func(b *testing.B) {
			bytes := 0
			for range b.N {
				bytes = run(cmd)
			}
			b.ReportMetric(float64(bytes), "bytes/op")
		})
	}
}
