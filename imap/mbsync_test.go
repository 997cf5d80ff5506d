package imap

import (
	"context"
	"crypto/tls"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	goimap "github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"courriel/imap/mailstore"
	"courriel/internal/testenv"
)

// folderState is what both sides must agree on: each folder's messages by
// subject, with their flags.
type folderState map[string]map[string]string // folder → subject → flags

func (s folderState) String() string {
	var b strings.Builder
	names := make([]string, 0, len(s))
	for n := range s {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(&b, "%s:", n)
		subs := make([]string, 0, len(s[n]))
		for sub := range s[n] {
			subs = append(subs, sub)
		}
		sort.Strings(subs)
		for _, sub := range subs {
			fmt.Fprintf(&b, " [%s %s]", sub, s[n][sub])
		}
		b.WriteByte('\n')
	}
	return b.String()
}

// TestMbsync syncs a mailbox both ways with a real mbsync (isync) over
// implicit TLS verified against a test CA.
func TestMbsync(t *testing.T) {
	t.Parallel()
	mbsync, err := exec.LookPath("mbsync")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("mbsync (isync) is missing")
		}
		t.Skip("mbsync (isync) is missing")
	}
	ca := testenv.NewCA(t)
	cert := ca.IssueCertificate(t, "localhost", "127.0.0.1")
	e := newEnv(t, func(o *Options) {
		o.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}}
	})
	_, port, _ := strings.Cut(e.addr, ":")

	// Server side: two messages in INBOX, a folder with one.
	e.deliver("1700000001.M1P1.test", "Subject: server one\nFrom: a@example.org\n\nbody one\n")
	writeMaildirMsg(t, e.maildir, "cur", "1700000002.M2P1.test", "Subject: server two\nFrom: a@example.org\n\nbody two\n")
	c := e.login(nil)
	if err := c.Create("Projects", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	appendMsg(t, c, "Projects", "Subject: server project\r\nFrom: b@example.org\r\n\r\nproject\r\n", goimap.FlagSeen)
	c.Logout().Wait()

	dir := t.TempDir()
	local := filepath.Join(dir, "local")
	rc := filepath.Join(dir, "mbsyncrc")
	if err := os.Mkdir(local, 0o700); err != nil {
		t.Fatal(err)
	}
	conf := fmt.Sprintf(`IMAPAccount courriel
Host localhost
Port %s
User alice
Pass secret
SSLType IMAPS
CertificateFile %s
AuthMechs LOGIN PLAIN

IMAPStore remote
Account courriel

MaildirStore local
Path %s/
Inbox %s/INBOX
SubFolders Verbatim

Channel courriel
Far :remote:
Near :local:
Patterns *
Sync All
Create Both
Expunge Both
SyncState *
`, port, ca.CertFile(), local, local)
	if err := os.WriteFile(rc, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	run := func() {
		t.Helper()
		ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
		defer cancel()
		// -Dn shows the protocol: mbsync turns COMPRESS=DEFLATE on and
		// flushes each command with Z_PARTIAL_FLUSH, which stalled a
		// server reading with compress/flate (imap/wire/inflate).
		cmd := exec.CommandContext(ctx, mbsync, "-Dn", "-c", rc, "-a")
		cmd.Env = append(os.Environ(), "HOME="+dir)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("mbsync: %v\n%s", err, out)
		}
		if !strings.Contains(string(out), "COMPRESS DEFLATE") {
			t.Errorf("mbsync did not turn COMPRESS on:\n%s", out)
		}
	}

	run()
	got := localState(t, local)
	for _, want := range []struct{ folder, subject, flags string }{
		{"INBOX", "server one", ""},
		{"INBOX", "server two", ""},
		{"Projects", "server project", "S"},
	} {
		if f, ok := got[want.folder][want.subject]; !ok || f != want.flags {
			t.Errorf("after first sync, local %s lacks %q with flags %q:\n%s", want.folder, want.subject, want.flags, got)
		}
	}
	for _, special := range []string{"Drafts", "Sent", "Junk", "Trash"} {
		if _, ok := got[special]; !ok {
			t.Errorf("after first sync, local lacks folder %s:\n%s", special, got)
		}
	}

	// Local side: flag a message, add one, and a folder with a message.
	flagLocal(t, filepath.Join(local, "INBOX"), "server one", 'F')
	writeMaildirMsg(t, filepath.Join(local, "INBOX"), "new", "1800000001.M9P9.local", "Subject: local new\nFrom: c@example.org\n\nfrom the laptop\n")
	writeMaildirMsg(t, filepath.Join(local, "Archive2024"), "cur", "1800000002.M9P9.local:2,S", "Subject: local archived\nFrom: c@example.org\n\nold\n")

	run()
	srv := serverState(t, e)
	for _, want := range []struct{ folder, subject, flags string }{
		{"INBOX", "server one", "F"},
		{"INBOX", "local new", ""},
		{"Archive2024", "local archived", "S"},
	} {
		if f, ok := srv[want.folder][want.subject]; !ok || f != want.flags {
			t.Errorf("after second sync, server %s lacks %q with flags %q:\n%s", want.folder, want.subject, want.flags, srv)
		}
	}
	if l := localState(t, local); l.String() != srv.String() {
		t.Errorf("after second sync the sides differ:\nlocal:\n%s\nserver:\n%s", l, srv)
	}
	// A third run finds nothing to do and changes nothing.
	run()
	if l, s := localState(t, local), serverState(t, e); l.String() != srv.String() || s.String() != srv.String() {
		t.Errorf("third sync changed state:\nbefore:\n%s\nlocal:\n%s\nserver:\n%s", srv, l, s)
	}
}

