package integration

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// BenchmarkDataRSS is the memory a server needs for many large messages at
// once: COURRIEL_RSS_CONNS (500) connections each send a message of
// COURRIEL_RSS_BYTES (10,000,000) over DATA on port 25. Every client sends
// all but the last 64 KiB, then waits until all have (and a second more,
// for the server to read what the sockets hold): at that moment every
// session is in DATA with about 10 MB received, and the server's RSS is
// read. Then all finish and every message must be stored. It reports the
// RSS at that moment, the peak RSS of the run (VmHWM) and the messages
// stored; nothing is timed. BenchmarkDataRSSMilter is the same with a
// milter on the listener (the test's own, on loopback: it reads every
// body chunk and lets the message through), so the peak covers the
// milters' part, after DATA: each body sent to the milter in 64 KiB
// chunks from the spool file.
//
//	go test -run XXX -bench DataRSS -benchtime 1x ./integration/
//
// COURRIEL_RSS_BINARY runs another courriel binary (a baseline build).
func BenchmarkDataRSS(b *testing.B) { dataRSS(b, "") }

func BenchmarkDataRSSMilter(b *testing.B) {
	addr, seen := startBodyMilter(b, nil)
	dataRSS(b, milterTOML(addr, quoteList("smtp"), "tempfail"))
	conns, size := envInt("COURRIEL_RSS_CONNS", 500), envInt("COURRIEL_RSS_BYTES", 10_000_000)
	// Each message's body reached the milter whole: its size less
	// sendLarge's header and the partial line it leaves out (under 200
	// octets).
	if got := seen.bodyBytes.Load(); got < int64(conns*(size-200)) || got > int64(conns*size) {
		b.Errorf("the milter saw %d body octets for %d messages of %d", got, conns, size)
	}
}

func dataRSS(b *testing.B, toml string) {
	conns := envInt("COURRIEL_RSS_CONNS", 500)
	size := envInt("COURRIEL_RSS_BYTES", 10_000_000)
	opts := []serverOption{withProduction()}
	if bin := os.Getenv("COURRIEL_RSS_BINARY"); bin != "" {
		opts = append(opts, withBinary(bin))
	}
	s := startServer(b, append(opts,
		withTopTOML(fmt.Sprintf("message_size_limit = %d\n", size+1<<20)),
		withTOML(fmt.Sprintf("[smtp]\nconnection_limit_per_ip = %d\nconnection_limit = %d\n", conns, conns)+toml))...)
	pid := s.cmd.Process.Pid
	line := strings.Repeat("0123456789abcdef", 4) + "0123456789ab\r\n" // 78 octets
	chunk := []byte(strings.Repeat(line, 64<<10/len(line)))
	for b.Loop() {
		var arrived, finished sync.WaitGroup
		arrived.Add(conns)
		release := make(chan struct{})
		errs := make(chan error, conns)
		for i := range conns {
			finished.Go(func() {
				once := sync.OnceFunc(arrived.Done)
				defer once()
				errs <- sendLarge(s.SMTP, i, size, chunk, func() { once(); <-release })
			})
		}
		arrived.Wait()
		time.Sleep(time.Second)
		during := rssKiB(pid)
		close(release)
		finished.Wait()
		close(errs)
		failed := 0
		for err := range errs {
			if err != nil {
				if failed == 0 {
					b.Errorf("a transfer: %v", err)
				}
				failed++
			}
		}
		_, peak := procStats(pid)
		stored := len(s.maildirFiles(b, "xomail", "new"))
		b.Logf("%d concurrent DATA transfers of %d bytes: server RSS %d MiB with all of them in DATA, peak RSS %d MiB; %d stored, %d failed",
			conns, size, during/1024, peak/1024, stored, failed)
		b.ReportMetric(float64(during)/1024, "rss-in-data-MiB")
		b.ReportMetric(float64(peak)/1024, "peak-rss-MiB")
		if stored != conns {
			b.Errorf("%d messages stored, want %d", stored, conns)
		}
	}
}

