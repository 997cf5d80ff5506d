package mailstore

import "testing"

// FirstUnseen finds SELECT's UNSEEN in a session's view: the position in
// the view, passing over UIDs expunged since the view was taken.
func TestFirstUnseen(t *testing.T) {
	t.Parallel()
	st := testStore(t)
	for i := 1; i <= 4; i++ {
		deliverFile(t, st, "", i)
	}
	mb := openBox(t, NewRegistry(), st, "INBOX")
	if _, _, err := mb.StoreFlags([]uint32{1, 2, 4}, StoreAdd, []string{Seen}, nil); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		view []uint32
		want uint32
	}{
		{[]uint32{1, 2, 3, 4}, 3},
		{[]uint32{1, 2, 4}, 0},
		{[]uint32{2, 3}, 2},
		{[]uint32{1, 2, 3, 4, 9}, 3},
		{nil, 0},
	}
	for _, tc := range tests {
		if got := mb.FirstUnseen(tc.view); got != tc.want {
			t.Errorf("FirstUnseen(%v) = %d, want %d", tc.view, got, tc.want)
		}
	}
	// Expunged since the view was taken: passed over.
	if _, _, err := mb.StoreFlags([]uint32{3}, StoreAdd, []string{Deleted}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := mb.Expunge(nil, true); err != nil {
		t.Fatal(err)
	}
	if got := mb.FirstUnseen([]uint32{1, 2, 3, 4}); got != 0 {
		t.Errorf("after the expunge of 3: %d, want 0", got)
	}
}
