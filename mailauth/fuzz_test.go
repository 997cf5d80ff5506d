package mailauth

import (
	"bytes"
	"context"
	"net"
	"net/netip"
	"strings"
	"testing"
)

// FuzzOwnResultsRemoved: whatever the header, removing our
// Authentication-Results keeps every other byte in order, removes only
// whole fields of that name claiming our id, and leaves none of ours.
func FuzzOwnResultsRemoved(f *testing.F) {
	f.Add("Authentication-Results: mx.test; dkim=pass\r\nFrom: a@b\r\n\r\nbody\r\n")
	f.Add("Authentication-Results: (c) MX.TEST.; x\r\n folded\r\nX: y\r\nAuthentication-Results: other; z\r\n\r\n")
	f.Add("no header at all")
	f.Add("Authentication-Results:mx.test\n\nAuthentication-Results: mx.test; body\n")
	c := &Checker{authservID: "mx.test"}
	f.Fuzz(func(t *testing.T, msg string) {
		fields, end, _, err := readHeader(strings.NewReader(msg))
		if err != nil || end < 0 || end > int64(len(msg)) {
			t.Fatalf("readHeader: end %d of %d, %v", end, len(msg), err)
		}
		var all []byte
		for _, f := range fields {
			all = append(all, f.Raw...)
		}
		if !bytes.Equal(all, []byte(msg[:end])) {
			t.Fatalf("fields are not the header's bytes:\n%q\n%q", all, msg[:end])
		}
		kept, removed := c.withoutOwnResults(fields)
		if !removed && !bytes.Equal(kept, all) {
			t.Fatal("changed without removing")
		}
		rest, _, _, _ := readHeader(bytes.NewReader(append(kept, msg[end:]...)))
		for _, f := range rest {
			if strings.EqualFold(f.Name, "Authentication-Results") && strings.EqualFold(authservIDOf(f.value()), "mx.test") {
				t.Fatalf("one of ours left: %q", f.Raw)
			}
		}
	})
}

// noDNS answers "no such name" to everything.
type noDNS struct{}

func (noDNS) LookupTXT(context.Context, string) ([]string, error) { return nil, notFound }
func (noDNS) LookupMX(context.Context, string) ([]*net.MX, error) { return nil, notFound }
func (noDNS) LookupIPAddr(context.Context, string) ([]net.IPAddr, error) {
	return nil, notFound
}
func (noDNS) LookupAddr(context.Context, string) ([]string, error) { return nil, notFound }

var notFound = &net.DNSError{Err: "no such host", IsNotFound: true}

// FuzzCheck: no input makes Check fail or panic, and what it writes is one
// header field of printable ASCII.
func FuzzCheck(f *testing.F) {
	f.Add("ARC-Seal: i=1; cv=none; a=rsa-sha256; d=x.test; s=s; b=AAAA\r\nARC-Message-Signature: i=1; h=from; bh=; b=\r\nARC-Authentication-Results: i=1; x\r\nFrom: a@b.test\r\n\r\nx\r\n", "a@b.test")
	f.Add("DKIM-Signature: v=1; a=rsa-sha256; d=b.test; s=s; h=from; bh=x; b=y\r\nFrom: <a@b.test>\r\n\r\n", "")
	c := NewChecker("mx.test", noDNS{}, false)
	f.Fuzz(func(t *testing.T, msg, from string) {
		v, err := c.Check(context.Background(), Input{IP: netip.MustParseAddr("192.0.2.1"), Helo: "h.test", MailFrom: from},
			strings.NewReader(msg), int64(len(msg)))
		if err != nil {
			t.Fatal(err)
		}
		s := string(v.Fields)
		if !strings.HasPrefix(s, "Authentication-Results: mx.test;") || !strings.HasSuffix(s, "\r\n") {
			t.Fatalf("field %q", s)
		}
		for _, line := range strings.Split(strings.TrimSuffix(s, "\r\n"), "\r\n\t") {
			for _, c := range []byte(line) {
				if c < ' ' || c > '~' {
					t.Fatalf("byte %#x in %q", c, s)
				}
			}
		}
	})
}
