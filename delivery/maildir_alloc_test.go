package delivery

import "testing"

// TestMaildirRelAllocatesNothing: every copy checks its maildir path.
func TestMaildirRelAllocatesNothing(t *testing.T) {
	s := &Store{base: "/var/vmail"}
	if n := testing.AllocsPerRun(100, func() {
		if _, e := s.maildirRel("/var/vmail/xoyize.xyz/user/mailbox/"); e != nil {
			t.Fatal(e)
		}
	}); n != 0 {
		t.Errorf("%v allocations", n)
	}
}
