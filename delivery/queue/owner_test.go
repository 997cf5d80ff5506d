package queue

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A client never takes the owner lock, not even while no server holds it,
// so a server starting beside `courriel queue list` always becomes the owner;
// a second owner is refused with the first one's pid.
func TestOwnerAndClients(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	o := baseOptions(t, dir, newClock())
	co := o
	co.Client = true

	// Before any server ran: the client creates nothing.
	missing := filepath.Join(dir, "never")
	cm := co
	cm.Dir = missing
	if q, err := Open(cm); err == nil || !errors.Is(err, fs.ErrNotExist) {
		if q != nil {
			q.Close()
		}
		t.Fatalf("client Open of a missing spool: %v, want not exist", err)
	}
	if _, err := os.Stat(missing); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("client Open created %s", missing)
	}

	owner, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	if pid, err := OwnerPID(dir); err != nil || pid != os.Getpid() {
		t.Errorf("OwnerPID = %d, %v; want this process, %d", pid, err, os.Getpid())
	}
	b, _ := os.ReadFile(filepath.Join(dir, ownerFile))
	if strings.TrimSpace(string(b)) != fmt.Sprint(os.Getpid()) {
		t.Errorf(".owner holds %q, want the pid", b)
	}
	second, err := Open(o)
	if !errors.Is(err, ErrNotOwner) || !strings.Contains(fmt.Sprint(err), fmt.Sprintf("pid %d", os.Getpid())) {
		if second != nil {
			second.Close()
		}
		t.Errorf("second owner Open: %v, want ErrNotOwner naming pid %d", err, os.Getpid())
	}
	owner.Close()
	if pid, err := OwnerPID(dir); err != nil || pid != 0 {
		t.Errorf("OwnerPID after Close = %d, %v; want 0 (the pid in the file is stale)", pid, err)
	}

	// Clients open and close while nobody owns the spool, and hold it open
	// while a server starts: the server still becomes the owner.
	var clients []*Queue
	for range 3 {
		c, err := Open(co)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.List(); err != nil {
			t.Fatal(err)
		}
		clients = append(clients, c)
	}
	owner, err = Open(o)
	if err != nil {
		t.Fatalf("owner Open beside clients: %v", err)
	}
	defer owner.Close()
	if !owner.sp.owner() {
		t.Fatal("a server opening beside clients did not get the owner lock")
	}
	for _, c := range clients {
		if c.sp.owner() {
			t.Error("a client holds the owner lock")
		}
		c.Close()
	}
	if pid, _ := OwnerPID(dir); pid != os.Getpid() {
		t.Errorf("OwnerPID = %d after clients closed, want %d", pid, os.Getpid())
	}
}
