package mailauth

import (
	"context"
	"net/netip"
	"strings"
	"testing"

	"courriel/internal/testenv"
)

// TestARCAgainstDkimpy: chains sealed by dkimpy (two hops, RSA) verify
// here as dkimpy's own arc_verify says: pass as sealed, fail once the body,
// an older ARC-Authentication-Results or a seal's cv= is changed.
func TestARCAgainstDkimpy(t *testing.T) {
	d := testenv.StartDNS(t, `py.test. TXT "v=spf1 -all"`)
	rsaPEM, _ := dkimpyKeys(t, d, "list.test") // dkimpy 1.1 seals with RSA only
	const seal = `
import dkim
msg = sys.stdin.buffer.read()
key = sys.argv[2].encode()
# dkimpy takes the chain status of a hop from that hop's own arc= result.
for hop, arc in ((b"list.test", b""), (b"second.list.test", b"; arc=pass")):
    msg = b"Authentication-Results: " + hop + b"; spf=pass smtp.mailfrom=alice@py.test" + arc + b"\r\n" + msg
    sigs = dkim.arc_sign(msg, b"py-rsa", b"list.test", key, hop)
    msg = b"".join(sigs) + msg
sys.stdout.buffer.write(msg)
`
	const verify = `
import dkim
cv, res, why = dkim.arc_verify(sys.stdin.buffer.read())
print(cv.decode())
`
	sealed := runOracle(t, d.Addr, seal, []byte(msgFrom("alice@py.test")), rsaPEM)
	sealed = strings.ReplaceAll(strings.ReplaceAll(sealed, "\r\n", "\n"), "\n", "\r\n") + "\r\n"
	if strings.Count(sealed, "ARC-Seal:") != 2 {
		t.Fatalf("dkimpy sealed:\n%s", sealed)
	}
	c := NewChecker("mx.test", NewResolver(d.Addr), false)
	cases := []struct{ name, msg, want string }{
		{"as sealed", sealed, "pass"},
		{"body changed", strings.Replace(sealed, "hello", "hellO", 1), "fail"},
		{"older results changed", strings.Replace(sealed, "i=1; list.test; spf=pass", "i=1; list.test; spf=fail", 1), "fail"},
		{"cv changed", strings.Replace(sealed, "cv=pass", "cv=none", 1), "fail"},
		{"no chain", msgFrom("alice@py.test"), "none"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			py := runOracle(t, d.Addr, verify, []byte(tc.msg))
			fields, end, _, _ := readHeader(strings.NewReader(tc.msg))
			got, why := c.verifyARC(context.Background(), fields, strings.NewReader(tc.msg), int64(len(tc.msg)), end)
			if string(got) != tc.want || py != tc.want {
				t.Errorf("courriel %s (%s), dkimpy %s, want %s", got, why, py, tc.want)
			}
		})
	}
	v, err := c.Check(context.Background(), Input{IP: netip.MustParseAddr("192.0.2.10"), Helo: "list.test", MailFrom: "bounce@list.test"},
		strings.NewReader(sealed), int64(len(sealed)))
	if err != nil || !strings.Contains(string(v.Fields), "arc=pass") {
		t.Errorf("Check: %v\n%s", err, v.Fields)
	}
}
