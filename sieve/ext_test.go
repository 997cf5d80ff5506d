package sieve

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func compileRun(t *testing.T, src, msg string, opts RunOptions) Result {
	t.Helper()
	s, err := compileAll([]byte(src), Limits{})
	if err != nil {
		t.Fatalf("compile %q: %v", src, err)
	}
	m, err := ReadMessage(strings.NewReader(msg))
	if err != nil {
		t.Fatal(err)
	}
	return s.RunWith(m, Envelope{From: "alice@example.com", To: "bob@example.org"}, opts)
}

func TestEditedHeader(t *testing.T) {
	msg := "Received: from x by y; Sun, 06 Dec 2026 08:00:00 +0000\nSubject: hello\nX-A: 1\nX-A: 2\n  folded\n\nbody\n"
	tests := []struct {
		name, src, want string
	}{
		{"unchanged", `require "editheader"; if header :is "subject" "x" { addheader "X" "y"; }`, ""},
		{"add on top, last at the end",
			`require "editheader"; addheader "X-First" "1"; addheader :last "X-Last" "2";`,
			"X-First: 1\r\nReceived: from x by y; Sun, 06 Dec 2026 08:00:00 +0000\r\nSubject: hello\r\nX-A: 1\r\nX-A: 2\r\n  folded\r\nX-Last: 2\r\n\r\n"},
		{"delete by index and value",
			`require ["editheader", "index"]; deleteheader :index 1 :last "x-a"; deleteheader :is "subject" "HELLO";`,
			"Received: from x by y; Sun, 06 Dec 2026 08:00:00 +0000\r\nX-A: 1\r\n\r\n"},
		{"received and auto-submitted are protected",
			`require "editheader"; deleteheader "received"; deleteheader "x-a";`,
			"Received: from x by y; Sun, 06 Dec 2026 08:00:00 +0000\r\nSubject: hello\r\n\r\n"},
		{"non-ASCII value encoded",
			`require "editheader"; deleteheader "x-a"; deleteheader "subject"; addheader "Subject" "café";`,
			"Subject: =?utf-8?q?caf=C3=A9?=\r\nReceived: from x by y; Sun, 06 Dec 2026 08:00:00 +0000\r\n\r\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := compileRun(t, tt.src, msg, RunOptions{})
			if res.Err != nil {
				t.Fatal(res.Err)
			}
			if tt.want == "" {
				if res.Edit != nil {
					t.Fatalf("EditedHeader %q, want nil", res.Edit.Header())
				}
				return
			}
			if string(res.Edit.Header()) != tt.want {
				t.Fatalf("EditedHeader:\n%q\nwant\n%q", res.Edit.Header(), tt.want)
			}
		})
	}
	// A line break not followed by white space would start a new field
	// (a header injection): it becomes a fold, as in Pigeonhole, the
	// white space around it one TAB.
	res := compileRun(t, "require \"editheader\"; addheader \"X-NL\" text:\nfolded\n here\nX-Injected: yes\n.\n;", msg, RunOptions{})
	if !strings.HasPrefix(string(res.Edit.Header()), "X-Nl: folded\r\n\there\r\n\tX-Injected: yes\r\nReceived:") {
		t.Errorf("bare line break: %q", res.Edit.Header())
	}
	long := strings.Repeat("word ", 40)
	res = compileRun(t, `require ["editheader", "variables"]; set "v" "`+long+`"; addheader "X-Long" "${v}";`, msg, RunOptions{})
	for _, line := range strings.Split(string(res.Edit.Header()), "\r\n") {
		if len(line) > 80 { // Dovecot's width
			t.Errorf("line of %d octets: %q", len(line), line)
		}
	}
	res = compileRun(t, `require ["editheader", "variables"]; set "v" "`+strings.Repeat("x", 2000)+`"; addheader "X-Big" "${v}${v}";`, msg, RunOptions{})
	if res.Err == nil {
		t.Error("a value over 2048 octets was added")
	}
}

