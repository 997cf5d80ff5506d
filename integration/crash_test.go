package integration

import (
	"fmt"
	"math/rand/v2"
	"os"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	gosmtp "github.com/emersion/go-smtp"
)

// sendOne delivers one message over a fresh connection; nil means 250.
func sendOne(addr, id string) error {
	c, err := gosmtp.Dial(addr)
	if err != nil {
		return err
	}
	defer c.Close()
	c.CommandTimeout = 10 * time.Second
	c.SubmissionTimeout = 10 * time.Second
	body := fmt.Sprintf("From: crash@example.net\r\nTo: test0@hosted-domain.com\r\nSubject: %s\r\n\r\n%sEND-%s\r\n",
		id, strings.Repeat("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\r\n", 64), id)
	return c.SendMail("crash@example.net", []string{"test0@hosted-domain.com"}, strings.NewReader(body))
}

// Messages acknowledged with 250 survive SIGKILL at any moment, exactly
// once and whole; nothing half-written is ever in new/.
func TestCrashSafety(t *testing.T) {
	s := startServer(t)
	acked := sendWhileKilling(t, s, "m", 8, sendOne)
	seen := map[string]int{}
	subj := regexp.MustCompile(`(?m)^Subject: (m\d{5})$`)
	for _, f := range s.maildirFiles(t, "xomail", "new") {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		m := subj.FindSubmatch(b)
		if m == nil {
			t.Errorf("%s: no Subject: half-written?\n%.200s", f, b)
			continue
		}
		id := string(m[1])
		if !strings.HasSuffix(string(b), "END-"+id+"\n") {
			t.Errorf("%s: message %s is truncated", f, id)
		}
		seen[id]++
	}
	for id := range acked {
		if seen[id] != 1 {
			t.Errorf("acknowledged message %s is in new/ %d times", id, seen[id])
		}
	}
	for id, n := range seen {
		if n > 1 {
			t.Errorf("message %s delivered %d times", id, n)
		}
	}
	t.Logf("%d acknowledged, %d in new/", len(acked), len(seen))
}

// sendWhileKilling sends messages from workers concurrent clients (send,
// ids prefix + a counter) for four rounds, each ended by a SIGKILL of the
// server at a random moment and a restart. It returns the ids of the
// messages acknowledged with 250, and fails the test when there are too
// few of them to prove anything.
func sendWhileKilling(t *testing.T, s *server, prefix string, workers int, send func(addr, id string) error) map[string]bool {
	t.Helper()
	seed := time.Now().UnixNano()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(uint64(seed), 1))
	var mu sync.Mutex
	acked := map[string]bool{}
	seq := 0
	for range 4 {
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for range workers {
			wg.Go(func() {
				for {
					select {
					case <-stop:
						return
					default:
					}
					mu.Lock()
					seq++
					id := fmt.Sprintf("%s%05d", prefix, seq)
					mu.Unlock()
					if err := send(s.SMTP, id); err == nil {
						mu.Lock()
						acked[id] = true
						mu.Unlock()
					} else if strings.Contains(err.Error(), "connection refused") {
						return
					}
				}
			})
		}
		time.Sleep(time.Duration(150+rng.IntN(600)) * time.Millisecond)
		s.stop(syscall.SIGKILL)
		close(stop)
		wg.Wait()
		s.start()
	}
	if len(acked) < 10 {
		t.Fatalf("only %d messages acknowledged: the test proves nothing", len(acked))
	}
	return acked
}
