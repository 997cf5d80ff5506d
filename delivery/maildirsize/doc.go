// Package maildirsize keeps a maildir's Maildir++ quota file, `maildirsize`
// in the maildir's root, the way Dovecot's maildir++ quota backend does, so
// that courriel and Dovecot can take turns on the same maildirs and keep one
// count: the first line is the limits ("<bytes>S,<messages>C", a zero or a
// missing part meaning no limit), every other line a change in usage
// ("<bytes> <messages>", negative for removals), appended with one write.
// The usage is the sum of the lines. The file is computed afresh from the
// folders (sizes from Dovecot's S= in file names) when it is missing,
// unreadable, larger than 5,120 bytes, when its limits differ from the ones
// given, or when it holds removals and is older than 15 minutes, as the
// Maildir++ specification says; the new file replaces the old one with a
// rename.
package maildirsize
