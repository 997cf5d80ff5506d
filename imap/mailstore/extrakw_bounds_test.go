package mailstore

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"
)

// rawExtra is a courriel-keywords of names and one message base with the
// keywords of indices refs, its CRC right: what a user, or a damaged
// disk, may leave.
func rawExtra(names []string, base string, refs []uint64) []byte {
	e := indexEncoder{}
	e.b = append(e.b, extraMagic...)
	e.b = append(e.b, 0, 0, 0, 0)
	start := len(e.b)
	e.uvarint(uint64(len(names)))
	for _, n := range names {
		e.str(n)
	}
	e.uvarint(1)
	e.str(base)
	e.uvarint(uint64(len(refs)))
	for _, r := range refs {
		e.uvarint(r)
	}
	binary.LittleEndian.PutUint32(e.b[start-4:], crc32.Checksum(e.b[start:], castagnoli))
	return e.b
}

func seqNames(prefix string, n int) []string {
	l := make([]string, n)
	for i := range l {
		l[i] = fmt.Sprintf("%s%05d", prefix, i)
	}
	return l
}

// decodeExtra refuses more than MaxExtraKeywords names, more than
// MaxExtraKeywords keywords on a message, empty and repeated names and a
// keyword twice on a message, and allocates from those bounds: a 16 MiB
// file of empty names allocated 272 MB and was taken.
func TestExtraDecodeRefusesHostile(t *testing.T) {
	refs := func(n int) []uint64 {
		l := make([]uint64, n)
		for i := range l {
			l[i] = uint64(i)
		}
		return l
	}
	ok := rawExtra([]string{"a", "b"}, "m1", []uint64{0, 1})
	if l, _, err := decodeExtra(string(ok), nil); err != nil || !slices.Equal(l["m1"], []string{"a", "b"}) {
		t.Fatalf("a good file: %q %v", l, err)
	}
	for what, data := range map[string][]byte{
		"more names than MaxExtraKeywords": rawExtra(seqNames("n", MaxExtraKeywords+1), "m1", nil),
		"an empty name":                    rawExtra([]string{"a", ""}, "m1", nil),
		"a name twice":                     rawExtra([]string{"a", "A"}, "m1", nil),
		"a keyword twice on a message":     rawExtra([]string{"a", "b"}, "m1", []uint64{1, 1}),
		"an index past the names":          rawExtra([]string{"a"}, "m1", []uint64{1}),
		"an empty base name":               rawExtra([]string{"a"}, "", []uint64{0}),
		"more keywords than names":         rawExtra(seqNames("n", 3), "m1", refs(4)),
	} {
		if _, _, err := decodeExtra(string(data), nil); err == nil {
			t.Errorf("%s: taken", what)
		}
	}

	// 16 MiB of empty names.
	n := 16 << 20
	e := indexEncoder{}
	e.b = append(e.b, extraMagic...)
	e.b = append(e.b, 0, 0, 0, 0)
	start := len(e.b)
	e.uvarint(uint64(n))
	e.b = append(e.b, make([]byte, n)...)
	e.uvarint(0)
	binary.LittleEndian.PutUint32(e.b[start-4:], crc32.Checksum(e.b[start:], castagnoli))
	data := string(e.b)
	var a, b runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&a)
	_, names, err := decodeExtra(data, nil)
	runtime.ReadMemStats(&b)
	if err == nil || len(names) > 0 {
		t.Errorf("16 MiB of empty names: %d names, err %v", len(names), err)
	}
	if got := b.TotalAlloc - a.TotalAlloc; got > 1<<20 {
		t.Errorf("16 MiB of empty names: %d bytes allocated", got)
	}
}

