package imap

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	goimap "github.com/emersion/go-imap/v2"

	"courriel/imap/mailstore"
)

func TestSearch(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.deliver("1700000001.M1P1.test", testMessage(1, "Bob Builder <bob@example.org>", "Quarterly report"))
	e.deliver("1700000002.M1P1.test", testMessage(2, "carol@example.net", "Lunch?"))
	e.deliver("1700000003.M1P1.test", "From: dave@example.com\nSubject: =?UTF-8?Q?caf=C3=A9?=\nX-Tag: blue\nContent-Type: text/plain\n\nThe PASSWORD is swordfish.\n"+string(make([]byte, 3000)))
	c := e.login(nil)
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	if err := c.Store(seqs(2), &goimap.StoreFlags{Op: goimap.StoreFlagsAdd, Silent: true, Flags: []goimap.Flag{goimap.FlagSeen, "Work"}}, nil).Close(); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		c    goimap.SearchCriteria
		want []goimap.UID
	}{
		{"all", goimap.SearchCriteria{}, []goimap.UID{1, 2, 3}},
		{"from name", goimap.SearchCriteria{Header: []goimap.SearchCriteriaHeaderField{{Key: "From", Value: "builder"}}}, []goimap.UID{1}},
		{"from domain", goimap.SearchCriteria{Header: []goimap.SearchCriteriaHeaderField{{Key: "From", Value: "EXAMPLE.NET"}}}, []goimap.UID{2}},
		{"subject decoded", goimap.SearchCriteria{Header: []goimap.SearchCriteriaHeaderField{{Key: "Subject", Value: "café"}}}, []goimap.UID{3}},
		{"other header", goimap.SearchCriteria{Header: []goimap.SearchCriteriaHeaderField{{Key: "X-Tag", Value: "BLU"}}}, []goimap.UID{3}},
		{"body", goimap.SearchCriteria{Body: []string{"password"}}, []goimap.UID{3}},
		{"text matches header", goimap.SearchCriteria{Text: []string{"lunch"}}, []goimap.UID{2}},
		{"seen", goimap.SearchCriteria{Flag: []goimap.Flag{goimap.FlagSeen}}, []goimap.UID{2}},
		{"unseen", goimap.SearchCriteria{NotFlag: []goimap.Flag{goimap.FlagSeen}}, []goimap.UID{1, 3}},
		{"keyword", goimap.SearchCriteria{Flag: []goimap.Flag{"work"}}, []goimap.UID{2}},
		{"larger", goimap.SearchCriteria{Larger: 2000}, []goimap.UID{3}},
		{"smaller", goimap.SearchCriteria{Smaller: 2000}, []goimap.UID{1, 2}},
		{"uid set", goimap.SearchCriteria{UID: []goimap.UIDSet{goimap.UIDSetNum(2, 3)}}, []goimap.UID{2, 3}},
		{"seq star", goimap.SearchCriteria{SeqNum: []goimap.SeqSet{{{Start: 0, Stop: 0}}}}, []goimap.UID{3}},
		{"not", goimap.SearchCriteria{Not: []goimap.SearchCriteria{{Body: []string{"password"}}}}, []goimap.UID{1, 2}},
		{"or", goimap.SearchCriteria{Or: [][2]goimap.SearchCriteria{{{Larger: 2000}, {Flag: []goimap.Flag{goimap.FlagSeen}}}}}, []goimap.UID{2, 3}},
		{"sent before", goimap.SearchCriteria{SentBefore: time.Date(2006, 1, 3, 0, 0, 0, 0, time.UTC)}, []goimap.UID{1, 2}},
		{"since today", goimap.SearchCriteria{Since: time.Now().Add(-48 * time.Hour)}, []goimap.UID{1, 2, 3}},
		{"before epoch", goimap.SearchCriteria{Before: time.Date(1990, 1, 1, 0, 0, 0, 0, time.UTC)}, nil},
	}
	for _, tc := range tests {
		data, err := c.UIDSearch(&tc.c, nil).Wait()
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if got := data.AllUIDs(); !slices.Equal(got, tc.want) {
			t.Errorf("%s: got %v, want %v", tc.name, got, tc.want)
		}
	}
	// Sequence-number SEARCH returns sequence numbers.
	data, err := c.Search(&goimap.SearchCriteria{Flag: []goimap.Flag{goimap.FlagSeen}}, nil).Wait()
	if err != nil || !slices.Equal(data.AllSeqNums(), []uint32{2}) {
		t.Errorf("SEARCH SEEN = %v, %v", data, err)
	}
}

