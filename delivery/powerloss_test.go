package delivery

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestPowerLoss cuts the power under concurrent deliveries, in each sync
// mode on the file system it is meant for: every copy acknowledged before
// the cut is in new/ after the file system is mounted again (journal
// replayed, or fsck'd when it has none), whole, and no file in new/ is
// partial, acknowledged or not. The file system is a loop-mounted ext4 or
// XFS image; its shutdown ioctl without a log flush stops it dead, as
// xfstests' godown does: whatever the kernel had not yet written to the
// device or committed to the journal is lost. (A SIGKILL, as in the integration crash
// test, keeps the page cache and cannot tell these modes apart.)
func TestPowerLoss(t *testing.T) {
	for _, tc := range []struct {
		name string
		fs   fsKind
		mode SyncMode // configured
		want SyncMode // what the Store must pick there
	}{
		{"journal on journaled ext4", ext4Journaled, SyncAuto, SyncJournal},
		{"file on journaled ext4", ext4Journaled, SyncFile, SyncFile},
		{"filesystem on ext4 without journal", ext4NoJournal, SyncAuto, SyncFilesystem},
		{"file on ext4 without journal", ext4NoJournal, SyncFile, SyncFile},
		{"journal configured on ext4 without journal", ext4NoJournal, SyncJournal, SyncFile},
		{"journal on xfs", xfs, SyncAuto, SyncJournal},
		{"file on xfs", xfs, SyncFile, SyncFile},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			fsys := mountLoop(t, tc.fs)
			base := fsys.mkdirDurable(t, "vmail")
			s := newStore(t, Options{AllowedBase: base, Sync: tc.mode})
			md := base + "/u/mailbox/"
			rcpt := []Recipient{{Address: "u@example.test", Maildir: md}}
			deliverOK(t, s, powerLossMessage(0), rcpt...)
			top, err := os.Open(fsys.dir)
			if err != nil {
				t.Fatal(err)
			}
			got := s.syncModeFor(top, fsys.dev(t))
			top.Close() // before the remount
			if got != tc.want {
				t.Fatalf("sync mode %v here, want %v", got, tc.want)
			}

			// Eight writers; the power goes after a random number of
			// acknowledged copies.
			cutAfter := 30 + rand.IntN(150)
			var (
				next    atomic.Int64
				cutting atomic.Bool // set before the cut starts
				mu      sync.Mutex
				acked   = map[int]bool{0: true}
				cut     = make(chan struct{})
				cutOnce sync.Once
				wg      sync.WaitGroup
			)
			next.Store(1)
			for range 8 {
				wg.Go(func() {
					for range 10000 {
						select {
						case <-cut:
							return
						default:
						}
						id := int(next.Add(1))
						if err := s.Deliver(context.Background(), powerLossMessage(id), rcpt)[0]; err != nil {
							continue // after the cut: every call fails
						}
						if cutting.Load() {
							// Acknowledged while the cut was under way: it
							// may have been durable or not (XFS shows
							// both); a real power cut has no "during".
							continue
						}
						mu.Lock()
						acked[id] = true
						n := len(acked)
						mu.Unlock()
						if n >= cutAfter {
							cutOnce.Do(func() {
								cutting.Store(true)
								fsys.shutdown(t)
								close(cut)
							})
						}
					}
				})
			}
			wg.Wait()
			if !cutting.Load() {
				t.Fatalf("the cut never came: %d copies acknowledged, want %d", len(acked), cutAfter)
			}
			s.Close()
			fsys.remount(t)

			found := map[int]int{}
			sizeRE := regexp.MustCompile(`,S=([0-9]+),`)
			for _, name := range files(t, md+"new") {
				data, err := os.ReadFile(filepath.Join(md, "new", name))
				if err != nil {
					t.Fatal(err)
				}
				id, whole := checkPowerLossCopy(data)
				m := sizeRE.FindStringSubmatch(name)
				if !whole || m == nil || m[1] != strconv.Itoa(len(data)) {
					t.Errorf("partial copy in new/ after the power cut: %s, %d bytes", name, len(data))
					continue
				}
				found[id]++
			}
			for id := range acked {
				if found[id] != 1 {
					t.Errorf("acknowledged copy %d is in new/ %d times after the power cut", id, found[id])
				}
			}
			t.Logf("%d copies acknowledged before the cut, %d whole copies in new/ after it", len(acked), len(found))
		})
	}
}

// powerLossMessage is message id: 24 KiB whose every line names it, so that
// a copy can be checked whole on its own.
func powerLossMessage(id int) *Message {
	m := testMessage(fmt.Sprintf("P%d", id))
	line := fmt.Sprintf("line of message %08d ..........................................\r\n", id)
	m.Body = bytes.NewReader([]byte(fmt.Sprintf("Subject: P%d\r\n\r\n%s", id, strings.Repeat(line, 24<<10/len(line)))))
	return m
}

// checkPowerLossCopy returns the id of a stored powerLossMessage and
// whether the copy is whole.
func checkPowerLossCopy(data []byte) (int, bool) {
	_, body, ok := bytes.Cut(data, []byte("\n\n"))
	if !ok {
		return 0, false
	}
	m := regexp.MustCompile(`(?m)^Subject: P([0-9]+)$`).FindSubmatch(data)
	if m == nil {
		return 0, false
	}
	id, err := strconv.Atoi(string(m[1]))
	if err != nil {
		return 0, false
	}
	want := contentBytes(powerLossMessage(id).Body)
	_, wantBody, _ := bytes.Cut(want, []byte("\r\n\r\n"))
	return id, bytes.Equal(body, bytes.ReplaceAll(wantBody, []byte("\r\n"), []byte("\n")))
}