// A folder whose courriel-keywords names 40,000 keywords (a hostile or
// damaged file) opens at once, takes none of them, and keeps the file:
// it loaded them all, in minutes under the folder lock.
func TestExtraHostileFileOpensFastAndIsKept(t *testing.T) {
	st := testStore(t)
	deliverFile(t, st, "", 1)
	mb := openBox(t, NewRegistry(), st, "INBOX")
	m, _ := mb.Get(1)
	names := seqNames("n", 40000)
	refs := make([]uint64, len(names))
	for i := range refs {
		refs[i] = uint64(i)
	}
	data := rawExtra(names, m.Base, refs)
	path := filepath.Join(st.Path(), ExtraKeywordsFileName)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	mb2, err := NewRegistry().Open(st, "INBOX")
	if err != nil {
		t.Fatal(err)
	}
	defer mb2.Release()
	if d := time.Since(t0); d > 5*time.Second {
		t.Errorf("open took %v", d)
	}
	mb2.mu.Lock()
	n, broken := len(mb2.extraNames), mb2.extraBroken
	mb2.mu.Unlock()
	if n != 0 || !broken {
		t.Errorf("%d names taken, unusable %v; want none, unusable", n, broken)
	}
	if _, _, err := mb2.StoreFlags([]uint32{1}, StoreAdd, []string{"k0"}, nil); err != nil {
		t.Errorf("a lettered keyword: %v", err)
	}
	if got, _ := os.ReadFile(path); !bytes.Equal(got, data) {
		t.Errorf("the file was rewritten")
	}
}

// A file that cannot be read (here: past maxExtraSize, lowered) is
// logged and kept, not emptied by the next write: a change to keywords
// beyond the letters fails, the file stays as it was, and the keywords
// are all there once it can be read again. Before, the folder opened with
// no keywords beyond the letters and the next STORE wrote them away.
func TestExtraUnreadableFileKept(t *testing.T) {
	st := testStore(t)
	const N = 5
	for i := 1; i <= N; i++ {
		deliverFile(t, st, "", i)
	}
	reg := NewRegistry()
	mb, err := reg.Open(st, "INBOX")
	if err != nil {
		t.Fatal(err)
	}
	fillLetters(t, mb, 1, false)
	kw := seqNames("kw", 100)
	if _, _, err := mb.StoreFlags([]uint32{1, 2, 3, 4, 5}, StoreAdd, kw, nil); err != nil {
		t.Fatal(err)
	}
	mb.Release()
	reg.SaveAll()
	path := filepath.Join(st.Path(), ExtraKeywordsFileName)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}

	defer func(was int64) { maxExtraSize = was }(maxExtraSize)
	maxExtraSize = int64(len(data)) - 1
	reg2 := NewRegistry()
	mb2, err := reg2.Open(st, "INBOX")
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := mb2.StoreFlags([]uint32{2}, StoreAdd, []string{"other"}, nil); !errors.Is(err, errExtraUnusable) {
		t.Errorf("STORE of another keyword: %v, want %v", err, errExtraUnusable)
	}
	if _, _, err := mb2.StoreFlags([]uint32{2}, StoreReplace, []string{"other"}, nil); !errors.Is(err, errExtraUnusable) {
		t.Errorf("STORE FLAGS: %v, want %v", err, errExtraUnusable)
	}
	if _, err := mb2.Append(strings.NewReader("Subject: a\n\na\n"), []string{"other"}, time.Time{}); err == nil {
		t.Errorf("APPEND with a keyword beyond the letters taken")
	}
	if _, err := mb2.Expunge(func(uid uint32) bool { return uid == 5 }, false); err != nil {
		t.Fatal(err)
	}
	mb2.Release()
	reg2.SaveAll()
	if got, _ := os.ReadFile(path); !bytes.Equal(got, data) {
		t.Fatalf("the file was rewritten (%d bytes, was %d)", len(got), len(data))
	}

	maxExtraSize = int64(len(data))
	mb3 := openBox(t, NewRegistry(), st, "INBOX")
	for uid := uint32(1); uid <= 4; uid++ {
		if got := namesOf(t, mb3, uid); len(got) != 100 {
			t.Errorf("UID %d: %d keywords once the file is read, want 100", uid, len(got))
		}
	}
}

