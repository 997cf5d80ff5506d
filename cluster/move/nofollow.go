package move

import "syscall"

const noFollow = syscall.O_NOFOLLOW
