package mtasts

import (
	"strings"
	"testing"
	"time"
)

func TestParse(t *testing.T) {
	good := "version: STSv1\r\nmode: enforce\r\nmx: mail.example.org\r\nmx: *.example.net\r\nmax_age: 604800\r\n"
	p, err := Parse([]byte(good))
	if err != nil {
		t.Fatal(err)
	}
	if p.Mode != ModeEnforce || p.MaxAge != 604800*time.Second || len(p.MX) != 2 {
		t.Fatalf("parsed %+v", p)
	}
	many := "version: STSv1\nmode: testing\nmax_age: 10\n" + strings.Repeat("mx: a.example.org\n", 101)
	huge := "version: STSv1\nmode: testing\nmax_age: 10\nmx: a.example.org\n" + strings.Repeat("x: y\n", MaxPolicyBytes/5+1)
	for _, tc := range []struct{ name, body string }{
		{"no version", "mode: enforce\nmx: a.example.org\nmax_age: 1\n"},
		{"wrong version", "version: STSv2\nmode: enforce\nmx: a.example.org\nmax_age: 1\n"},
		{"version twice", "version: STSv1\nversion: STSv1\nmode: enforce\nmx: a.example.org\nmax_age: 1\n"},
		{"unknown mode", "version: STSv1\nmode: strict\nmx: a.example.org\nmax_age: 1\n"},
		{"mode twice", "version: STSv1\nmode: testing\nmode: enforce\nmx: a.example.org\nmax_age: 1\n"},
		{"no mx", "version: STSv1\nmode: enforce\nmax_age: 1\n"},
		{"no max_age", "version: STSv1\nmode: enforce\nmx: a.example.org\n"},
		{"max_age over a year", "version: STSv1\nmode: enforce\nmx: a.example.org\nmax_age: 31557601\n"},
		{"max_age overflow", "version: STSv1\nmode: enforce\nmx: a.example.org\nmax_age: 99999999999999999999999\n"},
		{"max_age negative", "version: STSv1\nmode: enforce\nmx: a.example.org\nmax_age: -1\n"},
		{"bad mx", "version: STSv1\nmode: enforce\nmx: a..example.org\nmax_age: 1\n"},
		{"mx double wildcard", "version: STSv1\nmode: enforce\nmx: *.*.example.org\nmax_age: 1\n"},
		{"mx single label", "version: STSv1\nmode: enforce\nmx: localhost\nmax_age: 1\n"},
		{"no colon", "version: STSv1\nmode enforce\nmx: a.example.org\nmax_age: 1\n"},
		{"too many mx", many},
		{"huge", huge},
		{"html", "<html><body>not found</body></html>"},
	} {
		if p, err := Parse([]byte(tc.body)); err == nil {
			t.Errorf("%s: accepted: %+v", tc.name, p)
		}
	}
	// Mode none needs no mx; unknown fields are extensions.
	if _, err := Parse([]byte("version: STSv1\nmode: none\nmax_age: 0\nfuture: x\n")); err != nil {
		t.Errorf("mode none: %v", err)
	}
}

func TestMatch(t *testing.T) {
	p := &Policy{MX: []string{"mail.example.org", "*.example.net"}}
	for host, want := range map[string]bool{
		"mail.example.org":   true,
		"MAIL.Example.ORG.":  true,
		"mx1.example.net":    true,
		"example.net":        false,
		"a.b.example.net":    false,
		"mail.example.org.x": false,
		"xmail.example.org":  false,
		".example.net":       false,
	} {
		if got := p.Match(host); got != want {
			t.Errorf("Match(%q) = %v, want %v", host, got, want)
		}
	}
}

func TestParseRecord(t *testing.T) {
	id, err := ParseRecord([]string{"something else", "v=STSv1; id=20260101T00;"})
	if err != nil || id != "20260101T00" {
		t.Fatalf("got %q, %v", id, err)
	}
	if _, err := ParseRecord([]string{"v=spf1 -all"}); err != ErrNoRecord {
		t.Errorf("no record: %v", err)
	}
	for _, bad := range [][]string{
		{"v=STSv1;"},
		{"v=STSv1; id=abc!"},
		{"v=STSv1; id=" + strings.Repeat("a", 33)},
		{"v=STSv1; id=a", "v=STSv1; id=b"},
		{"v=STSv1; id=a; id=b"},
	} {
		if id, err := ParseRecord(bad); err == nil {
			t.Errorf("%q accepted as %q", bad, id)
		}
	}
}
