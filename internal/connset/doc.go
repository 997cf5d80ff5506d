// Package connset keeps the sessions of one server and the rules on how
// many there may be: a cap on all of them, one per client address on the
// sessions not logged in (addresses of cluster nodes exempt), one per user
// and address on those logged in, the logins barred while their user is
// moved to another node (EndUser), and the listeners that Close stops.
// IMAP and ManageSieve each keep one Set.
package connset
