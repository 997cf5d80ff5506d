package main

import (
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

func TestReadListeners(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	tcp := filepath.Join(dir, "tcp")
	// Lines as a little-endian kernel prints them: 127.0.0.1:25 and
	// 0.0.0.0:587 listening, one established connection.
	os.WriteFile(tcp, []byte(`  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:0019 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1111 1 0000000000000000 100 0 0 10 0
   1: 00000000:024B 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2222 1 0000000000000000 100 0 0 10 0
   2: 0100007F:0019 0100007F:A1B2 01 00000000:00000000 00:00000000 00000000     0        0 3333 1 0000000000000000 100 0 0 10 0
`), 0o600)
	tcp6 := filepath.Join(dir, "tcp6")
	os.WriteFile(tcp6, []byte(`  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000001000000:03E1 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4444 1 0000000000000000 100 0 0 10 0
`), 0o600)
	got, err := readListeners(tcp)
	if err != nil {
		t.Fatal(err)
	}
	got6, err := readListeners(tcp6)
	if err != nil {
		t.Fatal(err)
	}
	got = append(got, got6...)
	want := []struct {
		ip    string
		port  int
		inode uint64
	}{{"127.0.0.1", 25, 1111}, {"0.0.0.0", 587, 2222}, {"::1", 993, 4444}}
	if len(got) != len(want) {
		t.Fatalf("got %+v, want %v", got, want)
	}
	for i, w := range want {
		if !got[i].ip.Equal(net.ParseIP(w.ip)) || got[i].port != w.port || got[i].inode != w.inode {
			t.Errorf("socket %d = %v:%d inode %d, want %s:%d inode %d", i, got[i].ip, got[i].port, got[i].inode, w.ip, w.port, w.inode)
		}
	}
}

// On this machine's /proc: a listener of this process is found and
// recognised as this process's, on its address and on the wildcard.
func TestListenerOwnedByProcess(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	addr := ln.Addr().(*net.TCPAddr)
	mine, err := socketInodes(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range []string{addr.String(), ":" + itoa(addr.Port)} {
		inodes, err := listenerInodes(a)
		if err != nil {
			t.Fatal(err)
		}
		if len(inodes) != 1 || !mine[inodes[0]] {
			t.Errorf("listenerInodes(%s) = %v; want this process's socket", a, inodes)
		}
	}
	note, err := checkListen(addr.String(), os.Getpid(), nil)
	if err != nil || !strings.Contains(note, "held by the running courriel") {
		t.Errorf("checkListen of our own port: %q, %v", note, err)
	}
	// The same port, another owner: the init process holds none of ours.
	if _, err := checkListen(addr.String(), 1, nil); err == nil {
		t.Error("a port held by this process passed as pid 1's")
	}
	if _, err := checkListen(addr.String(), 0, nil); err == nil || !strings.Contains(err.Error(), "another program") {
		t.Errorf("a busy port with no courriel running: %v", err)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }
