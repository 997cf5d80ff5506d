// Package control is the running server's local control socket: a unix
// socket in the queue directory through which root's commands (courriel
// move-user) ask `courriel serve` to act with its live state (the users
// held, the sessions open), which another process cannot reach.
//
// Only the peer's credentials (SO_PEERCRED) admit a client: uid 0 or the
// server's own uid; the socket file is 0600 as a second fence. A server
// for everyone (mailq's listing) says so in its Options: Allow and Mode. The
// protocol is lines of printable ASCII: the client sends one request line,
// a command and its arguments separated by single spaces (at most
// MaxRequest bytes, MaxArgs words); the server answers zero or more
// progress lines "* text", then one final line "OK text" or "NO text",
// and closes. A client that goes away cancels the request's context.
package control