func TestDuplicateFile(t *testing.T) {
	dir := t.TempDir()
	store := &DuplicateFile{Path: filepath.Join(dir, ".duplicates"), MaxEntries: 3}
	now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	msg := "Message-ID: <a@b>\r\nSubject: x\r\n\r\nbody\r\n"
	src := `require ["duplicate", "fileinto"]; if duplicate :seconds 3600 { fileinto "dup"; }`
	run := func(at time.Time) Result {
		return compileRun(t, src, msg, RunOptions{Now: at, Duplicates: store})
	}
	res := run(now)
	if got := canonicalResult(res); !slices.Equal(got, []string{"track duplicate", "implicit store INBOX"}) {
		t.Fatalf("first: %q", got)
	}
	// not committed: still not a duplicate
	if got := canonicalResult(run(now)); got[0] == "store dup" {
		t.Fatal("a mark was taken before Commit")
	}
	if err := store.Commit(res.DuplicateMarks, now); err != nil {
		t.Fatal(err)
	}
	if got := canonicalResult(run(now.Add(30 * time.Minute))); !slices.Equal(got, []string{"store dup"}) {
		t.Fatalf("second: %q", got)
	}
	if got := canonicalResult(run(now.Add(2 * time.Hour))); got[0] == "store dup" {
		t.Fatalf("after expiry: %q", got)
	}
	// at most MaxEntries, those expiring last
	var marks []DuplicateMark
	for i := 0; i < 5; i++ {
		marks = append(marks, DuplicateMark{ID: duplicateID(nil, fmt.Sprint(i), false), Expires: now.Add(time.Duration(i+1) * time.Hour)})
	}
	if err := store.Commit(marks, now); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(store.Path)
	if n := strings.Count(string(b), "\n"); n != 3 {
		t.Fatalf("%d entries kept, want 3:\n%s", n, b)
	}
	if ok, _ := store.Seen(marks[4].ID, now); !ok {
		t.Error("the latest mark was dropped")
	}
	if ok, _ := store.Seen(marks[0].ID, now); ok {
		t.Error("the earliest mark was kept")
	}
	// hostile content: garbage, long lines, bad numbers are skipped
	hostile := strings.Repeat("z", 5000) + "\n" + marks[4].ID.File + " 99999999999999999999\n" +
		"NOTHEX " + fmt.Sprint(now.Unix()+100) + "\n" + marks[3].ID.File + " " + fmt.Sprint(now.Unix()+100) + "\n"
	if err := os.WriteFile(store.Path, []byte(hostile), 0o600); err != nil {
		t.Fatal(err)
	}
	if ok, err := store.Seen(marks[3].ID, now); err != nil || ok {
		// the over-long first line ends the scan: nothing after it counts
		t.Errorf("after a hostile file: %v, %v", ok, err)
	}
	if err := store.Commit(marks[:1], now); err != nil {
		t.Fatal(err)
	}
	// a symbolic link is not followed
	secret := filepath.Join(dir, "secret")
	os.WriteFile(secret, []byte(marks[2].ID.File+" "+fmt.Sprint(now.Unix()+100)+"\n"), 0o600)
	os.Remove(store.Path)
	if err := os.Symlink(secret, store.Path); err != nil {
		t.Fatal(err)
	}
	if ok, err := store.Seen(marks[2].ID, now); ok || err == nil {
		t.Errorf("read through a symbolic link: %v, %v", ok, err)
	}
}

func TestDuplicateRunSemantics(t *testing.T) {
	now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	store := &DuplicateFile{Path: filepath.Join(t.TempDir(), "d")}
	msg := "Message-ID: <a@b>\r\nX-Id: k\r\n\r\n"
	for _, c := range []struct {
		src   string
		marks int
	}{
		{`require "duplicate"; if duplicate :header "x-nothere" { discard; }`, 0},
		{`require "duplicate"; if duplicate { discard; } if duplicate { discard; }`, 1},
		{`require "duplicate"; if duplicate :handle "a" { discard; } if duplicate :handle "b" { discard; }`, 2},
		{`require "duplicate"; if duplicate :uniqueid "x" :seconds 999999999 { discard; }`, 1},
	} {
		res := compileRun(t, c.src, msg, RunOptions{Now: now, Duplicates: store})
		if len(res.DuplicateMarks) != c.marks {
			t.Errorf("%s: %d marks, want %d", c.src, len(res.DuplicateMarks), c.marks)
		}
		for _, m := range res.DuplicateMarks {
			if m.Expires.Sub(now) > 48*time.Hour {
				t.Errorf("%s: mark for %v, beyond Pigeonhole's 2 days", c.src, m.Expires.Sub(now))
			}
		}
	}
	// :last refreshes the mark each time
	src := `require "duplicate"; if duplicate :last :seconds 60 { discard; }`
	res := compileRun(t, src, msg, RunOptions{Now: now, Duplicates: store})
	store.Commit(res.DuplicateMarks, now)
	res = compileRun(t, src, msg, RunOptions{Now: now.Add(50 * time.Second), Duplicates: store})
	if len(res.DuplicateMarks) != 1 || res.Actions[0].Kind != Discard {
		t.Fatalf(":last second time: %+v", res)
	}
	store.Commit(res.DuplicateMarks, now.Add(50*time.Second))
	res = compileRun(t, src, msg, RunOptions{Now: now.Add(100 * time.Second), Duplicates: store})
	if res.Actions[0].Kind != Discard {
		t.Fatal(":last did not refresh the mark")
	}
	// a store that fails is a runtime error: the message goes to INBOX
	res = compileRun(t, `require "duplicate"; if duplicate { discard; }`, msg, RunOptions{Duplicates: failingStore{}})
	if res.Err == nil || !res.Actions[0].Inbox() {
		t.Fatalf("failing store: %+v", res)
	}
}

