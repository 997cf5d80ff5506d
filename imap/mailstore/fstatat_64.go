//go:build linux && (amd64 || arm64 || loong64 || mips64 || mips64le || ppc64 || ppc64le || riscv64 || s390x)

package mailstore

import "golang.org/x/sys/unix"

// sysFstatat is the fstatat(2) that fills unix.Stat_t on this
// architecture: newfstatat on 64-bit ones.
const sysFstatat = unix.SYS_NEWFSTATAT
