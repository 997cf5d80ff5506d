package queue

import (
	"context"
	"errors"
	"slices"
	"testing"

	"courriel/delivery"
)

// Find takes a queue id or a msg_id (the SMTP reply's "queued as"), in
// the queue or held: a msg_id names every message that carries it.
func TestFind(t *testing.T) {
	o := baseOptions(t, t.TempDir(), newClock())
	q, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	accept := func(msgID string) string {
		t.Helper()
		id, _, err := q.Accept(context.Background(), msgID, "alice@local.test", []string{"x@remote.test"}, nil, delivery.MemContent(testMessage))
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	a1, a2, b := accept("AGRFC7TVPMAAFWZT"), accept("AGRFC7TVPMAAFWZT"), accept("BXQ2")
	if err := q.Hold(a2); err != nil {
		t.Fatal(err)
	}
	ids := func(l []Summary) (out []string) {
		for _, s := range l {
			out = append(out, s.ID)
		}
		return out
	}
	for _, tt := range []struct {
		s    string
		want []string
	}{
		{"AGRFC7TVPMAAFWZT", []string{a1, a2}},
		{"agrfc7tvpmaafwzt", []string{a1, a2}},
		{"BXQ2", []string{b}},
		{b, []string{b}},
		{a2, []string{a2}},
		{"NOSUCHID", nil},
		{"00000000000000000000000000000000", nil},
	} {
		got, err := q.Find(tt.s)
		if err != nil || len(got) != len(tt.want) {
			t.Errorf("Find(%q) = %v, %v; want %v", tt.s, ids(got), err, tt.want)
			continue
		}
		// One clock tick: the order is the ids'.
		if slices.Sort(tt.want); !slices.Equal(ids(got), tt.want) {
			t.Errorf("Find(%q) = %v, want %v", tt.s, ids(got), tt.want)
		}
	}
	if got, _ := q.Find(a2); len(got) != 1 || !got[0].Held || got[0].MsgID != "AGRFC7TVPMAAFWZT" {
		t.Errorf("Find of the held one: %+v", got)
	}
	for _, bad := range []string{"../x", "", "a b"} {
		if _, err := q.Find(bad); !errors.Is(err, ErrInvalidID) {
			t.Errorf("Find(%q): %v, want ErrInvalidID", bad, err)
		}
	}
}
