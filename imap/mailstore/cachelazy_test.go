package mailstore

import (
	"fmt"
	"testing"
)

// courriel-index is decoded as its entries are asked for, in UID order:
// asking for the first message decodes a few entries, not the folder's.
// What is asked for later, changed before being decoded (merged), or
// expunged before being decoded (gone) reads as if the index had been
// decoded whole at once; a save writes every entry, decoded or not.
func TestIndexDecodedAsAsked(t *testing.T) {
	t.Parallel()
	const n = 200
	st := testStore(t)
	for i := 1; i <= n; i++ {
		deliverFile(t, st, "", i)
	}
	reg := NewRegistry()
	mb := openBox(t, reg, st, "INBOX")
	uids := mb.UIDs()
	for _, u := range uids {
		mb.UpdateCached(u, Cached{Size: int64(u), Envelope: &Envelope{Subject: fmt.Sprint("subject ", u)}})
	}
	mb.SaveCache()

	// Another server: nothing in memory.
	reg2 := NewRegistry()
	mb2 := openBox(t, reg2, st, "INBOX")
	if c := mb2.Cached(uids[0]); c.Envelope == nil || c.Envelope.Subject != fmt.Sprint("subject ", uids[0]) {
		t.Fatalf("first message's cache %+v, want its envelope", c)
	}
	mb2.mu.Lock()
	decoded, pending := len(mb2.cache), mb2.cachePending != nil
	mb2.mu.Unlock()
	if decoded > 2 || !pending {
		t.Errorf("%d of %d entries decoded for the first message (pending: %v), want 1 or 2", decoded, n, pending)
	}
	// Changed before its entry was decoded: merged with it.
	mid := uids[n/2]
	mb2.UpdateCached(mid, Cached{Date: 12345})
	// Expunged before its entry was decoded: never back.
	last := uids[n-1]
	if _, _, err := mb2.StoreFlags([]uint32{last}, StoreAdd, []string{Deleted}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := mb2.Expunge(nil, true); err != nil {
		t.Fatal(err)
	}
	check := func(mb *Mailbox, what string) {
		t.Helper()
		for _, u := range uids[:n-1] {
			c := mb.Cached(u)
			if c.Envelope == nil || c.Envelope.Subject != fmt.Sprint("subject ", u) || c.Size != int64(u) {
				t.Fatalf("%s: UID %d cached %+v, want its envelope and size", what, u, c)
			}
			if u == mid && c.Date != 12345 {
				t.Errorf("%s: UID %d date %d, want the one set before its entry was decoded", what, u, c.Date)
			}
		}
		if c := mb.Cached(last); c.Envelope != nil || c.Size != 0 {
			t.Errorf("%s: expunged UID %d cached %+v, want nothing", what, last, c)
		}
	}
	check(mb2, "decoded as asked")
	mb2.SaveCache()
	check(openBox(t, NewRegistry(), st, "INBOX"), "saved after")
}
