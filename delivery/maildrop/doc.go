// Package maildrop is the directory where `courriel sendmail` leaves a
// message when the running server cannot take it (not running, restarting,
// its local socket missing or refusing), and where the server picks it up:
// Postfix's maildrop/, written by postdrop and read by pickup. It knows
// the file format and the file-system rules; what a file's message becomes
// (an SMTP session on the local path) is the caller's business.
//
// # Who may write, who is named
//
// The directory is mode 1733 and belongs to the server: anyone may create
// a file in it (w, x), nobody but the server may list it (no r), and the
// sticky bit keeps one user from removing or renaming another's file.
// That is Postfix's maildrop before postdrop existed. The alternative, a
// setgid helper and a 1730 directory, needs a second, privileged binary
// that packages would have to install with the right group; one binary
// that is never setgid is simpler to audit, and the sticky directory gives
// what matters here:
//
//   - the submitter is the file's owner as the kernel recorded it (fstat
//     of the opened file): a user cannot chown a file to someone else, so
//     the uid the server names in the Received: field is the writer's;
//     nothing written inside the file names anyone (the envelope has no
//     uid field, and one would be refused as malformed);
//   - a file is written 0600 by its owner under a temporary name
//     (.tmp-…), fsynced, then renamed to its final name; the server reads
//     final names only, so it never sees half a file, and nobody else can
//     read it (the server runs as root, or reads its own uid's files);
//   - a file is opened with O_NOFOLLOW|O_NONBLOCK and must be a regular
//     file with one link: a symlink, a FIFO, a directory or a hard link
//     to someone else's file (which would be submitted under that owner's
//     uid) is set aside (corrupt/, mode 0700) and logged, never read;
//   - everything in a file is bounded (envelope lines, recipient count,
//     message size) and parsed strictly; a file that does not parse is
//     set aside too, so nothing is tried twice in a loop.
//
// What a local user can still do, as with Postfix's world-writable
// maildrop: fill the file system with files (as they could their home),
// and keep a descriptor of their own file after the rename and change it
// while it is read. The latter only changes what they submit themselves:
// the parse is of the bytes read, which must still be well-formed.
//
// # Durability and duplicates
//
// Write returns once the file and its name are on disk: the file is
// fsynced before its rename, and after the rename the directory is fsynced
// when the writer may open it (root), else the file system is (syncfs: the
// writer cannot read a 1733 directory, and an fsync needs a descriptor).
// The server removes a file only after its message was stored or queued
// (the local session's 250), so a crash between the two submits it again
// when the server restarts: at least once, as Postfix's pickup. The file
// name is in the server's log line for the submission (maildrop=NAME), so
// a second submission of the same file can be recognised.
//
// # Format
//
// A file is an envelope of text lines, an empty line, then the message
// (CRLF lines, exactly size octets, nothing after):
//
//	courriel-maildrop 1
//	from alice@example.org        (optional; absent: the owner's login)
//	fullname Alice+20Martin       (optional)
//	extract                       (optional: recipients from the header, -t)
//	notify FAILURE,DELAY          (optional, DSN)
//	ret HDRS                      (optional, DSN)
//	envid abc                     (optional, DSN)
//	rcpt root                     (any number up to MaxRecipients)
//	size 1234
//
// Values are xtext (RFC 3461 §4): printable ASCII but '+' and '=' as they
// are, any other octet as +XX. Keys come in this order, each once but
// rcpt.
package maildrop
