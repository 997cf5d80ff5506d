package filter

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"courriel/delivery"
	"courriel/directory"
)

// A user's script that cannot be read for now (out of descriptors here)
// defers the copy, as Pigeonhole's temporary failure does, instead of
// delivering it past the user's filters; once it can be read, it decides.
// Not parallel: it lowers the process's descriptor limit.
func TestUnreadableScriptDefers(t *testing.T) {
	home := t.TempDir()
	if err := os.WriteFile(filepath.Join(home, ".dovecot.sieve"), []byte(`require "fileinto"; fileinto "Filtered";`), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := New(Options{Store: &delivery.Store{}, Directory: fakeDir{"u@x.y": &directory.Mailbox{Home: home}}})
	if err != nil {
		t.Fatal(err)
	}
	m := &delivery.Message{ID: "m", From: "s@z.z", Body: bytes.NewReader([]byte("Subject: s\r\n\r\nb\r\n"))}
	r := &delivery.Recipient{Address: "u@x.y"}
	plan := func() (*plan, error) {
		return f.plan(context.Background(), context.Background(), m, r, &messageReader{m: m}, &dupHolds{f: f, ctx: context.Background()})
	}

	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	low := lim
	low.Cur = 128
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &low); err != nil {
		t.Fatal(err)
	}
	var held []*os.File
	for range 256 {
		h, err := os.Open(os.DevNull)
		if err != nil {
			break
		}
		held = append(held, h)
	}
	_, err = plan()
	for _, h := range held {
		h.Close()
	}
	syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim)
	var de *delivery.Error
	if !errors.As(err, &de) || !de.Temporary || !errors.Is(err, syscall.EMFILE) {
		t.Fatalf("out of descriptors: %v, want a temporary error wrapping EMFILE", err)
	}

	p, err := plan()
	if err != nil || p == nil || len(p.stores) != 1 || p.stores[0].Folder != "Filtered" {
		t.Fatalf("with descriptors: plan %+v, %v; want the script's fileinto", p, err)
	}
}
