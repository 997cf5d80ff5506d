package mailauth

import (
	"context"
	"net/netip"
	"strings"
	"testing"

	"courriel/internal/testenv"
)

// benchMessage is a typical message: a dozen header fields, 4 KiB of body.
var benchMessage = "From: Alice <alice@example.org>\r\nTo: bob@example.net\r\nCc: carol@example.net\r\n" +
	"Subject: quarterly figures\r\nDate: Sun, 06 Dec 2026 12:00:00 +0000\r\nMessage-ID: <bench@example.org>\r\n" +
	"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n" +
	strings.Repeat("Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod.\r\n", 56)

// BenchmarkSign: one message signed with Ed25519 and RSA-2048 (both
// signatures). Run with -cpu 1 for the one-core figure (msgs/s).
func BenchmarkSign(b *testing.B) {
	s, err := NewSigner([]DomainKeys{testKeys(b, nil, "example.org", "bench")})
	if err != nil {
		b.Fatal(err)
	}
	r := strings.NewReader(benchMessage)
	b.SetBytes(int64(len(benchMessage)))
	b.ResetTimer()
	for b.Loop() {
		if _, err := s.Sign(r, r.Size()); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}

// BenchmarkCheck: the whole inbound check of a message with both our
// signatures (SPF for MAIL FROM and HELO, two DKIM verifications, DMARC),
// DNS answers from the test's server and then the cache, as for a stream
// of mail from one sender.
func BenchmarkCheck(b *testing.B) {
	d := testenv.StartDNS(b, `example.org. TXT "v=spf1 ip4:192.0.2.0/24 -all"`, `_dmarc.example.org. TXT "v=DMARC1; p=reject"`,
		`mx.example.org. TXT "v=spf1 a -all"`, `mx.example.org. A 192.0.2.10`)
	s, err := NewSigner([]DomainKeys{testKeys(b, d, "example.org", "bench")})
	if err != nil {
		b.Fatal(err)
	}
	msg := sign(b, s, benchMessage)
	c := NewChecker("mx.test", NewResolver(d.Addr), false)
	in := Input{IP: netip.MustParseAddr("192.0.2.10"), Helo: "mx.example.org", MailFrom: "alice@example.org"}
	r := strings.NewReader(msg)
	b.SetBytes(int64(len(msg)))
	b.ResetTimer()
	for b.Loop() {
		v, err := c.Check(context.Background(), in, r, r.Size())
		if err != nil || !strings.Contains(string(v.Fields), "dmarc=pass") || strings.Count(string(v.Fields), "dkim=pass") != 2 {
			b.Fatalf("%v %s", err, v.Fields)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}
