package queue

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	gosmtp "github.com/emersion/go-smtp"

	"courriel/delivery"
)

// Where the DSN of TestDSNOnceAcrossACrash goes.
type dsnDest int

const (
	// The sender's maildir here, through Options.Bounce and Accept with
	// a local recipient, as cmd's deliverBounce: the copy is stored, and
	// the DSN gone from the queue, before the hand-over returns.
	destLocal dsnDest = iota
	// The sink, through Options.Bounce and Accept with a remote
	// recipient, as deliverBounce for a foreign sender.
	destRemote
	// The sink, queued by the queue itself (no Options.Bounce).
	destQueued
)

// TestDSNOnceAcrossACrash: the process dies right after a DSN was handed
// over (stored in the sender's maildir, or queued) and before its
// original's envelope recorded it; a restart on the same spool must not
// send it again, whether the DSN is still in the queue or already
// delivered, for each kind of DSN.
func TestDSNOnceAcrossACrash(t *testing.T) {
	t.Parallel()
	dests := []struct {
		name string
		dest dsnDest
		gone bool // the remote DSN was delivered before the crash
	}{
		{"local", destLocal, true},
		{"remote via Accept, delivered before the crash", destRemote, true},
		{"remote via Accept, queued at the crash", destRemote, false},
		{"remote queued by the queue, delivered before the crash", destQueued, true},
		{"remote queued by the queue, queued at the crash", destQueued, false},
	}
	for _, kind := range []dsnKind{dsnFailed, dsnDelayed, dsnSuccess} {
		for _, d := range dests {
			t.Run(kind.String()+"/"+d.name, func(t *testing.T) {
				t.Parallel()
				dsnCrash(t, kind, d.dest, d.gone)
			})
		}
	}
}

func dsnCrash(t *testing.T, kind dsnKind, dest dsnDest, goneBefore bool) {
	var firstLife atomic.Bool
	var deferred atomic.Int32 // RCPTs of the slow recipient refused
	firstLife.Store(true)
	s := newSink(t, sinkOptions{rcpt: func(_ int, to string) error {
		switch {
		case strings.HasPrefix(to, "bad@"):
			return smtpErr(550, gosmtp.EnhancedCode{5, 1, 1}, "no such user")
		case strings.HasPrefix(to, "slow@"):
			deferred.Add(1)
			return smtpErr(450, gosmtp.EnhancedCode{4, 2, 0}, "try again later")
		case to == "sender@remote.test" && !goneBefore && firstLife.Load():
			return smtpErr(451, gosmtp.EnhancedCode{4, 3, 0}, "not now")
		}
		return nil
	}})
	clock := newClock()
	ls := newLocalStore(t)
	dir := t.TempDir()
	o := baseOptions(t, dir, clock)
	o.Routes = map[string]string{"remote.test": s.addr}
	o.Dialer = nil // the real dialer, to the loopback sink
	o.Local = ls
	o.DelayWarning = time.Hour
	var cur atomic.Pointer[Queue] // the queue of the current life
	if dest != destQueued {
		o.Bounce = func(ctx context.Context, msg *Message, report []byte, opts ...Option) error {
			var remote []string
			var local []delivery.Recipient
			if dest == destLocal {
				local = []delivery.Recipient{ls.rcpt("sender")}
			} else {
				remote = []string{msg.From}
			}
			_, _, err := cur.Load().Accept(ctx, msg.msgID(), "", remote, local, bytes.NewReader(report), opts...)
			return err
		}
	}
	sender := "sender@remote.test"
	if dest == destLocal {
		sender = "sender@local.test"
	}
	var rcpt, action string
	var opts []Option
	switch kind {
	case dsnFailed:
		rcpt, action = "bad@remote.test", "failed"
	case dsnDelayed:
		rcpt, action = "slow@remote.test", "delayed"
	case dsnSuccess:
		rcpt, action = "ok@remote.test", "relayed"
		opts = append(opts, WithDSN("", "", map[string]RcptDSN{rcpt: {Notify: NotifySuccess}}, nil))
	}

	// First life: the job stops dead right after the hand-over, as the
	// process would at a SIGKILL; other jobs (the DSN's) go on until the
	// queue is closed, which a crash a little later would also have let
	// them do.
	crashed := make(chan struct{})
	h := startWith(t, o, func(q *Queue) {
		cur.Store(q)
		q.onDSN = func(k dsnKind) {
			if k != kind {
				t.Errorf("DSN of kind %v handed over, want %v", k, kind)
			}
			close(crashed)
			runtime.Goexit()
		}
	})
	id, _, err := h.q.Accept(context.Background(), "", sender, []string{rcpt}, nil, strings.NewReader(testMessage), opts...)
	if err != nil {
		t.Fatal(err)
	}
	if kind == dsnDelayed {
		h.waitUntil("the first attempt", func() bool { return deferred.Load() > 0 })
		clock.Advance(2 * time.Hour)
	}
	recv(t, crashed, "the DSN's hand-over")
	if dest != destLocal && goneBefore {
		h.waitUntil("the DSN delivered and gone", func() bool {
			l, err := h.q.List()
			if err != nil {
				t.Fatal(err)
			}
			return len(dsnTxs(s)) == 1 && len(l) == 1
		})
	}
	h.close()
	// A DSN gone from the spool left its mark for its original.
	if n := dsnMarks(t, dir); goneBefore && n != 1 || !goneBefore && n != 0 {
		t.Errorf("%d marks of DSNs gone at the crash", n)
	}

	// Second life, on the same spool.
	firstLife.Store(false)
	h = startWith(t, o, func(q *Queue) { cur.Store(q) })
	clock.Advance(3 * time.Hour) // the DSN that waited, and the slow recipient, are due
	h.q.Flush()
	if kind == dsnDelayed {
		h.waitUntil("the delay recorded and its DSN gone", func() bool {
			l, err := h.q.List()
			if err != nil {
				t.Fatal(err)
			}
			if len(l) != 1 || l[0].ID != id {
				return false
			}
			m, _, err := h.q.Show(id)
			if err != nil {
				t.Fatal(err)
			}
			return m.DelayWarned
		})
	} else {
		h.waitUntil("the queue is empty", h.empty)
	}

	h.close() // every job ended

	var got []string
	if dest == destLocal {
		for _, f := range ls.copies(t, "sender") {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, string(b))
		}
	} else {
		for _, x := range dsnTxs(s) {
			got = append(got, x.data)
		}
	}
	if len(got) != 1 {
		t.Fatalf("the sender got %d DSNs, want 1", len(got))
	}
	if !strings.Contains(got[0], "Action: "+action+"\r\n") && !strings.Contains(got[0], "Action: "+action+"\n") {
		t.Errorf("the DSN is not the %s one:\n%s", action, got[0])
	}
	if n := dsnMarks(t, dir); n != 0 {
		t.Errorf("%d marks of DSNs left once their original recorded them", n)
	}
}