func appendMsg(t *testing.T, c *imapclient.Client, folder, msg string, flags ...goimap.Flag) {
	t.Helper()
	a := c.Append(folder, int64(len(msg)), &goimap.AppendOptions{Flags: flags})
	if _, err := a.Write([]byte(msg)); err != nil {
		t.Fatal(err)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Wait(); err != nil {
		t.Fatal(err)
	}
}

// maildirFlags keeps the IMAP system flags' letters, sorted.
func maildirFlags(f mailstore.Flags) string {
	var b []byte
	for _, l := range "DFRST" {
		if f&(mailstore.Flags(1)<<(32+l-'A')) != 0 {
			b = append(b, byte(l))
		}
	}
	return string(b)
}

func subjectOf(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(data), "\n") {
		if s, ok := strings.CutPrefix(strings.TrimRight(l, "\r"), "Subject: "); ok {
			return s
		}
	}
	return ""
}

// localState reads mbsync's Maildir (SubFolders Verbatim: one directory
// per folder, INBOX included).
func localState(t *testing.T, root string) folderState {
	t.Helper()
	st := folderState{}
	dirs, err := os.ReadDir(root)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range dirs {
		if !d.IsDir() {
			continue
		}
		msgs := map[string]string{}
		for _, sub := range []string{"cur", "new"} {
			ents, _ := os.ReadDir(filepath.Join(root, d.Name(), sub))
			for _, m := range ents {
				_, fl := mailstore.SplitName(m.Name())
				msgs[subjectOf(t, filepath.Join(root, d.Name(), sub, m.Name()))] = maildirFlags(fl)
			}
		}
		st[d.Name()] = msgs
	}
	return st
}

func flagLocal(t *testing.T, folder, subject string, flag byte) {
	t.Helper()
	for _, sub := range []string{"cur", "new"} {
		ents, _ := os.ReadDir(filepath.Join(folder, sub))
		for _, m := range ents {
			p := filepath.Join(folder, sub, m.Name())
			if subjectOf(t, p) != subject {
				continue
			}
			base, fl := mailstore.SplitName(m.Name())
			fl |= mailstore.Flags(1) << (32 + flag - 'A')
			if err := os.Rename(p, filepath.Join(folder, "cur", mailstore.FileName(base, fl))); err != nil {
				t.Fatal(err)
			}
			return
		}
	}
	t.Fatalf("no local message %q in %s", subject, folder)
}

// serverState lists every folder over IMAP with its messages' subjects and
// flags.
func serverState(t *testing.T, e *testEnv) folderState {
	t.Helper()
	c := e.login(nil)
	defer c.Logout()
	boxes, err := c.List("", "*", nil).Collect()
	if err != nil {
		t.Fatal(err)
	}
	st := folderState{}
	letters := map[goimap.Flag]string{goimap.FlagDraft: "D", goimap.FlagFlagged: "F", goimap.FlagAnswered: "R", goimap.FlagSeen: "S", goimap.FlagDeleted: "T"}
	for _, b := range boxes {
		sel, err := c.Select(b.Mailbox, &goimap.SelectOptions{ReadOnly: true}).Wait()
		if err != nil {
			t.Fatal(err)
		}
		msgs := map[string]string{}
		if sel.NumMessages > 0 {
			ms, err := c.Fetch(goimap.SeqSet{{Start: 1, Stop: 0}}, &goimap.FetchOptions{Flags: true, Envelope: true}).Collect()
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range ms {
				var fl []string
				for _, f := range m.Flags {
					fl = append(fl, letters[f])
				}
				slices.Sort(fl)
				msgs[m.Envelope.Subject] = strings.Join(fl, "")
			}
		}
		st[b.Mailbox] = msgs
	}
	return st
}
