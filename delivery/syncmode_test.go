package delivery

import (
	"context"
	"errors"
	"os"
	"syscall"
	"testing"
)

// TestSyncModes: each mode delivers whole copies, and each makes the
// content durable the way it says: a failing syncfs defeats the filesystem
// mode when copies are written concurrently (4xx, nothing in new/) and is
// never called in the file mode or for a copy written alone; a
// failing fsync of the file (injected as a write-back error through the
// same path) is covered by TestDeliverWriteFailure and the tmpfs test.
func TestSyncModes(t *testing.T) {
	t.Parallel()
	eio := &os.PathError{Op: "syncfs", Path: "x", Err: syscall.EIO}
	tests := []struct {
		mode       SyncMode
		syncfsUsed bool
	}{
		{SyncFile, false},
		{SyncFilesystem, true},
	}
	for _, tc := range tests {
		t.Run(tc.mode.String(), func(t *testing.T) {
			t.Parallel()
			base := t.TempDir()
			s := newStore(t, Options{AllowedBase: base, Sync: tc.mode})
			md := base + "/u/mailbox/"
			rcpt := Recipient{Address: "x@y.z", Maildir: md}
			deliverOK(t, s, testMessage("S1"), rcpt)
			if _, data := onlyNew(t, md); len(data) == 0 {
				t.Fatal("empty copy")
			}

			calls := 0
			s.fsSyncer.sync = func(*os.File) error { calls++; return eio }
			// A copy written alone is fsynced in either mode.
			deliverOK(t, s, testMessage("S2"), rcpt)
			if calls != 0 {
				t.Fatalf("syncfs called %d times for a copy written alone", calls)
			}
			s.writing.Add(1) // as if another copy were being written
			defer s.writing.Add(-1)
			err := s.Deliver(context.Background(), testMessage("S3"), []Recipient{rcpt})[0]
			if (calls > 0) != tc.syncfsUsed {
				t.Errorf("syncfs called %d times, want used=%v", calls, tc.syncfsUsed)
			}
			if !tc.syncfsUsed {
				if err != nil {
					t.Fatalf("file mode failed on a syncfs error it does not use: %v", err)
				}
				return
			}
			var e *Error
			if !errors.As(err, &e) || !e.Temporary || !errors.Is(err, syscall.EIO) {
				t.Fatalf("error %v, want a temporary *Error wrapping EIO", err)
			}
			if got := files(t, md+"new"); len(got) != 2 {
				t.Errorf("new/ holds %v: the unsynced copy must not be named", got)
			}
			treeEmpty(t, md+"tmp")
		})
	}
}

func TestHasJournalOption(t *testing.T) {
	t.Parallel()
	tests := []struct {
		options string
		want    bool
	}{
		{"rw\nbsddf\ndelalloc\nbarrier\nerrors=continue\ncommit=5\n", false}, // ext4 -O ^has_journal
		{"rw\ndelalloc\ndata=ordered\nbarrier\n", true},
		{"rw\ndata=journal\n", true},
		{"rw\ndata=writeback\n", true},
		{"", false},
	}
	for _, tc := range tests {
		if got := hasJournalOption(tc.options); got != tc.want {
			t.Errorf("hasJournalOption(%q) = %v, want %v", tc.options, got, tc.want)
		}
	}
}

func TestParseSyncMode(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]SyncMode{"": SyncAuto, "auto": SyncAuto, "file": SyncFile, "filesystem": SyncFilesystem, "journal": SyncJournal} {
		got, err := ParseSyncMode(in)
		if err != nil || got != want {
			t.Errorf("ParseSyncMode(%q) = %v, %v; want %v", in, got, err, want)
		}
		if in != "" && got.String() != in {
			t.Errorf("%v.String() = %q, want %q", got, got.String(), in)
		}
	}
	for _, bad := range []string{"fsync", "File", "none"} {
		if _, err := ParseSyncMode(bad); err == nil {
			t.Errorf("ParseSyncMode(%q) accepted", bad)
		}
	}
}