type failingStore struct{}

func (failingStore) Seen(DuplicateID, time.Time) (bool, error) {
	return false, errors.New("disk on fire")
}
func (failingStore) Commit([]DuplicateMark, time.Time) error { return errors.New("disk on fire") }

func TestVacationAction(t *testing.T) {
	day := 24 * time.Hour
	tests := []struct {
		src    string
		opts   RunOptions
		period time.Duration
		handle string
	}{
		{`require "vacation"; vacation "away";`, RunOptions{}, 7 * day, "away<default-subject><default-from><NO-MIME>"},
		{`require "vacation"; vacation :days 0 "away";`, RunOptions{}, day, "away<default-subject><default-from><NO-MIME>"},
		{`require "vacation"; vacation :days 3 :subject "S" :from "f@x.org" :mime "away";`, RunOptions{}, 3 * day, "awaySf@x.org<MIME>"},
		{`require "vacation-seconds"; vacation :seconds 0 :handle "h" "away";`, RunOptions{Vacation: VacationLimits{Min: -1}}, 0, "h"},
		{`require "vacation-seconds"; vacation :seconds 30 "away";`, RunOptions{Vacation: VacationLimits{Min: 10 * time.Second}}, 30 * time.Second, "away<default-subject><default-from><NO-MIME>"},
		{`require "vacation"; vacation :days 100 "away";`, RunOptions{Vacation: VacationLimits{Max: 30 * day}}, 30 * day, "away<default-subject><default-from><NO-MIME>"},
		{`require "vacation"; vacation :days 18446744073709551615 "away";`, RunOptions{}, 0, "away<default-subject><default-from><NO-MIME>"},
		{`require ["vacation", "variables"]; set "r" "back soon"; vacation :subject "${r}" "${r}";`, RunOptions{}, 7 * day, "${r}${r}<default-from><NO-MIME>"},
	}
	for _, tt := range tests {
		res := compileRun(t, tt.src, testMessage, tt.opts)
		if res.Err != nil || len(res.Actions) != 2 || res.Actions[0].Kind != Vacation || !res.Actions[1].Implicit {
			t.Errorf("%s: %+v", tt.src, res)
			continue
		}
		v := res.Actions[0].Vacation
		if tt.period != 0 && v.Period != tt.period || tt.period == 0 && tt.opts.Vacation.Min == 0 && v.Period <= 0 {
			t.Errorf("%s: period %v, want %v", tt.src, v.Period, tt.period)
		}
		if v.Handle != tt.handle {
			t.Errorf("%s: handle %q, want %q", tt.src, v.Handle, tt.handle)
		}
	}
	res := compileRun(t, `require ["vacation", "variables"]; set "f" "not valid"; vacation :from "${f}" "x";`, testMessage, RunOptions{})
	if res.Err != nil || res.Actions[0].Vacation.From != "" {
		t.Errorf("invalid :from from a variable: %+v", res)
	}
	res = compileRun(t, `require "vacation"; vacation :addresses ["me@example.org", "not an address"] :from "Me <me@example.org>" "x";`, testMessage, RunOptions{})
	if v := res.Actions[0].Vacation; !slices.Equal(v.Addresses, []string{"me@example.org"}) || v.From != "Me <me@example.org>" {
		t.Errorf("addresses %q, from %q", v.Addresses, v.From)
	}
	for _, bad := range []string{
		`require "vacation"; vacation :days 1 :days 2 "x";`,
		`require "vacation"; vacation :seconds 1 "x";`,
		`require "vacation"; vacation :from "x" "y";`,
		`require "vacation"; vacation;`,
		`vacation "x";`,
	} {
		if _, err := compileAll([]byte(bad), Limits{}); err == nil {
			t.Errorf("%s: compiled", bad)
		}
	}
}

type mapLoader map[string]string

func (m mapLoader) Load(global bool, name string) ([]byte, error) {
	key := name
	if global {
		key = "global/" + name
	}
	if name == "broken-disk" {
		return nil, errors.New("I/O error")
	}
	src, ok := m[key]
	if !ok {
		return nil, ErrNoScript
	}
	return []byte(src), nil
}

func TestInclude(t *testing.T) {
	chain := mapLoader{}
	for i := 1; i <= 12; i++ {
		chain[fmt.Sprint("s", i)] = fmt.Sprintf("require \"include\"; include \"s%d\";", i+1)
	}
	chain["s13"] = "keep;"
	many := mapLoader{}
	var b strings.Builder
	b.WriteString(`require "include";`)
	for i := 0; i < 300; i++ {
		fmt.Fprintf(&b, "include \"m%d\";", i)
		many[fmt.Sprint("m", i)] = "keep;"
	}
	loader := mapLoader{
		"a":        `require ["include", "fileinto"]; fileinto "from-a"; include :once "b";`,
		"b":        `require ["include", "fileinto", "variables"]; global "g"; set "g" "${g}b"; fileinto "from-b";`,
		"self":     `require "include"; include "self";`,
		"global/g": `require "fileinto"; fileinto "global";`,
		"bad":      `require "fileinto"; fileinto;`,
	}
	tests := []struct {
		src    string
		loader IncludeLoader
		want   []string // nil: refused
	}{
		{`require "include"; include "s3";`, chain, nil},                     // 11 levels: deeper than 10, as sieve-test says
		{`require "include"; include "s4";`, chain, []string{"store INBOX"}}, // 10 levels, as sieve-test takes
		{b.String(), many, nil},                                              // more than 255 scripts
		{`require "include"; include "self";`, loader, nil},
		{`require "include"; include "bad";`, loader, nil},
		{`require "include"; include "nothere";`, loader, nil},
		{`require "include"; include "broken-disk";`, loader, nil},
		{`require "include"; include :optional "nothere";`, loader, []string{"implicit store INBOX"}},
		{`require "include"; include "nothere";`, nil, nil},
		{`require "include"; include :global "g";`, loader, []string{"store global"}},
		{`require "include"; include "g";`, loader, nil},
		{`require ["include", "variables", "fileinto"]; global "g"; include "b"; include :once "b"; include "a"; fileinto "g-${g}";`,
			loader, []string{"store from-b", "store from-a", "store g-b"}}, // a's include :once "b" does not run b again
		{`require ["include", "variables"]; set "n" "a"; include "${n}";`, loader, nil},
	}
	for _, tt := range tests {
		s, err := CompileWith([]byte(tt.src), CompileOptions{Extensions: AllExtensions(), Include: tt.loader})
		if tt.want == nil {
			var e *Error
			if err == nil || !errors.As(err, &e) {
				t.Errorf("%.60s: compiled (%v)", tt.src, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%.60s: %v", tt.src, err)
			continue
		}
		m, _ := ReadMessage(strings.NewReader(testMessage))
		if got := canonicalResult(s.RunWith(m, Envelope{}, RunOptions{})); !slices.Equal(got, tt.want) {
			t.Errorf("%.60s: %q, want %q", tt.src, got, tt.want)
		}
	}
}

func TestCurrentdate(t *testing.T) {
	now := time.Date(2027, 2, 28, 23, 59, 30, 0, time.UTC)
	src := `require ["date", "variables", "fileinto"];
if currentdate :matches "std11" "*" { fileinto "${1}"; }
if currentdate :zone "+0100" :matches "iso8601" "*" { fileinto "${1}"; }
if currentdate :matches "julian" "*" { fileinto "${1}"; }`
	paris, _ := time.LoadLocation("Europe/Paris")
	for _, c := range []struct {
		loc  *time.Location
		want []string
	}{
		{time.UTC, []string{"store Sun, 28 Feb 2027 23:59:30 +0000", "store 2027-03-01T00:59:30+01:00", "store 61464"}},
		{paris, []string{"store Mon, 01 Mar 2027 00:59:30 +0100", "store 2027-03-01T00:59:30+01:00", "store 61465"}},
	} {
		if c.loc == nil {
			continue
		}
		got := canonicalResult(compileRun(t, src, testMessage, RunOptions{Now: now, Location: c.loc}))
		if !slices.Equal(got, c.want) {
			t.Errorf("%v: %q, want %q", c.loc, got, c.want)
		}
	}
}

func TestBodyLimit(t *testing.T) {
	raw := "Subject: x\n\n" + strings.Repeat("a", 100) + "needle"
	m, err := ReadMessageLimit(strings.NewReader(raw), 50)
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Body) != 50 || !m.BodyTruncated || m.Size != int64(len(raw)) {
		t.Fatalf("body %d, truncated %v, size %d", len(m.Body), m.BodyTruncated, m.Size)
	}
	s, _ := compileAll([]byte(`require "body"; if body :contains "needle" { discard; }`), Limits{})
	if res := s.Run(m, Envelope{}); res.Actions[0].Kind == Discard {
		t.Error("a test saw past the limit")
	}
	m, _ = ReadMessage(strings.NewReader(raw))
	if res := s.Run(m, Envelope{}); res.Actions[0].Kind != Discard || m.BodyTruncated {
		t.Error("the body was not searched")
	}
	// CRLF or LF, the body test sees LF line ends, as Pigeonhole behind
	// Postfix does
	s, err = compileAll([]byte(`require ["body", "encoded-character"]; if body :raw :is "a${hex:0a}b${hex:0a}" { discard; }`), Limits{})
	if err != nil {
		t.Fatal(err)
	}
	for _, raw := range []string{"S: x\n\na\nb\n", "S: x\r\n\r\na\r\nb\r\n"} {
		m, _ = ReadMessage(strings.NewReader(raw))
		if res := s.Run(m, Envelope{}); res.Actions[0].Kind != Discard {
			t.Errorf("%q: body :raw :is did not match", raw)
		}
	}
}

func TestRegexBounds(t *testing.T) {
	long := strings.Repeat("a", maxRegexLength+1)
	if _, err := compileAll([]byte(`require "regex"; if header :regex "subject" "`+long+`" { discard; }`), Limits{}); err == nil {
		t.Error("an over-long pattern compiled")
	}
	// a pattern from a variable that does not compile matches nothing
	res := compileRun(t, `require ["regex", "variables"]; set "p" "(a"; if header :regex "subject" "${p}" { discard; }`, testMessage, RunOptions{})
	if res.Err != nil || res.Actions[0].Kind == Discard {
		t.Errorf("%+v", res)
	}
	// constant keys are compiled once, at compile time
	s, err := compileAll([]byte(`require "regex"; if header :regex "subject" ["^h", "o$"] { discard; }`), Limits{})
	if err != nil {
		t.Fatal(err)
	}
	found := 0
	for _, n := range s.nodes {
		found += len(n.regexps)
	}
	if found != 2 {
		t.Errorf("%d patterns compiled, want 2", found)
	}
}

func TestSpamTestDefault(t *testing.T) {
	src := `require ["spamtestplus", "variables", "fileinto"]; if spamtest :percent :matches "*" { fileinto "p${1}"; }`
	for _, c := range []struct{ header, want string }{
		{"X-Spamd-Result: default: False [7.40 / 15.00];\r\n\tBAYES_SPAM(5.10)[99.00%]\r\n", "store p49"},
		{"X-Spamd-Result: default: True [30 / 15.00]\r\n", "store p100"},
		{"X-Spamd-Result: default: False [-2.5 / 15.00]\r\n", "store p0"},
		// a sender's forged field before the one the milter appended
		{"X-Spamd-Result: default: False [0.00 / 15.00]\r\nSubject: x\r\nX-Spamd-Result: default: True [15.00 / 15.00]\r\n", "store p100"},
		{"X-Spamd-Result: garbage\r\n", "store p0"},
		{"Subject: no verdict\r\n", "store p0"},
	} {
		got := canonicalResult(compileRun(t, src, c.header+"\r\nbody\r\n", RunOptions{}))
		if got[0] != c.want {
			t.Errorf("%q: %q, want %q", c.header, got, c.want)
		}
	}
	res := compileRun(t, `require ["spamtest", "relational", "comparator-i;ascii-numeric"]; if spamtest :value "eq" :comparator "i;ascii-numeric" "0" { discard; }`,
		"X-Spamd-Result: default: False [1 / 15]\r\n\r\n", RunOptions{SpamTest: &SpamTestConfig{}})
	if res.Actions[0].Kind != Discard {
		t.Error("an empty configuration tested the message")
	}
}

// TestPigeonholeBugs: where Debian's Pigeonhole 2.3.19 is wrong, the
// oracle tests avoid the case and this test holds our answer.
func TestPigeonholeBugs(t *testing.T) {
	msg := "Date: Tue, 01 Dec 2026 23:30:00 -0800\r\nDate: Mon, 30 Nov 2026 08:15:42 +0530\r\n" +
		"Message-ID: <a@b>\r\nX-Number: 0042\r\nX-Number: 7\r\n\r\nbody\r\n"
	tests := []struct {
		name, src string
		want      []string
	}{
		// sieve-test: "final result: failed": the second test returns its
		// cached answer as an execution status.
		{"the same duplicate test twice", `require ["duplicate", "fileinto"]; if duplicate { fileinto "a"; } if duplicate { fileinto "b"; }`,
			[]string{"track duplicate", "implicit store INBOX"}},
		// sieve-test aborts (an assertion in its regex match of values).
		{"deleteheader :regex", `require ["editheader", "regex", "fileinto", "variables"]; deleteheader :regex "x-number" "^0"; if header :matches "x-number" "*" { fileinto "${1}"; }`,
			[]string{"store 7"}},
		// sieve-test counts 0 for header :count with :index, whatever the
		// fields (address and date count the field chosen).
		{"header :index :count", `require ["index", "relational", "fileinto"]; if header :index 2 :count "eq" "x-number" "1" { fileinto "one"; }`,
			[]string{"store one"}},
		// sieve-test ignores :last when :originalzone follows it.
		{"date :index :last :originalzone", `require ["date", "index", "fileinto", "variables"]; if date :index 1 :last :originalzone :matches "date" "zone" "*" { fileinto "${1}"; }`,
			[]string{"store +0530"}},
	}
	for _, tt := range tests {
		if got := canonicalResult(compileRun(t, tt.src, msg, RunOptions{})); !slices.Equal(got, tt.want) {
			t.Errorf("%s: %q, want %q", tt.name, got, tt.want)
		}
	}
	// sieve-test crashes (segmentation fault) on two :optional includes
	// of missing scripts.
	s, err := CompileWith([]byte(`require "include"; include :optional "a"; include :optional :global "b";`), CompileOptions{Extensions: AllExtensions(), Include: mapLoader{}})
	if err != nil {
		t.Fatal(err)
	}
	m, _ := ReadMessage(strings.NewReader(msg))
	if got := canonicalResult(s.Run(m, Envelope{})); !slices.Equal(got, []string{"implicit store INBOX"}) {
		t.Errorf("two missing optional includes: %q", got)
	}
}

// FuzzDuplicateFile: whatever the user left in the file, reading and
// committing work and the file written holds only well-formed lines.
func FuzzDuplicateFile(f *testing.F) {
	f.Add([]byte(strings.Repeat("a", 64) + " 99999999999\n"))
	f.Add([]byte("\x00\xff\n\n" + strings.Repeat("0", 64) + " -1\n"))
	now := time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, content []byte) {
		store := &DuplicateFile{Path: filepath.Join(t.TempDir(), "d"), MaxEntries: 5}
		if err := os.WriteFile(store.Path, content, 0o600); err != nil {
			t.Fatal(err)
		}
		id := duplicateID(nil, "x", false)
		if _, err := store.Seen(id, now); err != nil {
			t.Fatal(err)
		}
		if err := store.Commit([]DuplicateMark{{ID: id, Expires: now.Add(time.Hour)}, {ID: DuplicateID{File: "../../etc"}, Expires: now.Add(time.Hour)}}, now); err != nil {
			t.Fatal(err)
		}
		if ok, err := store.Seen(id, now); !ok || err != nil {
			t.Fatalf("committed mark not seen: %v", err)
		}
		b, _ := os.ReadFile(store.Path)
		lines := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
		if len(lines) > 5 {
			t.Fatalf("%d entries", len(lines))
		}
		for _, l := range lines {
			if _, _, ok := parseDuplicateLine([]byte(l)); !ok {
				t.Fatalf("written line %q does not parse", l)
			}
		}
	})
}

