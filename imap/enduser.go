package imap

import "context"

// EndUser closes every session of login (courriel move-user: the user's
// home is leaving this node), refuses the user's logins until release is
// called (once; more calls do nothing), and returns once the closed
// sessions have let go of the user's files, or ctx ends. The refusal
// covers a login that was already past its other checks when the move
// began. The user's folders kept loaded after their sessions (see
// mailstore.Registry.DropUser) are closed before it returns.
func (s *Server) EndUser(ctx context.Context, login string) (ended int, release func(), err error) {
	ended, release, err = s.conns.EndUser(ctx, login)
	s.reg.DropUser(login)
	return ended, release, err
}