// OLDER and YOUNGER (RFC 5032) measure the internal date to the second
// against the server's clock, not to the day as BEFORE and SINCE do.
func TestSearchWithin(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	c := e.login(nil)
	now := time.Now()
	for i, age := range []time.Duration{3 * time.Hour, 30 * time.Minute, 10 * time.Second} {
		msg := testMessage(i+1, "bob@example.org", "within")
		a := c.Append("INBOX", int64(len(msg)), &goimap.AppendOptions{Time: now.Add(-age)})
		a.Write([]byte(msg))
		a.Close()
		if _, err := a.Wait(); err != nil {
			t.Fatal(err)
		}
	}
	r := dialRaw(t, e.addr, true)
	if got := r.cmd("c", "CAPABILITY"); !strings.Contains(got[0], " WITHIN ") {
		t.Errorf("CAPABILITY lacks WITHIN: %q", got[0])
	}
	r.cmd("l", "LOGIN alice secret")
	r.cmd("s", "SELECT INBOX")
	for _, tc := range []struct{ search, want string }{
		{"UID SEARCH OLDER 3600", "* SEARCH 1"},
		{"UID SEARCH YOUNGER 3600", "* SEARCH 2 3"},
		{"UID SEARCH YOUNGER 3600 OLDER 60", "* SEARCH 2"},
		{"UID SEARCH NOT YOUNGER 60", "* SEARCH 1 2"},
		{"UID SEARCH OLDER 86400", "* SEARCH"},
		{"UID SEARCH OLDER 0", "x BAD"},
		{"UID SEARCH YOUNGER -5", "x BAD"},
	} {
		got := r.cmd("x", tc.search)
		if !strings.HasPrefix(got[0], tc.want) || (strings.HasPrefix(tc.want, "*") && got[0] != tc.want) {
			t.Errorf("%s: %q, want %q", tc.search, got, tc.want)
		}
	}
}

// SEARCH FROM matches the addresses as Dovecot 2.3.19 writes them back
// (quoted names and local parts, `<spec>` even without a name); the
// answers are the ones Dovecot's imap gave on the same seven messages.
func TestSearchAddressAsDovecot(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	for i, from := range []string{
		`"Q" <"x@y"@example.net>`,
		`"Smith, Ann" <ann@example.org>`,
		`Plain Name <p@example.org>`,
		`=?utf-8?q?J=C3=B6rg?= <j@example.org>`,
		`bare@example.org`,
		`"Plain" <q@example.org>`,
		`Ann (comment) <c@example.org>`,
	} {
		e.deliver(fmt.Sprintf("170000000%d.M1P1.test", i+1), "From: "+from+"\r\nSubject: m\r\n\r\nbody\r\n")
	}
	c := e.login(nil)
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		value string
		want  []goimap.UID
	}{
		{`"Q" <`, nil},
		{`Q <`, []goimap.UID{1}},
		{`"x@y"@example.net`, []goimap.UID{1}},
		{`x@y@example.net`, nil},
		{`Q <"x@y"@example.net>`, []goimap.UID{1}},
		{`"Smith, Ann"`, []goimap.UID{2}},
		{`Smith, Ann`, []goimap.UID{2}},
		{`<ann@`, []goimap.UID{2}},
		{`"Plain Name"`, []goimap.UID{3}},
		{`Plain Name <p@`, nil},
		{`"Plain Name" <p@example.org>`, []goimap.UID{3}},
		{`Jörg <j`, []goimap.UID{4}},
		{`"Jörg"`, nil},
		{`<bare@`, []goimap.UID{5}},
		{` <bare`, nil},
		{`bare@example.org`, []goimap.UID{5}},
		{`"Plain" <`, nil},
		{`Plain <q@example.org>`, []goimap.UID{6}},
		{`comment`, nil},
		{`Ann <c@`, []goimap.UID{7}},
		{`<c@example.org>`, []goimap.UID{7}},
		{`org>`, []goimap.UID{2, 3, 4, 5, 6, 7}},
	} {
		data, err := c.UIDSearch(&goimap.SearchCriteria{Header: []goimap.SearchCriteriaHeaderField{{Key: "From", Value: tc.value}}}, nil).Wait()
		if err != nil {
			t.Errorf("FROM %q: %v", tc.value, err)
			continue
		}
		if got := data.AllUIDs(); !slices.Equal(got, tc.want) {
			t.Errorf("FROM %q: got %v, want %v (Dovecot)", tc.value, got, tc.want)
		}
	}
}

// writeAddresses puts groups as Dovecot does: `group: a, b;`. Dovecot
// 2.3.19 matched SEARCH FROM on this whole string.
func TestWriteAddressesGroups(t *testing.T) {
	l := []mailstore.Address{
		{Mailbox: "team"}, {Mailbox: "a", Host: "x.test"}, {Name: "B b", Mailbox: "b", Host: "x.test"}, {},
		{Mailbox: "empty"}, {},
		{Mailbox: "c.d", Host: "y.test"},
	}
	want := `team: <a@x.test>, "B b" <b@x.test>;, empty:;, <c.d@y.test>`
	if got := writeAddresses(l); got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
}
