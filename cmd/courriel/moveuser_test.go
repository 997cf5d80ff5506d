package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"courriel/internal/testenv"
)

// `courriel move-user` reaches the running server through its control
// socket, and the server's mover answers with what the directory says.
// (A whole move needs the directory's SetHomeNode and smtp's XIMPORT,
// written beside this; cluster/move tests the move itself.)
func TestMoveUserCommand(t *testing.T) {
	t.Parallel()
	s := testenv.StartSlapd(t, testenv.WithHomeBase(t.TempDir()))
	cfgPath := slapdConfig(t, s)
	secret := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secret, []byte("0123456789abcdef-shared\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(cfgPath, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.WriteString("[cluster]\nnode = \"a\"\nsecret_file = \"" + secret + "\"\n[cluster.nodes.b]\naddress = \"127.0.0.1\"\nsmtp = \"127.0.0.1:1\"\n")
	f.Close()
	if err != nil {
		t.Fatal(err)
	}

	if code, _, stderr := runCmd(t, "", "move-user", "-config", slapdConfig(t, s), "xomail", "b"); code == 0 || !strings.Contains(stderr, "no [cluster] configuration") {
		t.Errorf("single node: %d %q", code, stderr)
	}
	if code, _, stderr := runCmd(t, "", "move-user", "-config", cfgPath, "xomail", "b"); code == 0 || !strings.Contains(stderr, "is courriel serve running?") {
		t.Errorf("without a server: %d %q", code, stderr)
	}

	ctx, cancel := context.WithCancel(context.Background())
	var out, errb syncBuffer
	done := make(chan int)
	go func() { done <- run(ctx, []string{"serve", "-config", cfgPath}, strings.NewReader(""), &out, &errb) }()
	defer func() {
		cancel()
		if code := <-done; code != 0 {
			t.Errorf("serve exited %d: %s", code, errb.String())
		}
	}()
	waitText(t, &errb, "listener=control")
	sock := filepath.Join(filepath.Dir(cfgPath), "queue", "control.sock")
	if fi, err := os.Stat(sock); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("control socket: %v %v", fi, err)
	}

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"nosuchuser", "b"}, "move-user: move: look up nosuchuser: "},
		{[]string{"xomail", "c"}, "unknown home node \"c\""},
		{[]string{"xomail", "a"}, "move: a is this node"},
		{[]string{"xomail", "b/../c"}, "node name \"b/../c\""},
		{[]string{"xomail"}, "UID and NODE needed"},
	} {
		code, stdout, stderr := runCmd(t, "", append([]string{"move-user", "-config", cfgPath}, tc.args...)...)
		if code == 0 || !strings.Contains(stderr, tc.want) {
			t.Errorf("move-user %q: exit %d, stdout %q, stderr %q; want %q", tc.args, code, stdout, stderr, tc.want)
		}
	}
	if _, err := os.Stat(filepath.Join(s.HomeBase(), "xomail")); !os.IsNotExist(err) {
		t.Errorf("the refused moves touched the home: %v", err)
	}
}
