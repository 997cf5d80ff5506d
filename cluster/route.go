package cluster

import "errors"

// The refusals of Route: the login gets its protocol's temporary failure.
var (
	ErrHeld          = errors.New("cluster: the user is being moved away from this node")
	ErrHopsExhausted = errors.New("cluster: hop counter exhausted")
)

// Route says where the login of a user homed on node (home its home
// directory) goes: served here (remote false); passed through to n with
// the hop counter ttl; or refused for now: the node is not configured,
// the user is held here during a move (ErrHeld), or the session came
// through too many nodes already (ErrHopsExhausted). o is what a front
// node said, trusted when proxied. A single node (nil h) serves
// everybody here.
func (h *Hops) Route(node, home string, holds *Holds, o *Origin, proxied bool) (n Node, ttl int, remote bool, err error) {
	if h == nil {
		return Node{}, 0, false, nil
	}
	n, remote, err = h.c.Home(node)
	if err != nil {
		return Node{}, 0, false, err
	}
	if !remote {
		if holds.Held(home) {
			return Node{}, 0, false, ErrHeld
		}
		return Node{}, 0, false, nil
	}
	if ttl = o.NextTTL(proxied); ttl == 0 {
		return n, 0, true, ErrHopsExhausted
	}
	return n, ttl, true, nil
}
