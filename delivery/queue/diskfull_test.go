package queue

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	gosmtp "github.com/emersion/go-smtp"
	"golang.org/x/sys/unix"

	"courriel/delivery"
	"courriel/internal/testenv"
)

// On a full file system the envelope rewrite after an attempt still
// records the copies a server took (from the spool's reserve), so that a
// restart does not send them again, and again at the next attempt after
// another writer took the space the first record freed; new mail is
// refused until the reserve can be allocated again, and accepted once
// there is room.
func TestDeliveryRecordedOnFullDisk(t *testing.T) {
	dir := t.TempDir()
	testenv.MountTmpfs(t, dir, "size=8m,mode=0700")
	fill := func(name string) {
		f, err := os.Create(filepath.Join(dir, name))
		if err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Error(err)
			}
			return
		}
		defer f.Close()
		buf := make([]byte, 4<<10)
		for range 1 << 16 { // at most 256 MiB, far past the 8 MiB tmpfs
			if _, err := f.Write(buf); err != nil {
				if !errors.Is(err, syscall.ENOSPC) {
					t.Error(err)
				}
				return
			}
		}
		t.Error("the tmpfs never filled")
	}
	// Each attempt fills the disk before it is recorded: the first one
	// all of it, the second what the first record freed.
	s := newSink(t, sinkOptions{rcpt: func(n int, to string) error {
		switch n {
		case 0:
			fill("filler1")
		case 3:
			fill("filler2")
		}
		if to == "last@remote.test" || to == "later@remote.test" && n < 3 {
			return smtpErr(451, gosmtp.EnhancedCode{4, 2, 0}, "mailbox busy")
		}
		return nil
	}})
	clock := newClock()
	o := baseOptions(t, dir, clock)
	o.Routes = map[string]string{"*": s.addr}
	o.Dialer = nil
	h := start(t, o)
	if st, err := os.Stat(filepath.Join(dir, reserveFile)); err != nil || st.Size() != reserveSize {
		t.Fatalf("reserve: %v, %v", st, err)
	}
	id := h.enqueue("alice@local.test", "now@remote.test", "later@remote.test", "last@remote.test")
	onDisk := func(want map[string]State) {
		t.Helper()
		if strings.Contains(h.logs.String(), "recording the delivery attempt failed") {
			t.Fatalf("an attempt was not recorded:\n%s", h.logs.String())
		}
		m, err := h.q.sp.readEnvelope(id) // what a restart would read
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range m.Recipients {
			if r.State != want[r.Addr] {
				t.Errorf("%s on disk: %s, want %s", r.Addr, r.State, want[r.Addr])
			}
		}
	}
	recv(t, s.delivs, "the delivery to now@")
	h.waitJob()
	onDisk(map[string]State{"now@remote.test": StateDelivered, "later@remote.test": StatePending, "last@remote.test": StatePending})
	clock.Advance(time.Hour)
	h.q.Flush()
	recv(t, s.delivs, "the delivery to later@")
	h.waitJob()
	onDisk(map[string]State{"now@remote.test": StateDelivered, "later@remote.test": StateDelivered, "last@remote.test": StatePending})

	// The reserve is spent: new mail waits for room, with the disk's error.
	_, _, err := h.q.Accept(context.Background(), "M2", "alice@local.test", []string{"x@remote.test"}, nil, delivery.MemContent(testMessage))
	if !errors.Is(err, syscall.ENOSPC) {
		t.Errorf("Accept on a full disk: %v, want ENOSPC", err)
	}
	for _, f := range []string{"filler1", "filler2"} {
		if err := os.Remove(filepath.Join(dir, f)); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := h.q.Accept(context.Background(), "M3", "alice@local.test", []string{"x@remote.test"}, nil, delivery.MemContent(testMessage)); err != nil {
		t.Errorf("Accept once there is room: %v", err)
	}
	var st unix.Stat_t
	if err := unix.Stat(filepath.Join(dir, reserveFile), &st); err != nil || st.Size != reserveSize || st.Blocks*512 < reserveSize {
		t.Errorf("reserve not whole again: %+v, %v", st, err)
	}
}

// New mail from another process (a client of the spool) never takes the
// room the owner needs to make its spent reserve again: on a file system
// that could not keep it, the client's Enqueue is refused with the disk's
// error and writes nothing; it is taken once there is room.
func TestClientMailKeepsRoomForReserve(t *testing.T) {
	dir := t.TempDir()
	testenv.MountTmpfs(t, dir, "size=16m,mode=0700")
	o := baseOptions(t, dir, newClock())
	owner, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	owner.Close()
	// Spent on a full disk, as releaseReserve leaves it at the end.
	if err := os.Remove(filepath.Join(dir, reserveFile)); err != nil {
		t.Fatal(err)
	}
	cli := openClient(t, o)
	filler := filepath.Join(dir, "filler")
	f, err := os.Create(filler)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64<<10)
	var size int64
	for range 1 << 12 { // at most 256 MiB, far past the 16 MiB tmpfs
		n, err := f.Write(buf)
		size += int64(n)
		if err != nil {
			break
		}
	}
	// Less free than the reserve, more than the message needs.
	if err := f.Truncate(size - reserveSize/2); err != nil {
		t.Fatal(err)
	}
	f.Close()
	_, err = cli.Enqueue(t.Context(), "alice@local.test", []string{"bob@remote.test"}, []byte(testMessage))
	if !errors.Is(err, syscall.ENOSPC) || IsPermanent(err) {
		t.Errorf("client Enqueue without room for the reserve: %v, want a temporary ENOSPC", err)
	}
	if l, err := cli.List(); err != nil || len(l) != 0 {
		t.Errorf("spool after the refusal: %v, %v; want nothing", l, err)
	}
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Enqueue(t.Context(), "alice@local.test", []string{"bob@remote.test"}, []byte(testMessage)); err != nil {
		t.Errorf("client Enqueue once there is room: %v", err)
	}
}
