//go:build !unix

package tlsconf

import "os"

// sysFileID has nothing to add where there is no inode: size and mtime only.
func sysFileID(os.FileInfo, *fileID) {}
