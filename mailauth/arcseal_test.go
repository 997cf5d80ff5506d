package mailauth

import (
	"context"
	"net/netip"
	"strings"
	"testing"

	"courriel/internal/testenv"
)

// TestARCSealVerifiedByDkimpy: what Seal adds verifies with dkimpy's
// arc_verify and with ours, as the first set of a chain (cv=none) and on
// top of a chain dkimpy sealed (cv=pass), and a later change breaks it.
func TestARCSealVerifiedByDkimpy(t *testing.T) {
	d := testenv.StartDNS(t, `py.test. TXT "v=spf1 -all"`, `orig.test. TXT "v=spf1 ip4:192.0.2.10 -all"`)
	rsaPEM, _ := dkimpyKeys(t, d, "list.test")
	sealer, err := NewSealer(testKeys(t, d, "fwd.test", "s1"))
	if err != nil {
		t.Fatal(err)
	}
	c := NewChecker("fwd.test", NewResolver(d.Addr), false)
	ctx := context.Background()
	// seal runs our checks on msg as port 25 does, puts the results on top
	// and seals.
	seal := func(msg string) string {
		t.Helper()
		v, err := c.Check(ctx, Input{IP: netip.MustParseAddr("192.0.2.10"), Helo: "mx.orig.test", MailFrom: "alice@orig.test"}, strings.NewReader(msg), int64(len(msg)))
		if err != nil {
			t.Fatal(err)
		}
		withAR := string(v.Fields) + msg
		set, err := sealer.Seal(strings.NewReader(withAR), int64(len(withAR)), v.ARC, v.ARCInstances, v.Fields)
		if err != nil {
			t.Fatal(err)
		}
		return string(set) + withAR
	}
	const verify = `
import dkim
cv, res, why = dkim.arc_verify(sys.stdin.buffer.read())
print(cv.decode(), len(res))
`
	ours := func(msg string) string {
		fields, end, _, _ := readHeader(strings.NewReader(msg))
		got, _ := c.verifyARC(ctx, fields, strings.NewReader(msg), int64(len(msg)), end)
		return string(got)
	}

	first := seal(msgFrom("alice@orig.test"))
	for _, want := range []string{"ARC-Seal: i=1; a=rsa-sha256;", "cv=none", "ARC-Message-Signature: i=1;", "ARC-Authentication-Results: i=1; fwd.test;", "spf=pass"} {
		if !strings.Contains(first, want) {
			t.Errorf("sealed message lacks %q:\n%s", want, first)
		}
	}
	// dkimpy seals a second hop over ours (a list), then we seal a third.
	const pySeal = `
import dkim
msg = sys.stdin.buffer.read()
msg = b"Authentication-Results: list.test; arc=pass\r\n" + msg
msg = b"".join(dkim.arc_sign(msg, b"py-rsa", b"list.test", sys.argv[2].encode(), b"list.test")) + msg
sys.stdout.buffer.write(msg)
`
	second := runOracle(t, d.Addr, pySeal, []byte(first), rsaPEM)
	second = strings.ReplaceAll(strings.ReplaceAll(second, "\r\n", "\n"), "\n", "\r\n") + "\r\n"
	third := seal(second)
	if !strings.Contains(third, "ARC-Seal: i=3;") || !strings.Contains(third, "cv=pass") {
		t.Fatalf("third hop:\n%s", third)
	}

	cases := []struct{ name, msg, py, ours string }{
		{"our seal alone", first, "pass 1", "pass"},
		{"dkimpy's over ours", second, "pass 2", "pass"},
		{"ours over dkimpy's over ours", third, "pass 3", "pass"},
		{"body changed after our seal", strings.Replace(first, "hello", "hellO", 1), "fail 1", "fail"},
		{"subject changed after our seal", strings.Replace(first, "Subject: t", "Subject: u", 1), "fail 1", "fail"},
		{"our results changed", strings.Replace(first, "i=1; fwd.test;", "i=1; fwd.test; dkim=pass;", 1), "fail 1", "fail"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			py := runOracle(t, d.Addr, verify, []byte(tc.msg))
			if got := ours(tc.msg); py != tc.py || got != tc.ours {
				t.Errorf("dkimpy %q, courriel %q; want %q and %q\n%s", py, got, tc.py, tc.ours, tc.msg)
			}
		})
	}
	// A chain already failed is sealed with cv=fail; a malformed one not at all.
	broken := strings.Replace(first, "hello", "hellO", 1)
	if s := seal(broken); !strings.Contains(s, "ARC-Seal: i=2;") || !strings.Contains(s, "cv=fail") {
		t.Errorf("failed chain sealed as:\n%s", s)
	}
	if _, err := sealer.Seal(strings.NewReader(first), int64(len(first)), "pass", -1, []byte("Authentication-Results: fwd.test; none\r\n")); err != ErrNoSeal {
		t.Errorf("malformed chain: %v", err)
	}
}
