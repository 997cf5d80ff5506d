package mailstore

import (
	"encoding/binary"
	"fmt"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// listNames returns the names of directory f but . and .., read with
// getdents64. The names of each read are slices of one block sized for
// them, one allocation for a thousand names where Readdirnames makes one
// a name (100,000 in a large cur/) and grows its list as it goes: less
// garbage, fewer objects for the collector to mark while the folder is
// loaded. A block is exactly its names (a message's name keeps its block
// alive: a delivered message's is its own). hint is the expected count
// (the list's first size); a large one reads 64 KiB at a time. step (nil:
// none) is called after each read.
func listNames(f *os.File, hint int, step func()) ([]string, error) {
	rc, err := f.SyscallConn()
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, max(hint, 16))
	buf := make([]byte, 8<<10)
	if hint > 256 {
		buf = make([]byte, 64<<10)
	}
	for {
		var n int
		var gerr error
		if err := rc.Read(func(fd uintptr) bool {
			for {
				n, gerr = unix.Getdents(int(fd), buf)
				if gerr != unix.EINTR {
					return true
				}
			}
		}); err != nil {
			return nil, err
		}
		if gerr != nil {
			return nil, fmt.Errorf("getdents: %w", gerr)
		}
		if n <= 0 {
			return names, nil
		}
		if step != nil {
			step()
		}
		// struct linux_dirent64: d_ino (8), d_off (8), d_reclen (2),
		// d_type (1), d_name (NUL-terminated, padded to d_reclen).
		// Two passes: the names' length, then the names.
		recs := buf[:n]
		total := 0
		for off := 0; off < len(recs); {
			name, next, err := direntName(recs, off)
			if err != nil {
				return nil, err
			}
			total += len(name)
			off = next
		}
		block := make([]byte, 0, total)
		for off := 0; off < len(recs); {
			name, next, _ := direntName(recs, off)
			off = next
			if len(name) == 0 || string(name) == "." || string(name) == ".." {
				continue
			}
			start := len(block)
			block = append(block, name...) // within its capacity: never moved
			names = append(names, unsafe.String(unsafe.SliceData(block[start:]), len(name)))
		}
	}
}

// direntName returns the name of the linux_dirent64 record at off in
// recs, and where the next record starts.
func direntName(recs []byte, off int) (name []byte, next int, err error) {
	if len(recs)-off < 19 {
		return nil, 0, fmt.Errorf("getdents: short record")
	}
	reclen := int(binary.NativeEndian.Uint16(recs[off+16:]))
	if reclen < 19 || reclen > len(recs)-off {
		return nil, 0, fmt.Errorf("getdents: bad record length %d", reclen)
	}
	name = recs[off+19 : off+reclen]
	for i, c := range name {
		if c == 0 {
			name = name[:i]
			break
		}
	}
	return name, off + reclen, nil
}
