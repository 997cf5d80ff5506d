package smtp

import (
	"fmt"
	"net/smtp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkClusterHop prints the cluster's SMTP figures (issue 18): msgs/s
// through a front node to a user homed on another node, against the same
// mail delivered by the home node itself, 16 sessions each, each message
// timed until its copy is in the maildir; then how long the copies queued
// while the home node was down take to arrive once it is back (the retry
// clock moved to the retry instead of waited for).
//
//	go test -run XXX -bench ClusterHop -benchtime 2000x ./smtp/
func BenchmarkClusterHop(b *testing.B) {
	needTool(b, "slapd")
	e := startClusterEnv(b, time.Minute)
	n := b.N
	const sessions = 16
	send := func(server, to, tag string) time.Duration {
		var next atomic.Int64
		var wg sync.WaitGroup
		start := time.Now()
		for range sessions {
			wg.Go(func() {
				c, err := smtp.Dial(server)
				if err != nil {
					b.Error(err)
					return
				}
				defer c.Close()
				if err := c.Hello("bench.test"); err != nil {
					b.Error(err)
					return
				}
				for {
					i := next.Add(1) - 1
					if i >= int64(n) {
						c.Quit()
						return
					}
					if err := sendOne(c, to, fmt.Sprintf("%s%d", tag, i)); err != nil {
						b.Error(err)
						return
					}
				}
			})
		}
		wg.Wait()
		return time.Since(start)
	}
	b.ResetTimer()
	// Local: alice's mail given to her home node b.
	accLocal := send(e.b.smtpAddr, "alice@xoyize.xyz", "local")
	waitFor(b, "alice's copies", 10*time.Minute, func() bool { return len(mailFiles(b, e.maildir("alice"), "")) >= n })
	local := accLocal // stored before 250: accepted is delivered
	// Hop: bob's mail given to a, handed to b.
	start := time.Now()
	accHop := send(e.a.smtpAddr, "bob@xoyize.xyz", "hop")
	waitFor(b, "bob's copies", 10*time.Minute, func() bool { return len(mailFiles(b, e.maildir("bob"), "")) >= n })
	hop := time.Since(start)
	b.StopTimer()
	if got := len(mailFiles(b, e.maildir("bob"), "")); got != n {
		b.Errorf("bob has %d copies, want %d", got, n)
	}
	rate := func(d time.Duration) float64 { return float64(n) / d.Seconds() }
	b.ReportMetric(rate(local), "local-msgs/s")
	b.ReportMetric(rate(accHop), "hop-accepted-msgs/s")
	b.ReportMetric(rate(hop), "hop-delivered-msgs/s")
	b.ReportMetric(rate(hop)/rate(local), "hop/local")

	// The home node down: the front node alone (its queue's share of the
	// work), then back: the home node's share, from a full queue.
	e.b.stopHop(b)
	queued := n
	accDown := send(e.a.smtpAddr, "alice@xoyize.xyz", "down")
	waitFor(b, "every queued copy tried", 10*time.Minute, func() bool {
		l, err := e.a.queue.List()
		if err != nil || len(l) != queued {
			return false
		}
		for _, s := range l {
			if s.Recipients[0].Attempts == 0 {
				return false
			}
		}
		return true
	})
	before := len(mailFiles(b, e.maildir("alice"), ""))
	e.b.startHop(b)
	back := time.Now()
	e.a.clock.advance(46 * time.Second)
	waitFor(b, "the queued copies", 10*time.Minute, func() bool { return len(mailFiles(b, e.maildir("alice"), "")) >= before+queued })
	drained := time.Since(back)
	b.ReportMetric(rate(accDown), "front-alone-accepted-msgs/s")
	b.ReportMetric(rate(drained), "drain-msgs/s")
	b.ReportMetric(float64(drained.Milliseconds()), "ms-to-drain-after-return")
	b.Logf("%d msgs, 16 sessions: local delivery %.0f msgs/s; through a front node %.0f msgs/s accepted, %.0f msgs/s delivered (%.2f of local); "+
		"the home node down, the front node accepts %.0f msgs/s (%.2f of local); once it is back (+45 s retry interval by the clock) the %d queued copies are delivered in %v (%.0f msgs/s)",
		n, rate(local), rate(accHop), rate(hop), rate(hop)/rate(local), rate(accDown), rate(accDown)/rate(local), queued, drained.Round(time.Millisecond), rate(drained))
}

func sendOne(c *smtp.Client, to, subject string) error {
	if err := c.Mail("sender@example.net"); err != nil {
		return err
	}
	if err := c.Rcpt(to); err != nil {
		return err
	}
	w, err := c.Data()
	if err != nil {
		return err
	}
	msg := "From: sender@example.net\r\nTo: " + to + "\r\nSubject: " + subject + "\r\nMessage-Id: <" + subject + "@example.net>\r\n\r\n" +
		strings.Repeat("A benchmark line of text, as a short mail has.\r\n", 40)
	if _, err := w.Write([]byte(msg)); err != nil {
		return err
	}
	return w.Close()
}