// dsnMarks counts the marks of DSNs gone in the spool dir.
func dsnMarks(t *testing.T, dir string) int {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(dir, dsnDir))
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// dsnTxs are the transactions the sink took from the null sender.
func dsnTxs(s *sink) []tx {
	var out []tx
	for _, x := range s.transactions() {
		if x.from == "" {
			out = append(out, x)
		}
	}
	return out
}

// TestDSNCrashThenMoreFailures: after a crash that left a failure DSN
// handed over but not recorded, another recipient of the message fails in
// the first pass after the restart. The first DSN is recorded as sent, and
// the new one reports the new failure alone: nobody is reported twice
// (a DSN named after the recipients failed so far would have had a new
// name, and reported the first one again).
func TestDSNCrashThenMoreFailures(t *testing.T) {
	t.Parallel()
	var firstLife atomic.Bool
	firstLife.Store(true)
	s := newSink(t, sinkOptions{rcpt: func(_ int, to string) error {
		switch {
		case to == "bad@remote.test", to == "late@remote.test" && !firstLife.Load():
			return smtpErr(550, gosmtp.EnhancedCode{5, 1, 1}, "no such user")
		case to == "late@remote.test",
			// The first life's DSN waits for the second: delivered
			// now, the crash could cut it after its final dot, and
			// its retry (RFC 1047's duplicate, which no MTA avoids)
			// would count as a second report here.
			to == "sender@remote.test" && firstLife.Load():
			return smtpErr(450, gosmtp.EnhancedCode{4, 2, 0}, "try again later")
		}
		return nil
	}})
	clock := newClock()
	dir := t.TempDir()
	o := baseOptions(t, dir, clock)
	o.Routes = map[string]string{"remote.test": s.addr}
	o.Dialer = nil
	crashed := make(chan struct{})
	h := startWith(t, o, func(q *Queue) {
		q.onDSN = func(dsnKind) {
			close(crashed)
			runtime.Goexit()
		}
	})
	h.enqueue("sender@remote.test", "bad@remote.test", "late@remote.test")
	recv(t, crashed, "the DSN's hand-over")
	h.close()

	firstLife.Store(false)
	clock.Advance(time.Hour) // late@ is due in the first pass
	h = start(t, o)
	h.waitUntil("the queue is empty", h.empty)
	h.close()
	txs := dsnTxs(s)
	if len(txs) != 2 {
		t.Fatalf("%d DSNs, want 2", len(txs))
	}
	// One DSN each, in whichever order the two were sent.
	var reported []string
	for i, tx := range txs {
		r := parseDSN(t, []byte(tx.data))
		if len(r.rcpts) != 1 {
			t.Errorf("DSN %d reports %v, want one recipient", i, r.rcpts)
			continue
		}
		reported = append(reported, r.rcpts[0].Get("Final-Recipient"))
	}
	slices.Sort(reported)
	if want := []string{"rfc822; bad@remote.test", "rfc822; late@remote.test"}; !slices.Equal(reported, want) {
		t.Errorf("the DSNs report %q, want %q", reported, want)
	}
}

