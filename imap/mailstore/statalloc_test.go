package mailstore

import "testing"

// A session in IDLE syncs its folder at every IdleCheck: with nothing
// changed, that is two stamps of new/ and cur/ and must not make garbage
// (a thousand idle sessions would make it every two seconds each).
func TestUnchangedSyncAllocations(t *testing.T) {
	st := testStore(t)
	for i := 1; i <= 3; i++ {
		deliverFile(t, st, "", i)
	}
	mb := openBox(t, NewRegistry(), st, "INBOX")
	if err := mb.Sync(false); err != nil {
		t.Fatal(err)
	}
	allocs := testing.AllocsPerRun(100, func() {
		if err := mb.Sync(false); err != nil {
			t.Fatal(err)
		}
	})
	if allocs > 0 {
		t.Errorf("a sync of an unchanged folder allocates %.0f times, want none", allocs)
	}
}
