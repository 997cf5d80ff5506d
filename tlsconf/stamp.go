package tlsconf

import "os"

// fileID identifies one version of a file well enough to notice a renewal:
// an in-place rewrite changes mtime/ctime (and usually size), a rename or a
// symlink swap (certbot's live/ → archive/) changes the inode.
type fileID struct {
	size     int64
	mtimeNs  int64
	dev, ino uint64
	ctimeNs  int64
}

// pairStamp is the fileID of both files, taken before they are read: if a
// file changes between the stat and the read, the next check sees a new
// stamp and reads again.
type pairStamp struct {
	cert, key fileID
}

// statPair stats both files (following symlinks, as the reads do).
func statPair(certFile, keyFile string) (pairStamp, error) {
	c, err := statFile(certFile)
	if err != nil {
		return pairStamp{}, err
	}
	k, err := statFile(keyFile)
	if err != nil {
		return pairStamp{}, err
	}
	return pairStamp{cert: c, key: k}, nil
}

func statFile(path string) (fileID, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return fileID{}, err
	}
	id := fileID{size: fi.Size(), mtimeNs: fi.ModTime().UnixNano()}
	sysFileID(fi, &id)
	return id, nil
}
