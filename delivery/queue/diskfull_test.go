package queue

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"

	gosmtp "github.com/emersion/go-smtp"

	"courriel/delivery"
	"courriel/internal/testenv"
)

// On a full file system the envelope rewrite after an attempt still
// records the copy a server took (from the spool's reserve), so that a
// restart does not send it again; new mail is refused until the reserve
// can be allocated again, and accepted once there is room.
func TestDeliveryRecordedOnFullDisk(t *testing.T) {
	dir := t.TempDir()
	testenv.MountTmpfs(t, dir, "size=8m,mode=0700")
	if _, err := os.Stat(filepath.Join(dir, reserveFile)); err == nil {
		t.Fatal("a reserve before the queue opened")
	}
	filler := filepath.Join(dir, "filler")
	fill := func() {
		f, err := os.Create(filler)
		if err != nil {
			t.Error(err)
			return
		}
		defer f.Close()
		buf := make([]byte, 64<<10)
		for range 1 << 12 { // at most 256 MiB, far past the 8 MiB tmpfs
			if _, err := f.Write(buf); err != nil {
				if !errors.Is(err, syscall.ENOSPC) {
					t.Error(err)
				}
				return
			}
		}
		t.Error("the tmpfs never filled")
	}
	var filled atomic.Bool
	s := newSink(t, sinkOptions{rcpt: func(_ int, to string) error {
		// The disk fills during the attempt, before it is recorded.
		if filled.CompareAndSwap(false, true) {
			fill()
		}
		if to == "later@remote.test" {
			return smtpErr(451, gosmtp.EnhancedCode{4, 2, 0}, "mailbox busy")
		}
		return nil
	}})
	o := baseOptions(t, dir, newClock())
	o.Routes = map[string]string{"*": s.addr}
	o.Dialer = nil
	h := start(t, o)
	if st, err := os.Stat(filepath.Join(dir, reserveFile)); err != nil || st.Size() != reserveSize {
		t.Fatalf("reserve: %v, %v", st, err)
	}
	id := h.enqueue("alice@local.test", "now@remote.test", "later@remote.test")
	recv(t, s.delivs, "the delivery to now@")
	h.waitJob()
	if strings.Contains(h.logs.String(), "recording the delivery attempt failed") {
		t.Errorf("the attempt was not recorded:\n%s", h.logs.String())
	}
	// What a restart would read.
	m, err := h.q.sp.readEnvelope(id)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range m.Recipients {
		want := map[string]State{"now@remote.test": StateDelivered, "later@remote.test": StatePending}[r.Addr]
		if r.State != want {
			t.Errorf("%s on disk: %s, want %s", r.Addr, r.State, want)
		}
	}
	// The reserve is spent: new mail waits for room, with the disk's error.
	_, _, err = h.q.Accept(context.Background(), "M2", "alice@local.test", []string{"x@remote.test"}, nil, delivery.MemContent(testMessage))
	if !errors.Is(err, syscall.ENOSPC) {
		t.Errorf("Accept on a full disk: %v, want ENOSPC", err)
	}
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	if _, _, err := h.q.Accept(context.Background(), "M3", "alice@local.test", []string{"x@remote.test"}, nil, delivery.MemContent(testMessage)); err != nil {
		t.Errorf("Accept once there is room: %v", err)
	}
	if st, err := os.Stat(filepath.Join(dir, reserveFile)); err != nil || st.Size() != reserveSize {
		t.Errorf("reserve not made again: %v, %v", st, err)
	}
}