// TestConcurrentRunsExtensions: one Script using every extension (and an
// included script), one Message, many runs at once give the answer of one
// run alone (run with -race).
func TestConcurrentRunsExtensions(t *testing.T) {
	s, err := CompileWith(fiftyExtRules(), CompileOptions{Extensions: AllExtensions(), Include: benchIncludes})
	if err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile("testdata/messages/rspamd.eml")
	if err != nil {
		t.Fatal(err)
	}
	msg, err := ReadMessage(strings.NewReader(string(raw) + "invoice 10 unsubscribe-8\n"))
	if err != nil {
		t.Fatal(err)
	}
	opts := RunOptions{Now: time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC), Location: time.UTC,
		Duplicates: &DuplicateFile{Path: filepath.Join(t.TempDir(), "d")}}
	want := fmt.Sprintf("%q", canonicalResult(s.RunWith(msg, Envelope{From: "a@b.c", To: "d@e.f"}, opts)))
	done := make(chan string)
	for i := 0; i < 8; i++ {
		go func() {
			res := s.RunWith(msg, Envelope{From: "a@b.c", To: "d@e.f"}, opts)
			done <- fmt.Sprintf("%q", canonicalResult(res))
		}()
	}
	for i := 0; i < 8; i++ {
		if got := <-done; got != want {
			t.Errorf("concurrent run: %s, alone: %s", got, want)
		}
	}
	t.Log(want)
}