type fsKind int

const (
	ext4Journaled fsKind = iota
	ext4NoJournal
	xfs
)

// loopFS is a file system image mounted on dir through a loop device.
type loopFS struct {
	img, dir string
	kind     fsKind
	mounted  bool
}

// mountLoop makes and mounts a file system image of the kind asked for
// (needs root, mkfs.ext4 or mkfs.xfs and loop devices: skipped without
// them, except in CI, which runs as root). The image is sparse.
func mountLoop(t *testing.T, kind fsKind) *loopFS {
	t.Helper()
	tmp := t.TempDir()
	l := &loopFS{img: filepath.Join(tmp, "fs.img"), dir: filepath.Join(tmp, "mnt"), kind: kind}
	size, mkfs := int64(128<<20), []string{"mkfs.ext4", "-q", "-F"}
	switch kind {
	case ext4NoJournal:
		mkfs = append(mkfs, "-O", "^has_journal")
	case xfs:
		size, mkfs = 320<<20, []string{"mkfs.xfs", "-q", "-f"} // 300 MiB at least
	}
	err := os.Mkdir(l.dir, 0o700)
	if err == nil {
		err = os.WriteFile(l.img, nil, 0o600)
	}
	if err == nil {
		err = os.Truncate(l.img, size)
	}
	if err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(mkfs[0], append(mkfs[1:], l.img)...).CombinedOutput(); err != nil {
		skipOutsideCI(t, "%s: %v: %s", mkfs[0], err, out)
	}
	if err := l.mount(); err != nil {
		if kind == xfs && !kernelHas("xfs") {
			// Not an install step CI could have missed: the kernel's.
			t.Skipf("this kernel has no XFS: %v", err)
		}
		skipOutsideCI(t, "%v", err)
	}
	t.Cleanup(func() {
		if l.mounted {
			if err := l.umount(); err != nil {
				t.Error(err)
			}
		}
	})
	return l
}

// kernelHas tells whether the running kernel knows file system type fstype
// (after a mount attempt has had it load the module).
func kernelHas(fstype string) bool {
	b, err := os.ReadFile("/proc/filesystems")
	return err == nil && regexp.MustCompile(`(?m)\s`+fstype+`$`).Match(b)
}

func skipOutsideCI(t *testing.T, format string, args ...any) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf(format, args...)
	}
	t.Skipf(format, args...)
}

func (l *loopFS) mount() error {
	if out, err := exec.Command("mount", "-o", "loop", l.img, l.dir).CombinedOutput(); err != nil {
		return fmt.Errorf("mount -o loop %s: %v: %s", l.img, err, out)
	}
	l.mounted = true
	return nil
}

// mkdirDurable makes directory name at the top of the file system and syncs it.
func (l *loopFS) mkdirDurable(t *testing.T, name string) string {
	t.Helper()
	p := filepath.Join(l.dir, name)
	if err := os.Mkdir(p, 0o755); err != nil {
		t.Fatal(err)
	}
	top, err := os.Open(l.dir)
	if err == nil {
		err = top.Sync()
		top.Close()
	}
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// dev is the mounted file system's device number.
func (l *loopFS) dev(t *testing.T) uint64 {
	var st unix.Stat_t
	if err := unix.Stat(l.dir, &st); err != nil {
		t.Fatal(err)
	}
	return st.Dev
}

// shutdown stops the file system dead: nothing more reaches the device,
// the journal is not flushed, every later call fails. ext4's ioctl is
// XFS's GOINGDOWN, number and flags alike.
func (l *loopFS) shutdown(t *testing.T) {
	f, err := os.Open(l.dir)
	if err != nil {
		t.Error(err)
		return
	}
	defer f.Close()
	const ext4IOCShutdown = 0x8004587d // _IOR('X', 125, __u32)
	const goingFlagsNoLogFlush = 2
	if err := unix.IoctlSetPointerInt(int(f.Fd()), ext4IOCShutdown, goingFlagsNoLogFlush); err != nil {
		t.Errorf("EXT4_IOC_SHUTDOWN: %v", err)
	}
}

// umount unmounts the file system, retrying for up to five seconds: under a
// loaded parallel -race run the clean-up's single umount once failed with
// "target is busy" (cause not found; nothing of the test was open there).
func (l *loopFS) umount() error {
	for i := 0; ; i++ {
		out, err := exec.Command("umount", l.dir).CombinedOutput()
		if err == nil {
			l.mounted = false
			return nil
		}
		if i == 50 {
			return fmt.Errorf("umount %s: %v: %s", l.dir, err, out)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// remount unmounts the stopped file system and mounts it again: the
// journal (XFS: log) is replayed, or, without one, e2fsck repairs it first
// as an administrator would after a crash.
func (l *loopFS) remount(t *testing.T) {
	t.Helper()
	if err := l.umount(); err != nil {
		t.Fatal(err)
	}
	if l.kind == ext4NoJournal {
		// Exit status 1: errors corrected; 2 and above would mean trouble.
		out, err := exec.Command("e2fsck", "-fy", l.img).CombinedOutput()
		if ee, ok := err.(*exec.ExitError); err != nil && (!ok || ee.ExitCode() > 1) {
			t.Fatalf("e2fsck: %v: %s", err, out)
		}
	}
	if err := l.mount(); err != nil {
		t.Fatal(err)
	}
}
