package queue

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Find returns the messages, queued or held, that s names, as a person
// types it to `courriel queue`: the one whose queue id s is, else every
// one whose msg_id s is (Message.MsgID: the id of the SMTP reply's
// "queued as" and of every log line about the message; letters compared
// without case), oldest first. Several messages can share a msg_id: a
// message and those its delivery made (its DSN, a Sieve redirect or
// vacation reply) carry the msg_id of the message they came of. Nothing
// found is an empty list and no error; ErrInvalidID: s can be neither id.
// It reads the spool, so it works beside the server.
func (q *Queue) Find(s string) ([]Summary, error) {
	if id, err := ParseID(s); err == nil {
		m, held, err := q.readAny(id)
		if err == nil {
			sum := m.summary()
			sum.Held = held
			return []Summary{sum}, nil
		}
		if !errors.Is(err, ErrNotFound) {
			return nil, err
		}
		// Not a queue id here: a msg_id may look like one (a DSN's is
		// its original's queue id when that had no msg_id).
	} else if !validMsgID(s) {
		return nil, fmt.Errorf("%w: %q is neither a queue id nor a msg_id", ErrInvalidID, printable(s, 60))
	}
	list, err := q.List()
	if err != nil {
		return nil, err
	}
	held, err := q.ListHeld()
	if err != nil {
		return nil, err
	}
	var out []Summary
	for _, sum := range append(list, held...) {
		if sum.MsgID != "" && strings.EqualFold(sum.MsgID, s) {
			out = append(out, sum)
		}
	}
	slices.SortFunc(out, func(a, b Summary) int {
		if c := a.Created.Compare(b.Created); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return out, nil
}

// readAny reads id's envelope from the queue or from hold/, and says which.
func (q *Queue) readAny(id string) (m *Message, held bool, err error) {
	m, err = q.sp.readEnvelope(id)
	if !errors.Is(err, ErrNotFound) {
		return m, false, err
	}
	m, err = q.sp.readEnvelopeAt(q.sp.heldPath(id, extEnvelope), id)
	return m, err == nil, err
}
