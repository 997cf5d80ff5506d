package mailstore

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// The records appended after a snapshot win over it; a torn last line is
// ignored, not a reason to throw the file away.
func TestParseModFileTornTail(t *testing.T) {
	data := "COURRIEL-MODSEQ 1 77\nH 10\nR 11\nF 0\nM 1 0 5\nM 2 0 6\nV 3 7\n" +
		"M 2 400000000 12\nR 70000\nV 1 13\nM 4 0 1"
	f, err := parseModFile([]byte(data))
	if err != nil {
		t.Fatal(err)
	}
	if f.uidValidity != 77 || f.reserved != 70000 || f.highest != 13 {
		t.Errorf("header: %+v", f)
	}
	if _, ok := f.msgs[1]; ok {
		t.Error("UID 1 expunged by a later record is still a message")
	}
	if r := f.msgs[2]; r.modseq != 12 || r.flags != Flags(0x400000000) {
		t.Errorf("UID 2: %+v, want the later record", r)
	}
	if _, ok := f.msgs[4]; ok {
		t.Error("the torn last record was taken")
	}
	if want := []Vanished{{3, 7}, {1, 13}}; !slices.Equal(f.vanished, want) {
		t.Errorf("vanished %v, want %v", f.vanished, want)
	}
	if _, err := parseModFile(indexMagic); err == nil {
		t.Error("another file's header was accepted")
	}
}

// Expunges beyond the bound are forgotten: VanishedSince says so for a
// client resynchronising from before them, and still answers one after.
func TestVanishedForgottenBeyondBound(t *testing.T) {
	st := testStore(t)
	reg := NewRegistry()
	mb := openBox(t, reg, st, "INBOX")
	mb.mu.Lock()
	start := mb.mod.highest
	for i := range maxVanished + 10 {
		mb.noteModLocked(Change{Kind: Expunged, UID: uint32(i + 1)}, nil)
	}
	mb.mu.Unlock()
	if uids, complete := mb.VanishedSince(start); complete {
		t.Errorf("from before the forgotten expunges: complete with %d UIDs", len(uids))
	}
	recent := mb.HighestModSeq() - 5
	uids, complete := mb.VanishedSince(recent)
	if !complete || len(uids) != 5 || uids[4] != maxVanished+10 {
		t.Errorf("VanishedSince(highest-5) = %v, %v", uids, complete)
	}
}

// The file is ours alone and stays within the folder; a release after a
// change leaves the reservation lowered again (no jump at the next load).
func TestReleaseLowersReservation(t *testing.T) {
	st := testStore(t)
	reg := NewRegistry()
	deliverFile(t, st, ".", 1)
	mb, err := reg.Open(st, "INBOX")
	if err != nil {
		t.Fatal(err)
	}
	uids := mb.UIDs()
	if _, _, err := mb.StoreFlags(uids, StoreAdd, []string{`\Seen`}, nil); err != nil {
		t.Fatal(err)
	}
	h := mb.HighestModSeq()
	mb.Release()
	data, err := os.ReadFile(filepath.Join(st.Path(), ModSeqFileName))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
	if last := lines[len(lines)-1]; !strings.HasPrefix(last, "R ") {
		t.Errorf("last record %q, want the lowered reservation", last)
	}
	mb = openBox(t, reg, st, "INBOX")
	if got := mb.HighestModSeq(); got != h {
		t.Errorf("HIGHESTMODSEQ %d after a clean release, was %d", got, h)
	}
}