// TestDSNHandOverFails: a hand-over that fails leaves the DSN recorded as
// being handed over; the next try finds it never went and sends it, once.
func TestDSNHandOverFails(t *testing.T) {
	t.Parallel()
	s := newSink(t, sinkOptions{rcpt: func(_ int, to string) error {
		if to == "bad@remote.test" {
			return smtpErr(550, gosmtp.EnhancedCode{5, 1, 1}, "no such user")
		}
		return nil
	}})
	clock := newClock()
	ls := newLocalStore(t)
	dir := t.TempDir()
	o := baseOptions(t, dir, clock)
	o.Routes = map[string]string{"remote.test": s.addr}
	o.Dialer = nil
	o.Local = ls
	var cur atomic.Pointer[Queue]
	var calls atomic.Int32
	o.Bounce = func(ctx context.Context, msg *Message, report []byte, opts ...Option) error {
		if calls.Add(1) == 1 {
			return errors.New("simulated: the directory did not answer")
		}
		_, _, err := cur.Load().Accept(ctx, msg.msgID(), "", nil, []delivery.Recipient{ls.rcpt("sender")}, bytes.NewReader(report), opts...)
		return err
	}
	h := startWith(t, o, func(q *Queue) { cur.Store(q) })
	id := h.enqueue("sender@local.test", "bad@remote.test")
	h.waitUntil("the failed hand-over", func() bool { return calls.Load() == 1 })
	h.waitUntil("its record", func() bool {
		m, _, err := h.q.Show(id)
		return err == nil && len(m.DSNs) == 1 && !m.Recipients[0].Notified
	})
	clock.Advance(time.Hour) // past NotifyAfter
	h.q.Flush()
	h.waitUntil("the queue is empty", h.empty)
	h.close()
	if n := len(ls.copies(t, "sender")); n != 1 || calls.Load() != 2 {
		t.Errorf("%d DSNs stored in %d hand-overs, want 1 in 2", n, calls.Load())
	}
	if n := dsnMarks(t, dir); n != 0 {
		t.Errorf("%d marks left", n)
	}
}

// TestDSNMarksSweptAtOpen: Open keeps the marks of DSNs gone that an
// envelope names, held ones included, and removes the others.
func TestDSNMarksSweptAtOpen(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	o := baseOptions(t, dir, newClock())
	q, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	var ids, dsns []string
	for i := range 2 {
		id, err := q.Enqueue(context.Background(), "sender@local.test", []string{"x@remote.test"}, []byte(testMessage))
		if err != nil {
			t.Fatal(err)
		}
		m, err := q.sp.readEnvelope(id)
		if err != nil {
			t.Fatal(err)
		}
		d := dsnID(m, dsnFailed, []int{0})
		m.DSNs = []PendingDSN{{ID: d, Kind: dsnFailed.String(), Rcpts: []int{0}}}
		if err := q.sp.update(m); err != nil {
			t.Fatal(err)
		}
		if err := q.sp.markDSN(d, id); err != nil {
			t.Fatal(err)
		}
		ids, dsns = append(ids, id), append(dsns, d)
		if i == 1 {
			if err := q.Hold(id); err != nil {
				t.Fatal(err)
			}
		}
	}
	stray := newID(time.Now())
	if err := q.sp.markDSN(stray, ids[0]); err != nil {
		t.Fatal(err)
	}
	q.Close()
	if q, err = Open(o); err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	for _, d := range dsns {
		if known, err := q.sp.known(d); err != nil || !known {
			t.Errorf("mark of %s: known %v, %v", d, known, err)
		}
	}
	if known, _ := q.sp.known(stray); known {
		t.Errorf("a mark no envelope names was kept")
	}
}

// TestDSNOfHeldOriginal: a crash leaves a DSN queued and its original's
// envelope still naming it; the admin holds the original, and the DSN is
// delivered while the original is held (after a restart). The release,
// in the same life or after another restart, records the DSN as sent and
// sends it no second time.
func TestDSNOfHeldOriginal(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name           string
		restartToFetch bool // a restart between the DSN's delivery and the release
	}{
		{"released in the same life", false},
		{"released after a restart", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := startHeldWithDSN(t)
			s, clock, dir, o, id := f.sink, f.clock, f.dir, f.o, f.id
			f.h.close()

			// Second life: the DSN leaves while its original is held.
			f.firstLife.Store(false)
			clock.Advance(time.Hour)
			h := start(t, o)
			h.q.Flush()
			h.waitUntil("the DSN delivered and gone", func() bool { return len(dsnTxs(s)) == 1 && h.empty() })
			if tc.restartToFetch {
				h.close()
				h = start(t, o)
			}
			releaseOriginal(t, h, s, dir, id, 1)
		})
	}
}

