package imap

import (
	"context"
	"strings"
	"sync"
	"time"
)

// EndUser closes every session of login (courriel move-user: the user's
// home is leaving this node), refuses the user's logins until release is
// called (once; more calls do nothing), and returns once the closed
// sessions have let go of the user's files, or ctx ends. The refusal
// covers a login that was already past its other checks when the move
// began.
func (s *Server) EndUser(ctx context.Context, login string) (ended int, release func(), err error) {
	prefix := login + "\x00"
	var closed []*session
	s.mu.Lock()
	if s.barred == nil {
		s.barred = map[string]int{}
	}
	s.barred[login]++
	for se := range s.sessions {
		if strings.HasPrefix(se.userKey, prefix) {
			_ = se.raw.Close()
			closed = append(closed, se)
		}
	}
	s.mu.Unlock()
	var once sync.Once
	release = func() {
		once.Do(func() {
			s.mu.Lock()
			if s.barred[login]--; s.barred[login] <= 0 {
				delete(s.barred, login)
			}
			s.mu.Unlock()
		})
	}
	// Sessions leave s.sessions in dropSession, after closing their
	// folders: polled, a move is rare.
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for {
		s.mu.Lock()
		left := 0
		for _, se := range closed {
			if _, ok := s.sessions[se]; ok {
				left++
			}
		}
		s.mu.Unlock()
		if left == 0 {
			return len(closed), release, nil
		}
		select {
		case <-ctx.Done():
			return len(closed), release, ctx.Err()
		case <-t.C:
		}
	}
}
