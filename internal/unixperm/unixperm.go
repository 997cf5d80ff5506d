package unixperm

import (
	"io/fs"
	"syscall"
)

// Access bits, as in a mode's rwx triplets.
const (
	Read    = 4
	Write   = 2
	Execute = 1 // search, for a directory
)

// Allows says whether a process with uid and gid as its only identity (no
// supplementary groups, as Postfix's virtual(8) and Dovecot's mail
// processes run) may have access (a sum of Read, Write, Execute) to a file
// of that owner, group and mode: the owner's bits when it owns the file,
// else the group's when its gid is the file's, else the others' (ACLs
// aside).
func Allows(owner, group, mode uint32, uid, gid int, access uint32) bool {
	switch {
	case int64(owner) == int64(uid):
		mode >>= 6
	case int64(group) == int64(gid):
		mode >>= 3
	}
	return mode&access == access
}

// UserMayUse is Allows for a directory on the way to a user's files: a
// directory of root is the administrator's layout (the base, a domain's
// directory, a home the administrator made) and is trusted.
func UserMayUse(owner, group, mode uint32, uid, gid int, access uint32) bool {
	return owner == 0 || Allows(owner, group, mode, uid, gid, access)
}

// FileUserMayUse is UserMayUse for fi from an lstat or a stat (true when
// fi says nothing of an owner).
func FileUserMayUse(fi fs.FileInfo, uid, gid int, access uint32) bool {
	st, ok := fi.Sys().(*syscall.Stat_t)
	return !ok || UserMayUse(st.Uid, st.Gid, st.Mode, uid, gid, access)
}