// releaseOriginal releases the held original id in h's queue, waits for it
// to leave and closes h: the sender has got wantDSNs DSNs in all, and no
// DSN mark is left once the original recorded them.
func releaseOriginal(t *testing.T, h *harness, s *sink, dir, id string, wantDSNs int) {
	t.Helper()
	if err := h.q.Release(id); err != nil {
		t.Fatal(err)
	}
	h.q.Flush()
	h.waitUntil("the original gone", h.empty)
	h.close()
	if n := len(dsnTxs(s)); n != wantDSNs {
		t.Errorf("the sender got %d DSNs, want %d", n, wantDSNs)
	}
	if n := dsnMarks(t, dir); n != 0 {
		t.Errorf("%d marks of DSNs left once their original recorded them", n)
	}
}

// TestDSNDeleted: a crash leaves a DSN queued and its original's envelope
// still naming it; the admin deletes the DSN (courriel queue delete: a
// client of the spool, or the owner itself). The DSN leaves its mark as
// one delivered does, so that the original, after a restart, records it
// as sent instead of sending it again.
func TestDSNDeleted(t *testing.T) {
	t.Parallel()
	for _, byClient := range []bool{false, true} {
		t.Run(map[bool]string{false: "by the owner", true: "by a client"}[byClient], func(t *testing.T) {
			t.Parallel()
			f := startHeldWithDSN(t)
			s, dir, o, id := f.sink, f.dir, f.o, f.id
			// Tried once, and that try recorded: not due again in the
			// next life, which the clock does not move on. (Waiting for
			// the sink's refusal alone let the close come before the
			// record, and the next life sent the DSN at once.)
			f.h.waitUntil("the DSN's first try recorded", func() bool {
				l, err := f.h.q.List()
				if err != nil {
					t.Fatal(err)
				}
				for _, m := range l {
					if m.From == "" && len(m.Recipients) == 1 && m.Recipients[0].Attempts > 0 {
						return true
					}
				}
				return false
			})
			f.h.close()

			// Second life: the admin deletes the DSN.
			f.firstLife.Store(false)
			h := start(t, o)
			l, err := h.q.List()
			if err != nil || len(l) != 1 || l[0].From != "" {
				t.Fatalf("queue %+v, %v; want the DSN alone", l, err)
			}
			del := h.q
			if byClient {
				co := o
				co.Client = true
				if del, err = Open(co); err != nil {
					t.Fatal(err)
				}
				defer del.Close()
			}
			if err := del.Delete(l[0].ID); err != nil {
				t.Fatal(err)
			}
			h.close()

			// Third life: the original, released, finds the DSN gone.
			releaseOriginal(t, start(t, o), s, dir, id, 0)
		})
	}
}

// heldWithDSN is the first life TestDSNOfHeldOriginal and TestDSNDeleted
// share: a message to a refusing recipient, the process dead right after
// its DSN's hand-over, the DSN queued (the sender's server says 451 while
// firstLife holds), the original held. h is
// still running.
type heldWithDSN struct {
	sink      *sink
	clock     *fakeClock
	dir, id   string
	o         Options
	h         *harness
	firstLife atomic.Bool
}

func startHeldWithDSN(t *testing.T) *heldWithDSN {
	f := &heldWithDSN{clock: newClock(), dir: t.TempDir()}
	f.firstLife.Store(true)
	f.sink = newSink(t, sinkOptions{rcpt: func(_ int, to string) error {
		switch {
		case to == "bad@remote.test":
			return smtpErr(550, gosmtp.EnhancedCode{5, 1, 1}, "no such user")
		case to == "sender@remote.test" && f.firstLife.Load():
			return smtpErr(451, gosmtp.EnhancedCode{4, 3, 0}, "not now")
		}
		return nil
	}})
	f.o = baseOptions(t, f.dir, f.clock)
	f.o.Routes = map[string]string{"remote.test": f.sink.addr}
	f.o.Dialer = nil
	crashed := make(chan struct{})
	f.h = startWith(t, f.o, func(q *Queue) {
		q.onDSN = func(dsnKind) {
			close(crashed)
			runtime.Goexit()
		}
	})
	f.id = f.h.enqueue("sender@remote.test", "bad@remote.test")
	recv(t, crashed, "the DSN's hand-over")
	if err := f.h.q.Hold(f.id); err != nil {
		t.Fatal(err)
	}
	return f
}
