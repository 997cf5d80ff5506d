// Package unixperm decides file access the way the kernel decides it for
// an unprivileged process. courriel runs as root and works on users'
// maildirs for them; Postfix's virtual(8) and Dovecot did that work with the
// user's own uid and gid, and the kernel refused what that user could not
// reach. Asking the same question here keeps that boundary: a directory
// entry whose homeDirectory points into another user's home gets nothing
// there.
package unixperm