// sendLarge sends one message of size octets (a header, then chunk
// repeated); before its last 64 KiB it calls pause.
func sendLarge(addr string, i, size int, chunk []byte, pause func()) error {
	return sendLargeFrom("", addr, i, size, chunk, pause)
}

// sendLargeFrom is sendLarge from the local address from ("": any).
func sendLargeFrom(from, addr string, i, size int, chunk []byte, pause func()) error {
	d := net.Dialer{Timeout: 10 * time.Second}
	if from != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(from)}
	}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Minute))
	r := bufio.NewReader(c)
	reply := func(want string) error {
		for {
			l, err := r.ReadString('\n')
			if err != nil {
				return err
			}
			if len(l) >= 4 && l[3] == '-' {
				continue
			}
			if !strings.HasPrefix(l, want) {
				return fmt.Errorf("message %d: %q, want %s", i, l, want)
			}
			return nil
		}
	}
	if err := reply("220 "); err != nil {
		return err
	}
	for _, cmd := range []struct{ line, want string }{
		{"EHLO rss.example\r\n", "250 "},
		{"MAIL FROM:<rss@example.net>\r\n", "250 "},
		{"RCPT TO:<test0@hosted-domain.com>\r\n", "250 "},
		{"DATA\r\n", "354 "},
	} {
		if _, err := c.Write([]byte(cmd.line)); err != nil {
			return err
		}
		if err := reply(cmd.want); err != nil {
			return err
		}
	}
	head := fmt.Sprintf("Subject: large %d\r\n\r\n", i)
	if _, err := c.Write([]byte(head)); err != nil {
		return err
	}
	left := size - len(head)
	paused := false
	for left > 0 {
		if !paused && left <= 64<<10 {
			pause()
			paused = true
		}
		n := min(left, len(chunk))
		// Whole lines only, so the message ends with CRLF.
		if n < len(chunk) {
			n -= n % 78
		}
		if n == 0 {
			break
		}
		if _, err := c.Write(chunk[:n]); err != nil {
			return err
		}
		left -= n
	}
	if !paused {
		pause()
	}
	if _, err := c.Write([]byte(".\r\n")); err != nil {
		return err
	}
	return reply("250 ")
}

// rssKiB is a process's resident set now.
func rssKiB(pid int) int64 {
	status, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	for _, l := range strings.Split(string(status), "\n") {
		if strings.HasPrefix(l, "VmRSS:") {
			v, _ := strconv.ParseInt(strings.Fields(l)[1], 10, 64)
			return v
		}
	}
	return 0
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// TestDataMemoryBounded: 40 clients each in the middle of a 4 MB message
// cost the server far less than the 160 MB they are sending (they used to
// cost all of it): large messages wait on disk, not in memory.
func TestDataMemoryBounded(t *testing.T) {
	const conns, size = 40, 4_000_000
	s := startServer(t, withProduction())
	pid := s.cmd.Process.Pid
	before := rssKiB(pid)
	line := strings.Repeat("0123456789abcdef", 4) + "0123456789ab\r\n"
	chunk := []byte(strings.Repeat(line, 64<<10/len(line)))
	var arrived, finished sync.WaitGroup
	arrived.Add(conns)
	release := make(chan struct{})
	errs := make(chan error, conns)
	for i := range conns {
		// Each from an address of its own, as 40 MTAs would be.
		finished.Go(func() {
			once := sync.OnceFunc(arrived.Done)
			defer once()
			errs <- sendLargeFrom(fmt.Sprintf("127.0.1.%d", i+1), s.SMTP, i, size, chunk, func() { once(); <-release })
		})
	}
	arrived.Wait()
	time.Sleep(time.Second)
	during := rssKiB(pid)
	close(release)
	finished.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	grew := (during - before) * 1024
	t.Logf("server RSS %d MiB before, %d MiB with %d sessions in DATA (%d MB each)", before/1024, during/1024, conns, size/1_000_000)
	if grew > conns*size/4 {
		t.Errorf("RSS grew by %d MiB for %d MB of messages in flight", grew>>20, conns*size/1_000_000)
	}
	if n := len(s.maildirFiles(t, "xomail", "new")); n != conns {
		t.Errorf("%d stored, want %d", n, conns)
	}
}