// Uploaded: an include missing is a warning, and the script runs as if it
// were :optional; warnings come in Pigeonhole's order (sievec's), an
// included script's named, and those before an error are told too.
func TestCompileWarnings(t *testing.T) {
	loader := mapLoader{
		"lib": "require [\"editheader\", \"include\"];\ndeleteheader \"received\";\ninclude :global \"gone\";",
	}
	for _, tt := range []struct {
		src      string
		uploaded bool
		want     []Warning
		fails    bool
	}{
		{`require "include"; include "nothere"; keep;`, true,
			[]Warning{{"", 1, 28, "included personal script 'nothere' does not exist (ignored during upload)"}}, false},
		{`require "include"; include "nothere"; keep;`, false, nil, true},
		// Pigeonhole's order: the script's parser, its checks, then its
		// included scripts (checked as it is compiled)
		{"require [\"include\", \"editheader\"];\r\ninclude \"lib\";\r\naddheader \"x-sieve-redirected-from\" \"x\";\r\n# end", true, []Warning{
			{"", 4, 6, "no newline (CRLF) at end of hash comment at end of file"},
			{"", 3, 11, "addheader command: adding specified header field `x-sieve-redirected-from' is forbidden; modification will be denied"},
			{"lib", 2, 14, "deleteheader command: deleting specified header field `received' is forbidden; modification will be denied"},
			{"lib", 3, 17, "included global script 'gone' does not exist (ignored during upload)"},
		}, false},
		{"require \"editheader\";\ndeleteheader \"Received\";\nfoo;", false,
			[]Warning{{"", 2, 14, "deleteheader command: deleting specified header field `Received' is forbidden; modification will be denied"}}, true},
		{"require \"variables\"; set \"h\" \"received\";\nrequire \"editheader\"; deleteheader \"${h}\"; # x\n", true, nil, true},
		{"require [\"variables\", \"editheader\"]; set \"h\" \"received\"; deleteheader \"${h}\"; # x\n", true, nil, false},
	} {
		var got []Warning
		s, err := CompileWith([]byte(tt.src), CompileOptions{Extensions: AllExtensions(), Include: loader, Uploaded: tt.uploaded, Warn: func(w Warning) { got = append(got, w) }})
		if (err != nil) != tt.fails {
			t.Errorf("%.60q: error %v", tt.src, err)
		}
		if !slices.Equal(got, tt.want) {
			t.Errorf("%.60q:\n got %+v\nwant %+v", tt.src, got, tt.want)
		}
		if s != nil {
			m, _ := ReadMessage(strings.NewReader(testMessage))
			if r := canonicalResult(s.RunWith(m, Envelope{}, RunOptions{})); !slices.Equal(r, []string{"implicit store INBOX"}) && !slices.Equal(r, []string{"store INBOX"}) {
				t.Errorf("%.60q: runs %q", tt.src, r)
			}
		}
	}
}
