package imap

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	goimap "github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

func imapCode(err error) goimap.ResponseCode {
	var ie *goimap.Error
	if errors.As(err, &ie) {
		return ie.Code
	}
	return ""
}

func TestLoginOutcomes(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	tests := []struct {
		name, login, pass string
		unavailable       bool
		want              goimap.ResponseCode
	}{
		{"ok", "alice", "secret", false, ""},
		{"bad password", "alice", "nope", false, goimap.ResponseCodeAuthenticationFailed},
		{"unknown user", "mallory", "x", false, goimap.ResponseCodeAuthenticationFailed},
		{"NUL in password", "alice", "secret\x00junk", false, goimap.ResponseCodeAuthenticationFailed},
		{"directory down", "alice", "secret", true, goimap.ResponseCodeUnavailable},
	}
	for _, tc := range tests {
		e.auth.mu.Lock()
		e.auth.unavailable = tc.unavailable
		e.auth.mu.Unlock()
		c := e.dial(nil)
		err := c.Login(tc.login, tc.pass).Wait()
		if got := imapCode(err); got != tc.want || (tc.want == "" && err != nil) {
			t.Errorf("%s: err %v (code %q), want code %q", tc.name, err, got, tc.want)
		}
		c.Close()
	}
}

func TestSpecialFoldersCreatedAtLogin(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	c := e.login(nil)
	list, err := c.List("", "*", &goimap.ListOptions{ReturnSubscribed: true}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string][]goimap.MailboxAttr{}
	for _, l := range list {
		got[l.Mailbox] = l.Attrs
		if l.Delim != '.' {
			t.Errorf("%s: delimiter %q, want '.'", l.Mailbox, l.Delim)
		}
	}
	for name, attr := range map[string]goimap.MailboxAttr{
		"Sent": goimap.MailboxAttrSent, "Drafts": goimap.MailboxAttrDrafts,
		"Trash": goimap.MailboxAttrTrash, "Junk": goimap.MailboxAttrJunk,
	} {
		if !slices.Contains(got[name], attr) || !slices.Contains(got[name], goimap.MailboxAttrSubscribed) {
			t.Errorf("%s: attrs %v, want %s and \\Subscribed", name, got[name], attr)
		}
		if _, err := os.Stat(filepath.Join(e.maildir, "."+name, "cur")); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, ok := got["INBOX"]; !ok {
		t.Errorf("INBOX not listed: %v", got)
	}
	subs, _ := os.ReadFile(filepath.Join(e.maildir, "subscriptions"))
	if !strings.Contains(string(subs), "Sent\n") {
		t.Errorf("subscriptions file = %q", subs)
	}
}

// A mailbox that has folders already (moved from Dovecot, with its own
// names) keeps its layout: no English twins of "Envoyés" and "Corbeille".
func TestSpecialFoldersNotAddedToAnExistingLayout(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	for _, dir := range []string{".Envoy&AOk-s", ".Corbeille"} { // Dovecot's mUTF-7 names
		for _, sub := range []string{"cur", "new", "tmp"} {
			if err := os.MkdirAll(filepath.Join(e.maildir, dir, sub), 0o700); err != nil {
				t.Fatal(err)
			}
		}
	}
	c := e.login(nil)
	list, err := c.List("", "*", nil).Collect()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, l := range list {
		names = append(names, l.Mailbox)
	}
	slices.Sort(names)
	if want := []string{"Corbeille", "Envoyés", "INBOX"}; !slices.Equal(names, want) {
		t.Errorf("folders after login: %q, want %q", names, want)
	}
}

func TestSelectFetchServesCRLF(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	body := testMessage(1, "Bob <bob@example.org>", "Hello there")
	e.deliver("1700000000.M1P1.test", body)
	multipart := "From: carol@example.org\nSubject: parts\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=XX\n\n--XX\nContent-Type: text/plain\n\npart one\n--XX\nContent-Type: text/html\n\n<p>two</p>\n--XX--\n"
	e.deliver("1700000001.M1P1.test", multipart)
	c := e.login(nil)
	sel, err := c.Select("INBOX", nil).Wait()
	if err != nil {
		t.Fatal(err)
	}
	if sel.NumMessages != 2 || sel.UIDNext != 3 || sel.UIDValidity == 0 {
		t.Fatalf("select = %+v", sel)
	}
	if ents, _ := os.ReadDir(filepath.Join(e.maildir, "new")); len(ents) != 0 {
		t.Errorf("new/ still has %d files after SELECT", len(ents))
	}
	msgs, err := c.Fetch(seqs(1, 2), &goimap.FetchOptions{
		UID: true, Flags: true, RFC822Size: true, Envelope: true, InternalDate: true,
		BodyStructure: &goimap.FetchItemBodyStructure{Extended: true},
		BodySection: []*goimap.FetchItemBodySection{
			{Peek: true},
			{Peek: true, Specifier: goimap.PartSpecifierHeader, HeaderFields: []string{"Subject"}},
			{Peek: true, Specifier: goimap.PartSpecifierText, Partial: &goimap.SectionPartial{Offset: 0, Size: 5}},
			{Peek: true, Part: []int{2}},
		},
	}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != 2 {
		t.Fatalf("got %d messages", len(msgs))
	}
	m := msgs[0]
	want := strings.ReplaceAll(body, "\n", "\r\n")
	if got := m.FindBodySection(&goimap.FetchItemBodySection{Peek: true}); string(got) != want {
		t.Errorf("BODY[] = %q, want CRLF version", got)
	}
	if m.RFC822Size != int64(len(want)) {
		t.Errorf("RFC822.SIZE = %d, want %d", m.RFC822Size, len(want))
	}
	if m.Envelope == nil || m.Envelope.Subject != "Hello there" || len(m.Envelope.From) != 1 || m.Envelope.From[0].Host != "example.org" {
		t.Errorf("envelope = %+v", m.Envelope)
	}
	// \Recent only: this is the first session to see the message.
	if m.UID != 1 || fmt.Sprint(m.Flags) != `[\Recent]` || m.InternalDate.IsZero() {
		t.Errorf("uid %d flags %v date %v", m.UID, m.Flags, m.InternalDate)
	}
	if got := string(m.BodySection[1].Bytes); got != "Subject: Hello there\r\n\r\n" {
		t.Errorf("HEADER.FIELDS = %q", got)
	}
	if got := string(m.BodySection[2].Bytes); got != "Hello" {
		t.Errorf("TEXT<0.5> = %q", got)
	}
	mp, ok := msgs[1].BodyStructure.(*goimap.BodyStructureMultiPart)
	if !ok || len(mp.Children) != 2 || mp.Subtype != "mixed" {
		t.Fatalf("bodystructure = %#v", msgs[1].BodyStructure)
	}
	if got := string(msgs[1].BodySection[3].Bytes); got != "<p>two</p>" {
		t.Errorf("BODY[2] = %q", got)
	}
	// A non-peek fetch sets \Seen.
	if _, err := c.Fetch(seqs(1), &goimap.FetchOptions{BodySection: []*goimap.FetchItemBodySection{{}}}).Collect(); err != nil {
		t.Fatal(err)
	}
	fl, _ := c.Fetch(seqs(1), &goimap.FetchOptions{Flags: true}).Collect()
	if !slices.Contains(fl[0].Flags, goimap.FlagSeen) {
		t.Errorf("flags after BODY[] = %v", fl[0].Flags)
	}
	ents, _ := os.ReadDir(filepath.Join(e.maildir, "cur"))
	found := false
	for _, en := range ents {
		if strings.HasPrefix(en.Name(), "1700000000.M1P1.test,S=") && strings.HasSuffix(en.Name(), ":2,S") {
			found = true
		}
	}
	if !found {
		t.Errorf("no cur/ file with :2,S: %v", ents)
	}
}

func TestMalformedMessageStillAnswers(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.deliver("1700000000.M2P1.test", "Content-Type: multipart/mixed; boundary=\nSubject: =?bogus?Q?x?=\nFrom: <<<@@@\n\n--\n--\n\x00\xff garbage")
	e.deliver("1700000001.M2P1.test", "no header at all")
	c := e.login(nil)
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	msgs, err := c.Fetch(seqs(1, 2), &goimap.FetchOptions{
		Envelope: true, BodyStructure: &goimap.FetchItemBodyStructure{Extended: true},
		BodySection: []*goimap.FetchItemBodySection{{Peek: true, Part: []int{1, 2}}},
	}).Collect()
	if err != nil || len(msgs) != 2 {
		t.Fatalf("fetch: %v, %d msgs", err, len(msgs))
	}
	if err := c.Noop().Wait(); err != nil {
		t.Fatalf("connection unusable after malformed MIME: %v", err)
	}
}

func TestStoreAndExpungeSeenByOtherSession(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	for i := 1; i <= 3; i++ {
		e.deliver("170000000"+string(rune('0'+i))+".M3P1.test", testMessage(i, "x@example.org", "s"))
	}
	expunged := make(chan uint32, 10)
	flagsSeen := make(chan []goimap.Flag, 10)
	c2 := e.login(&imapclient.UnilateralDataHandler{
		Expunge: func(seq uint32) { expunged <- seq },
		Fetch: func(m *imapclient.FetchMessageData) {
			buf, _ := m.Collect()
			if buf != nil && buf.Flags != nil {
				flagsSeen <- buf.Flags
			}
		},
	})
	if _, err := c2.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	c1 := e.login(nil)
	if _, err := c1.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	if err := c1.Store(seqs(2), &goimap.StoreFlags{Op: goimap.StoreFlagsAdd, Silent: true, Flags: []goimap.Flag{goimap.FlagDeleted, "$Important"}}, nil).Close(); err != nil {
		t.Fatal(err)
	}
	if err := c2.Noop().Wait(); err != nil {
		t.Fatal(err)
	}
	select {
	case fl := <-flagsSeen:
		if !slices.Contains(fl, goimap.FlagDeleted) || !slices.Contains(fl, goimap.Flag("$Important")) {
			t.Errorf("other session saw flags %v", fl)
		}
	case <-time.After(5 * time.Second):
		t.Error("other session did not get FETCH FLAGS")
	}
	kw, _ := os.ReadFile(filepath.Join(e.maildir, "dovecot-keywords"))
	if string(kw) != "0 $Important\n" {
		t.Errorf("dovecot-keywords = %q", kw)
	}
	if _, err := c1.Expunge().Collect(); err != nil {
		t.Fatal(err)
	}
	if err := c2.Noop().Wait(); err != nil {
		t.Fatal(err)
	}
	select {
	case seq := <-expunged:
		if seq != 2 {
			t.Errorf("EXPUNGE %d, want 2", seq)
		}
	case <-time.After(5 * time.Second):
		t.Error("other session was not told of the expunge")
	}
	uids, err := c2.UIDSearch(&goimap.SearchCriteria{}, nil).Wait()
	if err != nil {
		t.Fatal(err)
	}
	if got := uids.AllUIDs(); !slices.Equal(got, []goimap.UID{1, 3}) {
		t.Errorf("remaining UIDs %v", got)
	}
}

func TestAppendCopyMove(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	c := e.login(nil)
	msg := "From: a@example.org\r\nSubject: appended\r\n\r\nbody\r\n"
	date := time.Date(2020, 5, 6, 7, 8, 9, 0, time.UTC)
	app := c.Append("INBOX", int64(len(msg)), &goimap.AppendOptions{Flags: []goimap.Flag{goimap.FlagSeen, goimap.FlagFlagged}, Time: date})
	app.Write([]byte(msg))
	app.Close()
	ad, err := app.Wait()
	if err != nil {
		t.Fatal(err)
	}
	if ad.UID != 1 || ad.UIDValidity == 0 {
		t.Errorf("APPENDUID = %+v", ad)
	}
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	got, err := c.Fetch(seqs(1), &goimap.FetchOptions{Flags: true, InternalDate: true, RFC822Size: true, BodySection: []*goimap.FetchItemBodySection{{Peek: true}}}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	if string(got[0].BodySection[0].Bytes) != msg || got[0].RFC822Size != int64(len(msg)) || !got[0].InternalDate.Equal(date) {
		t.Errorf("appended message = %q size %d date %v", got[0].BodySection[0].Bytes, got[0].RFC822Size, got[0].InternalDate)
	}
	ents, _ := os.ReadDir(filepath.Join(e.maildir, "cur"))
	if len(ents) != 1 || !strings.HasSuffix(ents[0].Name(), ":2,FS") || !strings.Contains(ents[0].Name(), ",W="+itoa(len(msg))) {
		t.Errorf("cur/ = %v", ents)
	}
	stored, _ := os.ReadFile(filepath.Join(e.maildir, "cur", ents[0].Name()))
	if bytes.Contains(stored, []byte("\r\n")) {
		t.Errorf("stored with CRLF: %q", stored)
	}
	cd, err := c.Copy(seqs(1), "Sent").Wait()
	if err != nil {
		t.Fatal(err)
	}
	if cd.DestUIDs.String() != "1" || cd.SourceUIDs.String() != "1" {
		t.Errorf("COPYUID %+v", cd)
	}
	if _, err := c.Copy(seqs(1), "Nowhere").Wait(); imapCode(err) != goimap.ResponseCodeTryCreate {
		t.Errorf("copy to missing folder: %v", err)
	}
	md, err := c.Move(seqs(1), "Trash").Wait()
	if err != nil {
		t.Fatal(err)
	}
	if md.DestUIDs.String() != "1" {
		t.Errorf("MOVE COPYUID %+v", md)
	}
	st, err := c.Status("Trash", &goimap.StatusOptions{NumMessages: true, UIDNext: true, NumUnseen: true}).Wait()
	if err != nil {
		t.Fatal(err)
	}
	if *st.NumMessages != 1 || st.UIDNext != 2 || *st.NumUnseen != 0 {
		t.Errorf("Trash status %+v", st)
	}
	if n := c.Mailbox().NumMessages; n != 0 {
		t.Errorf("INBOX has %d messages after MOVE", n)
	}
}

func itoa(n int) string { return strings.TrimSpace(strings.Repeat(" ", 0) + fmtInt(n)) }

func fmtInt(n int) string {
	if n == 0 {
		return "0"
	}
	var b []byte
	for ; n > 0; n /= 10 {
		b = append([]byte{byte('0' + n%10)}, b...)
	}
	return string(b)
}
