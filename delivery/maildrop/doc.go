// Package maildrop is the directory where `courriel sendmail` leaves a
// message when the running server cannot take it (not running, restarting,
// its local socket missing or refusing), and where the server picks it up:
// Postfix's maildrop/, written by postdrop and read by pickup. It knows
// the file format and the file-system rules; what a file's message becomes
// (an SMTP session on the local path) is the caller's business.
//
// # Layout: one subdirectory per user
//
//	<queue.dir>/maildrop/            root, 1733: anyone may make an entry, nobody list
//	<queue.dir>/maildrop/<uid>/      the user's, 0700: made (or reused) by their sendmail
//	<queue.dir>/maildrop/<uid>/NAME  a message, 0600, the user's
//	<queue.dir>/maildrop-corrupt/    root, 0700: what is set aside, <uid>/NAME.RANDOM
//	<queue.dir>/maildrop-corrupt/removing/  directories being removed (Sweep)
//
// The maildrop is world-writable so that sendmail needs no privilege (one
// binary, never setgid; a setgid postdrop and a 1730 directory would need
// a second, privileged binary that packages install with the right group).
// A single shared directory cannot tell who put a file there: rename(2)
// keeps a file's owner and its single link, so a user could rename
// another's file (any they can rename, root's included) into it and have
// it submitted as that owner. With one subdirectory per user, the server
// takes a file only when all three agree:
//
//   - the subdirectory's name is a uid (decimal, canonical), and its
//     owner is that uid: an entry anyone else made first under that name
//     (to block the user, or to pose as them) is removed by the server
//     and logged; while the server is down, it makes that user's sendmail
//     exit 75 (not 0), the worst it can do;
//   - nobody but its owner may write the subdirectory (no w for group
//     or others): nobody else can put a file in it; a subdirectory its
//     owner opened up is left alone, unread, with a WARN at each look,
//     until the owner (or their next sendmail, which makes it 0700
//     again) closes it;
//   - the file's owner is that uid (fstat of the file opened with
//     O_NOFOLLOW|O_NONBLOCK; a regular file with one link): another
//     user's file renamed by the subdirectory's user into their own
//     subdirectory (root's too) has the wrong owner and is set aside,
//     never submitted as anyone; root's own mail is maildrop/0/.
//
// Nothing written inside a file names anyone (the envelope has no uid
// field, and one would be refused as malformed). The corrupt directory is
// outside the maildrop, in the spool that users may search but not write,
// and made before the maildrop is opened to them: nobody can make it
// first (a user's entry named "corrupt" in the maildrop is just a foreign
// entry). Set-aside names carry a random suffix, so a name used again and
// again never collides.
//
// Files are written 0600 under a temporary name (.tmp-…), fsynced, then
// renamed to their final name; the server reads final names only, so it
// never sees half a file. Everything in a file is bounded (envelope
// lines, recipient count, message size) and parsed strictly.
//
// # What one user can cost
//
//   - Inodes: at most MaxPerUser entries in their subdirectory (sendmail
//     writes no file past it, exit 75; the server removes what it finds
//     past it, the entries its listing returns after the first
//     MaxPerUser, at most a budget per look, with one WARN per user and
//     look); at most MaxSetAsidePerUser set aside (past it the file is
//     removed, with an ERROR); entries at the top of the maildrop other
//     than user subdirectories are removed at each look, a bounded number
//     (one WARN per look). A directory to remove (a foreign entry, a
//     user's own in their subdirectory) is first renamed into the trash,
//     maildrop-corrupt/removing/ (its name free at once: nobody keeps
//     another's uid), and removed there a bounded number of operations
//     per look, without recursion and so at any depth (Sweep). Block
//     quotas bound the bytes, as in their home.
//   - Mounts: an entry at the top that cannot be stat'ed (a user's FUSE
//     mount root may not enter) or is on another device than the
//     maildrop (a mount, which could claim any owner) is skipped, neither
//     read nor removed, and stops nobody else; a subdirectory or a file
//     on another device is never read, nor the trash entered there.
//   - Time: each look reads at most MaxPerUser names of a subdirectory
//     and submits at most a few files of each user, users in turn, so
//     one user's files hold nobody else's back; the server looks at most
//     once a second however many events a user causes, and never again at
//     once unless it took a file.
//   - Kernel memory: one inotify watch per user subdirectory at most; a
//     user's former subdirectory (moved away, made again) loses its
//     watch when the new one is watched, and a uid without one loses its
//     own at the next look (Watcher.Keep).
//   - Temporary files are judged stale by when the server first saw them
//     (StaleAfter), never by their mtime, which the owner sets; a file's
//     lifetime (queue.max_lifetime) runs from the earlier of its mtime and
//     that first sight, and also for a file the server cannot read (a
//     lease its owner holds: EAGAIN), which is then set aside.
//   - A user keeping a descriptor of their own file may change it while
//     it is read: that only changes what they submit themselves, and the
//     parse is of the bytes read, which must still be well-formed.
//
// # What becomes of a file
//
// The server submits it as its owner (the caller's business: the local
// SMTP session) and removes it after the 250. Refused for good, or not
// taken within the queue's lifetime, it is bounced to its sender (the
// owner's login when the file names none) and removed; what cannot be
// bounced (malformed, another owner's, the null or a bad sender, no
// recipient) is set aside with an ERROR naming the file. Nothing is
// retried in a loop, nothing disappears without a line in the log.
//
// # Durability and duplicates
//
// Write returns once the file and its name are on disk: the file is
// fsynced before its rename and the subdirectory (the writer's own, so
// they can open it) after it; when that last fsync fails, the file is
// removed again and Write fails, so sendmail's exit 75 ("not sent") is
// true, or at worst the server read it meanwhile (at least once). The
// server removes a file only after its message was stored or queued (the
// local session's 250), so a crash between the two submits it again when
// the server restarts: at least once, as Postfix's pickup. The file name
// is in the server's log line for the submission (maildrop=NAME), so a
// second submission of the same file can be recognised.
//
// # Upgrading from the single directory
//
// The first Setup of this layout (no maildrop-corrupt/.per-user-layout
// yet, which it then writes) moves what the earlier layout left at the
// top (final-named plain files, and the server's own corrupt/) into the
// corrupt directory as legacy-NAME.RANDOM, logged in one line: their
// writer cannot be known. Later starts move nothing: a plain file at the
// top is a foreign entry, removed at the next look.
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
