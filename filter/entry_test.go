package filter

import (
	"bytes"
	"context"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"courriel/delivery"
	"courriel/directory"
)

// countingDir is a fakeDir that counts its lookups: each would be an LDAP
// search once the directory's cache is off or has expired.
type countingDir struct {
	fakeDir
	n atomic.Int32
}

func (d *countingDir) Mailbox(ctx context.Context, addr string) (*directory.Mailbox, error) {
	d.n.Add(1)
	return d.fakeDir.Mailbox(ctx, addr)
}

// TestCarriedEntry: a recipient that carries its entry (smtp resolved it
// at RCPT, for this delivery) runs the script of the carried home without
// asking the directory; one that does not (a queued copy, a retry, a
// redirect) asks it, once, as before.
func TestCarriedEntry(t *testing.T) {
	t.Parallel()
	base := t.TempDir()
	home := base + "/u"
	os.MkdirAll(home, 0o755)
	os.WriteFile(home+"/.dovecot.sieve", []byte(`require ["fileinto", "mailbox"]; fileinto :create "Filed";`), 0o644)
	store, err := delivery.NewStore(delivery.Options{Hostname: "h", AllowedBase: base})
	if err != nil {
		t.Fatal(err)
	}
	dir := &countingDir{fakeDir: fakeDir{"u@x.y": {Home: home}}}
	f, err := New(Options{Store: store, Directory: dir})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		entry   *delivery.Entry
		lookups int32
		filed   int // copies in Filed after this case, the script's
	}{
		{"carried", &delivery.Entry{Home: home}, 0, 1},
		{"not carried", nil, 1, 2},
		// A carried entry without a home is an answer too: no script,
		// and no lookup to find that out again.
		{"carried, no home", &delivery.Entry{}, 0, 2},
	} {
		before := dir.n.Load()
		m := &delivery.Message{ID: "m", From: "s@z.z", Body: bytes.NewReader([]byte("Subject: s\r\n\r\nb\r\n")), Arrived: time.Now()}
		r := []delivery.Recipient{{Address: "u@x.y", Maildir: home + "/mailbox/", Entry: tc.entry}}
		if errs := f.Deliver(context.Background(), m, r); errs[0] != nil {
			t.Fatalf("%s: %v", tc.name, errs[0])
		}
		if n := dir.n.Load() - before; n != tc.lookups {
			t.Errorf("%s: %d directory lookups, want %d", tc.name, n, tc.lookups)
		}
		if n, _ := os.ReadDir(home + "/mailbox/.Filed/new"); len(n) != tc.filed {
			t.Errorf("%s: Filed holds %d copies, want %d", tc.name, len(n), tc.filed)
		}
	}
}