// A write that would make courriel-keywords larger than maxExtraSize is
// refused (ErrTooManyKeywords) and changes nothing: before, it was
// written, and not read back at the next open.
func TestExtraWriteBound(t *testing.T) {
	st := testStore(t)
	const N = 20
	for i := 1; i <= N; i++ {
		deliverFile(t, st, "", i)
	}
	mb := openBox(t, NewRegistry(), st, "INBOX")
	fillLetters(t, mb, 1, false)
	if _, _, err := mb.StoreFlags([]uint32{1}, StoreAdd, []string{"first"}, nil); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(st.Path(), ExtraKeywordsFileName)
	data, _ := os.ReadFile(path)
	defer func(was int64) { maxExtraSize = was }(maxExtraSize)
	maxExtraSize = 2048
	uids := make([]uint32, N)
	for i := range uids {
		uids[i] = uint32(i + 1)
	}
	before := namesOf(t, mb, 1)
	if _, _, err := mb.StoreFlags(uids, StoreAdd, seqNames("kw", 100), nil); !errors.Is(err, ErrTooManyKeywords) {
		t.Fatalf("STORE past the file's bound: %v, want %v", err, ErrTooManyKeywords)
	}
	if got := namesOf(t, mb, 1); !slices.Equal(got, before) {
		t.Errorf("FLAGS %q after the refused STORE, want %q", got, before)
	}
	if got := namesOf(t, mb, 2); len(got) != 0 {
		t.Errorf("UID 2: FLAGS %q after the refused STORE", got)
	}
	if got, _ := os.ReadFile(path); !bytes.Equal(got, data) {
		t.Errorf("the file changed")
	}
	if _, err := mb.Append(strings.NewReader("Subject: a\n\na\n"), seqNames("a-rather-long-keyword-", 120), time.Time{}); !errors.Is(err, ErrTooManyKeywords) {
		t.Errorf("APPEND past the file's bound: %v, want %v", err, ErrTooManyKeywords)
	}
}

// A message takes at most MaxMessageExtraKeywords keywords beyond the
// letters: a STORE past it is refused before anything changes, an APPEND
// stores the message without the excess. Before, a message took up to
// MaxExtraKeywords (STORE 1:* +FLAGS of 1000 names over 400 messages: 3.8
// s, 16.5 KB a message).
func TestExtraPerMessageBound(t *testing.T) {
	t.Parallel()
	st := testStore(t)
	for i := 1; i <= 3; i++ {
		deliverFile(t, st, "", i)
	}
	mb := openBox(t, NewRegistry(), st, "INBOX")
	fillLetters(t, mb, 1, false)
	if _, _, err := mb.StoreFlags([]uint32{1, 2}, StoreAdd, seqNames("a", MaxMessageExtraKeywords+1), nil); !errors.Is(err, ErrTooManyKeywords) {
		t.Errorf("STORE of %d: %v, want %v", MaxMessageExtraKeywords+1, err, ErrTooManyKeywords)
	}
	if _, _, err := mb.StoreFlags([]uint32{2}, StoreAdd, seqNames("b", 100), nil); err != nil {
		t.Fatal(err)
	}
	// 1 and 3 could take 60 more, 2 not: none does.
	if _, _, err := mb.StoreFlags([]uint32{1, 2, 3}, StoreAdd, seqNames("c", 60), nil); !errors.Is(err, ErrTooManyKeywords) {
		t.Errorf("STORE past the bound on one message: %v, want %v", err, ErrTooManyKeywords)
	}
	for _, uid := range []uint32{1, 3} {
		if got := namesOf(t, mb, uid); len(got) != 0 {
			t.Errorf("UID %d: FLAGS %q after the refused STORE", uid, got)
		}
	}
	if got := namesOf(t, mb, 2); len(got) != 100 {
		t.Errorf("UID 2: %d keywords after the refused STORE, want 100", len(got))
	}
	// Replacing them is within the bound.
	if _, _, err := mb.StoreFlags([]uint32{2}, StoreReplace, seqNames("c", MaxMessageExtraKeywords), nil); err != nil {
		t.Errorf("STORE FLAGS of %d: %v", MaxMessageExtraKeywords, err)
	}
	u, err := mb.Append(strings.NewReader("Subject: a\n\na\n"), seqNames("d", MaxMessageExtraKeywords+10), time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if got := namesOf(t, mb, u); len(got) != MaxMessageExtraKeywords {
		t.Errorf("APPEND of %d: %d kept, want %d", MaxMessageExtraKeywords+10, len(got), MaxMessageExtraKeywords)
	}
}
