// Package scripts keeps a user's Sieve scripts in Dovecot Pigeonhole's
// file layout, so that an existing Pigeonhole installation is read as it
// is and a user can go back to Dovecot without migrating anything:
//
//	~/sieve/NAME.sieve       one file per script (Pigeonhole's sieve = file:~/sieve)
//	~/sieve/tmp/             where new versions are written before the rename
//	~/.dovecot.sieve         symbolic link "sieve/NAME.sieve" to the active script
//	                         (;active=~/.dovecot.sieve), absent when none is active
//
// Compiled .svbin files are ignored (and removed with their script). A
// regular file at ~/.dovecot.sieve (an installation older than the
// ManageSieve era) is what Pigeonhole makes of it: no script is reported
// active, delivery runs the file, and the first activation or deactivation
// copies it to ~/sieve/dovecot.orig.sieve before replacing it by the link.
//
// The home directory belongs to the user and is hostile: every path is
// opened through an os.Root, so no symbolic link leads out of it; files are
// read with bounded sizes; the active link is parsed, never followed
// blindly. Created files get Pigeonhole's modes (0600 files and 0700
// directories, or the storage directory's own mode when it exists) and,
// with Owner.Chown, the user's uid and gid.
//
// Store is used by ManageSieve to edit scripts and by delivery to find
// the active script (ActiveScript).
package scripts
