package move

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"courriel/directory"
	"courriel/internal/testenv"
)

// startDirectory starts a real slapd whose homes are under homeBase and
// returns it with a directory client reading the home node from mailHost.
func startDirectory(t testing.TB, homeBase string) (*testenv.Slapd, *directory.Directory) {
	t.Helper()
	s := testenv.StartSlapd(t, testenv.WithHomeBase(homeBase))
	d, err := directory.New(directory.Options{
		URLs: []string{s.URL()}, StartTLS: true, CAFile: s.CAFile(), RequireCert: true,
		BindDN: s.ReaderDN(), BindPassword: s.ReaderPassword(), BaseDN: s.MailBase(),
		MailboxDomains: []string{"xoyize.xyz"}, AuthBindDN: "uid=%u," + s.MailBase(),
		DialTimeout: 2 * time.Second, RequestTimeout: 5 * time.Second,
		HomeAttribute: "mailHost",
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return s, d
}

// setMailHost makes login's entry an inetLocalMailRecipient homed on node
// (first call) or changes its node.
func setMailHost(t *testing.T, s *testenv.Slapd, login, node string, first bool) {
	t.Helper()
	ldif := "dn: uid=" + login + "," + s.MailBase() + "\nchangetype: modify\n"
	if first {
		ldif += "add: objectClass\nobjectClass: inetLocalMailRecipient\n-\nadd: mailHost\nmailHost: " + node + "\n-\n"
	} else {
		ldif += "replace: mailHost\nmailHost: " + node + "\n-\n"
	}
	s.Modify(t, ldif)
}

// ldapHomeWriter is SetHomeNode done with ldapmodify on the test's slapd
// (the directory client's own SetHomeNode is written elsewhere).
type ldapHomeWriter struct {
	t     *testing.T
	s     *testenv.Slapd
	calls int
}

func (w *ldapHomeWriter) SetHomeNode(_ context.Context, login, node string) error {
	w.calls++
	setMailHost(w.t, w.s, login, node, false)
	return nil
}

var testMtime = time.Date(2024, 3, 1, 12, 0, 0, 123456789, time.UTC)

// makeHome writes a home as Dovecot and courriel leave it: an INBOX with
// messages in new/ and cur/ (flags and keyword letters in their names), two
// folders, the uidlist, keywords, subscriptions, courriel's index and
// modseq files, Sieve scripts with the active link, and what a move
// leaves behind (tmp/ files, a dotlock).
func makeHome(t *testing.T, home string) {
	t.Helper()
	files := map[string]string{
		"mailbox/cur/1700000000.M1P1Q1.node-a,S=42,W=43:2,Sa":    "Message-ID: <1@x>\nSubject: one\n\nbody one\n",
		"mailbox/cur/1700000001.M2P1Q2.node-a,S=40,W=41:2,FSb":   "Message-ID: <2@x>\nSubject: two\n\nbody two\n",
		"mailbox/new/1700000002.M3P1Q3.node-a,S=44,W=45":         "Message-ID: <3@x>\nSubject: three\n\nbody three\n",
		"mailbox/tmp/1700000003.M4P1Q4.node-a":                   "half-written",
		"mailbox/dovecot-uidlist":                                "3 V1700000000 N4 G0123456789abcdef\n1 :1700000000.M1P1Q1.node-a,S=42,W=43\n2 :1700000001.M2P1Q2.node-a,S=40,W=41\n3 :1700000002.M3P1Q3.node-a,S=44,W=45\n",
		"mailbox/dovecot-uidlist.lock":                           "stale",
		"mailbox/dovecot-keywords":                               "0 $Forwarded\n1 Important\n",
		"mailbox/dovecot-uidvalidity":                            "65f1a000\n",
		"mailbox/subscriptions":                                  "Work\nWork/2026\n",
		"mailbox/maildirsize":                                    "0S,0C\n126 3\n",
		"mailbox/courriel-index":                                 "COURRIEL-INDEX 5\nV1700000000 R0000000004\n\x00\x01binary\xff",
		"mailbox/courriel-modseq":                                "COURRIEL-MODSEQ 1 1700000000\nH 7\nR 65543\nM 1 1 5\n",
		"mailbox/.Work/maildirfolder":                            "",
		"mailbox/.Work/cur/1700000010.M9P1Q9.node-a,S=30:2,RS":   "Message-ID: <4@x>\n\nwork\n",
		"mailbox/.Work/dovecot-uidlist":                          "3 V1700000010 N2 G00\n1 :1700000010.M9P1Q9.node-a,S=30\n",
		"mailbox/.Work.2026/maildirfolder":                       "",
		"mailbox/.Work.2026/new/1700000020.M10P1Q10.node-a,S=31": "Message-ID: <5@x>\n\nwork 2026\n",
		"sieve/main.sieve":                                       "require \"fileinto\";\nif header :contains \"subject\" \"work\" { fileinto \"Work\"; }\n",
		"sieve/old.sieve":                                        "keep;\n",
		"sieve/tmp/upload.sieve":                                 "partial",
		".dovecot.sieve.log":                                     "log\n",
	}
	for _, d := range []string{"", "mailbox", "mailbox/cur", "mailbox/new", "mailbox/tmp",
		"mailbox/.Work", "mailbox/.Work/cur", "mailbox/.Work/new", "mailbox/.Work/tmp",
		"mailbox/.Work.2026", "mailbox/.Work.2026/cur", "mailbox/.Work.2026/new", "mailbox/.Work.2026/tmp",
		"sieve", "sieve/tmp"} {
		if err := os.MkdirAll(filepath.Join(home, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for name, body := range files {
		p := filepath.Join(home, name)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, testMtime, testMtime); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("sieve/main.sieve", filepath.Join(home, ".dovecot.sieve")); err != nil {
		t.Fatal(err)
	}
}

// node is one entry of a tree as a user would compare it.
type node struct {
	kind    string // dir, file, link
	content string // file bytes or link target
	mtime   time.Time
	uid     uint32
	gid     uint32
	perm    fs.FileMode
}

func readTree(t *testing.T, root string) map[string]node {
	t.Helper()
	out := map[string]node{}
	err := filepath.WalkDir(root, func(p string, de fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		st := fi.Sys().(*syscall.Stat_t)
		n := node{uid: st.Uid, gid: st.Gid, perm: fi.Mode().Perm()}
		switch {
		case fi.IsDir():
			n.kind = "dir"
		case fi.Mode()&fs.ModeSymlink != 0:
			n.kind = "link"
			n.content, _ = os.Readlink(p)
		default:
			n.kind = "file"
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			n.content, n.mtime = string(b), fi.ModTime()
		}
		out[rel] = n
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// skipped says what a move leaves behind on purpose.
func skipped(rel string) bool {
	return path.Base(path.Dir(rel)) == "tmp" || strings.HasSuffix(rel, ".lock") || path.Base(rel) == "courriel-state"
}

// member is one member of a crafted stream.
type member struct {
	h    tar.Header
	body string
}

func dir(name string) member {
	return member{h: tar.Header{Typeflag: tar.TypeDir, Name: homePrefix + name + "/", Mode: 0o700}}
}
func file(name, body string) member {
	return member{h: tar.Header{Typeflag: tar.TypeReg, Name: homePrefix + name, Size: int64(len(body)), Mode: 0o600}, body: body}
}

// craft builds a stream: the header for login, the members, and a trailer
// that matches them (so that only what a test makes hostile is wrong).
func craft(t testing.TB, login string, members []member, withTrailer bool) []byte {
	t.Helper()
	return craftStream(t, formatLine+"\nlogin "+login+"\n", nil, members, withTrailer)
}

// craft2 builds a format 2 stream: kind ("pre-copy", "delta", "final")
// for move id token; ops (delta and final) is the ops member's body.
func craft2(t testing.TB, login, kind, token, ops string, members []member, withTrailer bool) []byte {
	t.Helper()
	head := formatLine2 + "\nlogin " + login + "\n" + kind + " " + token + "\n"
	if kind == "pre-copy" {
		return craftStream(t, head, nil, members, withTrailer)
	}
	return craftStream(t, head, &ops, members, withTrailer)
}

func craftStream(t testing.TB, head string, ops *string, members []member, withTrailer bool) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	put := func(h tar.Header, body string) {
		h.Format = tar.FormatPAX
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(body)); err != nil {
			t.Fatal(err)
		}
	}
	put(tar.Header{Typeflag: tar.TypeReg, Name: headerName, Size: int64(len(head)), Mode: 0o600}, head)
	sum := newDigest()
	if ops != nil {
		put(tar.Header{Typeflag: tar.TypeReg, Name: opsName, Size: int64(len(*ops)), Mode: 0o600}, *ops)
		sum.h.Write([]byte(*ops))
	}
	var total int64
	for _, m := range members {
		put(m.h, m.body)
		rel := strings.TrimSuffix(strings.TrimPrefix(m.h.Name, homePrefix), "/")
		sum.entry(rel, m.h.Typeflag, m.h.Linkname)
		if m.h.Typeflag == tar.TypeReg {
			sum.h.Write([]byte(m.body))
			total += int64(len(m.body))
		}
	}
	if withTrailer {
		tr := trailerBody(len(members), total, sum.h.Sum(nil))
		put(tar.Header{Typeflag: tar.TypeReg, Name: trailerName, Size: int64(len(tr)), Mode: 0o600}, tr)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func listDir(t testing.TB, d string) []string {
	t.Helper()
	des, err := os.ReadDir(d)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, de := range des {
		names = append(names, de.Name())
	}
	return names
}

func fmtTree(m map[string]node) string {
	var b strings.Builder
	for k, v := range m {
		fmt.Fprintf(&b, "%s %s\n", k, v.kind)
	}
	return b.String()
}
