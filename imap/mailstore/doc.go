// Package mailstore keeps one user's Maildir++ folders: folder names, message
// files and their flags, UIDs (in Dovecot's own dovecot-uidlist), an on-disk
// cache of message metadata, and the change log that IMAP sessions sharing a
// folder read to learn what the others did. Every path is resolved through an
// os.Root opened at the user's maildir, so no name or symlink leads out of it;
// OpenStoreUnder reaches that maildir from the configured base with no
// symlink on the way.
//
// It speaks no protocol: flags are their IMAP names as strings, and what
// RFC 3501 and RFC 9051 ask of a store is given as plain operations — the
// one session a message is \Recent for (ClaimRecent), UIDVALIDITY values
// never reused for a name (Dovecot's dovecot-uidvalidity counter), a change
// log entry when another program renumbered a folder (Invalidated), a
// modification sequence per message and per folder with the expunges
// behind VANISHED (RFC 7162; courriel-modseq, see modseq.go: every change
// the change log records gets one, changes other programs made while the
// folder was closed included). A folder left alone opens from
// courriel-state (state.go), its last state in memory, without a listing
// of its directories, while the files it was made from are unchanged and
// the directories keep stamps taken well after their last change. A large
// folder stays loaded for a while after its last session (within a memory
// budget; see Registry.keepLocked), and is taken back only when those same
// stamps, and the directory at its path, are as it left them.
// Dovecot can work on the same maildir at the same time: its uidlist lock,
// file formats and numbering are honoured in both directions. The uidlist,
// read under its lock, is the source of truth for UIDs: a file it numbers
// keeps that UID and is never listed twice, and a message another program
// numbered is shown in UID order, never below what a session knows (see
// records.go); a sync reads new/ before cur/, as Dovecot does, and looks
// again, then under the lock, for a file missing while the directories
// were changing before it declares it gone, and gives the second of two
// files of one base name (a backup restored beside the messages) a fresh
// base, as Dovecot does, so that both are shown (see syncPass); flag changes
// rename files under that lock, as Dovecot's do (see storeFlagsLocked),
// and when another process holds it past the wait, the sessions get the
// new flags at once and the renames wait for the lock (see flagChange).
// A sync's own renames (new/ to cur/, a cur/ name given its missing
// ":2,") are not all made under it (see syncPass).
// On a full
// disk a folder still opens: the uidlist lock needs no data block, and
// files that cannot be numbered for want of room wait, unseen and with
// nothing written, for a sync with room (see assignLocked). A folder that
// was never numbered (no dovecot-uidlist) and has messages is the
// exception: shown without room it would be empty, under a UIDVALIDITY
// not kept, so its open is refused until there is room
// (ErrNoRoomToOpen), as Dovecot refuses it.
// Keywords are Dovecot's: the maildir letters a..z in the file names,
// named by dovecot-keywords, 26 per folder and never freed. Past them a
// message's further keywords are kept by its base name in
// courriel-keywords (ExtraKeywordsFileName), where Dovecot keeps them in
// its index, so that STORE, APPEND, COPY and MOVE never fail for the
// keyword table; sessions see them with the others (FlagsOf, FlagNamesOf,
// DefinedFlags); it is written under its own dotlock, merged with what
// another courriel process on the folder wrote there meanwhile (see
// saveExtraLocked), and read again at a sync once another process
// changed it, so that sessions that only read (NOOP, IDLE) get its
// changes as flag changes (see refreshExtraLocked). Unlike Dovecot's
// index, that file is courriel's alone: Dovecot reading the maildir (an admin switching back) sees the 26
// lettered keywords, unchanged, and not those beyond them. Beyond the
// letters a folder keeps up to MaxExtraKeywords (1024) distinct names, a
// message up to MaxMessageExtraKeywords (128), in a file of at most 64
// MiB: past a bound a STORE is refused with ErrTooManyKeywords (NO
// [LIMIT]) before anything changes, and APPEND, COPY and MOVE store the
// message without the excess (logged), or are refused whole when the file
// would be too large. A courriel-keywords that cannot be read (too large,
// malformed) is logged and kept as it is: the folder's keywords beyond the
// letters then cannot be changed (the command fails) until it is repaired
// or removed.
// A folder is deleted as Dovecot deletes one: its directory is renamed
// into the maildir's trash (TrashDir, Dovecot's "..DOVECOT-TRASHED"),
// so that its name goes at once, then removed; whoever still has it
// open writes into the trash, and a Mailbox detached by
// Registry.Forget writes nothing (see Store.Trash).
package mailstore
