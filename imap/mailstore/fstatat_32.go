//go:build linux && (386 || arm || mips || mipsle)

package mailstore

import "golang.org/x/sys/unix"

// sysFstatat is the fstatat(2) that fills unix.Stat_t on this
// architecture: fstatat64 on 32-bit ones, whose Stat_t is the kernel's
// stat64.
const sysFstatat = unix.SYS_FSTATAT64
