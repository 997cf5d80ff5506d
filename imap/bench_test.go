package imap

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	goimap "github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

// genMailbox writes n realistic messages (2–20 KiB, varied headers, one in
// five multipart, one in three a reply with In-Reply-To and References)
// straight into maildir/cur, as an existing mailbox would be.
func genMailbox(tb testing.TB, maildir string, n int) {
	tb.Helper()
	r := rand.New(rand.NewPCG(1, 2))
	for _, d := range []string{"cur", "new", "tmp"} {
		os.MkdirAll(filepath.Join(maildir, d), 0o700)
	}
	senders := []string{"Alice Martin <alice@example.org>", "bob@example.net", "\"Dupont, Jean\" <jean.dupont@exemple.fr>", "=?UTF-8?Q?Ren=C3=A9e?= <renee@example.com>", "noreply@service.example"}
	words := strings.Fields("the quick brown fox jumps over lazy dog lorem ipsum dolor sit amet mail server report invoice meeting")
	base := time.Date(2023, 1, 1, 0, 0, 0, 0, time.UTC).Unix()
	var sb strings.Builder
	for i := 0; i < n; i++ {
		sb.Reset()
		from := senders[r.IntN(len(senders))]
		fmt.Fprintf(&sb, "Return-Path: <x%d@example.org>\nReceived: from mx.example.org by courriel; Mon, 2 Jan 2023 10:00:00 +0000\n", i)
		fmt.Fprintf(&sb, "From: %s\nTo: xomail@xoyize.xyz\nSubject: %s %d\nDate: Mon, 2 Jan 2023 10:%02d:00 +0000\nMessage-ID: <%d.bench@example.org>\n", from, words[r.IntN(len(words))], i, i%60, i)
		if r.IntN(3) == 0 {
			fmt.Fprintf(&sb, "Cc: carol@example.org, dave@example.net\nIn-Reply-To: <%d.bench@example.org>\n", i-1)
			fmt.Fprintf(&sb, "References: <%d.bench@example.org> <%d.bench@example.org>\n", i-2, i-1)
		}
		size := 2048 + r.IntN(18*1024)
		body := func() {
			for sb.Len() < size {
				sb.WriteString(words[r.IntN(len(words))])
				if r.IntN(12) == 0 {
					sb.WriteByte('\n')
				} else {
					sb.WriteByte(' ')
				}
			}
			sb.WriteByte('\n')
		}
		if i%5 == 0 {
			sb.WriteString("MIME-Version: 1.0\nContent-Type: multipart/alternative; boundary=\"b1\"\n\n--b1\nContent-Type: text/plain; charset=utf-8\n\n")
			size /= 2
			body()
			size *= 2
			sb.WriteString("--b1\nContent-Type: text/html; charset=utf-8\n\n<p>")
			body()
			sb.WriteString("</p>\n--b1--\n")
		} else {
			sb.WriteString("Content-Type: text/plain; charset=utf-8\n\n")
			body()
		}
		msg := sb.String()
		w := len(msg) + strings.Count(msg, "\n")
		flags := ""
		if r.IntN(2) == 0 {
			flags = "S"
		}
		name := fmt.Sprintf("%d.M%dP1.bench,S=%d,W=%d:2,%s", base+int64(i), i, len(msg), w, flags)
		if err := os.WriteFile(filepath.Join(maildir, "cur", name), []byte(msg), 0o600); err != nil {
			tb.Fatal(err)
		}
	}
}

func benchN() int {
	if v, err := strconv.Atoi(os.Getenv("COURRIEL_BENCH_N")); err == nil && v > 0 {
		return v
	}
	return 20000
}

// BenchmarkMailbox measures the operations of the issue on one large
// mailbox over a real connection; every figure is reported in seconds.
func BenchmarkMailbox(b *testing.B) {
	if testing.Short() {
		b.Skip("large mailbox benchmark")
	}
	n := benchN()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		e := newEnv(b)
		genMailbox(b, e.maildir, n)
		b.StartTimer()
		timeIt := func(metric string, f func() error) {
			start := time.Now()
			if err := f(); err != nil {
				b.Fatalf("%s: %v", metric, err)
			}
			b.ReportMetric(time.Since(start).Seconds(), metric)
		}
		selectInbox := func() (*imapclient.Client, error) {
			c := e.login(nil)
			sel, err := c.Select("INBOX", nil).Wait()
			if err == nil && sel.NumMessages != uint32(n) {
				err = fmt.Errorf("%d messages, want %d", sel.NumMessages, n)
			}
			return c, err
		}
		var c *imapclient.Client
		timeIt("select_cold_s", func() (err error) { c, err = selectInbox(); return })
		all := goimap.SeqSet{{Start: 1, Stop: 0}}
		timeIt("envelope_first_s", func() error {
			_, err := c.Fetch(all, &goimap.FetchOptions{Envelope: true}).Collect()
			return err
		})
		timeIt("bodystructure_first_s", func() error {
			_, err := c.Fetch(all, &goimap.FetchOptions{BodyStructure: &goimap.FetchItemBodyStructure{Extended: true}}).Collect()
			return err
		})
		c.Logout().Wait()
		e.restart() // the cache is on disk; nothing in memory
		timeIt("select_warm_s", func() (err error) { c, err = selectInbox(); return })
		timeIt("fetch_flags_s", func() error {
			_, err := c.Fetch(goimap.UIDSet{{Start: 1, Stop: 0}}, &goimap.FetchOptions{Flags: true}).Collect()
			return err
		})
		timeIt("envelope_s", func() error {
			_, err := c.Fetch(all, &goimap.FetchOptions{Envelope: true}).Collect()
			return err
		})
		timeIt("bodystructure_s", func() error {
			_, err := c.Fetch(all, &goimap.FetchOptions{BodyStructure: &goimap.FetchItemBodyStructure{Extended: true}}).Collect()
			return err
		})
		timeIt("search_from_s", func() error {
			d, err := c.UIDSearch(&goimap.SearchCriteria{Header: []goimap.SearchCriteriaHeaderField{{Key: "From", Value: "dupont"}}}, nil).Wait()
			if err == nil && d.Count == 0 && len(d.AllUIDs()) == 0 {
				err = fmt.Errorf("no match")
			}
			return err
		})
		timeIt("bodies_100_s", func() error {
			_, err := c.Fetch(goimap.SeqSet{{Start: 1, Stop: 100}}, &goimap.FetchOptions{BodySection: []*goimap.FetchItemBodySection{{Peek: true}}}).Collect()
			return err
		})
		timeIt("store_seen_all_s", func() error {
			_, err := c.Store(all, &goimap.StoreFlags{Op: goimap.StoreFlagsAdd, Flags: []goimap.Flag{goimap.FlagSeen}}, nil).Collect()
			return err
		})
		c.Logout().Wait()
		b.StopTimer()
		e.srv.Close()
	}
}
