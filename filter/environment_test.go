package filter

import (
	"strings"
	"testing"

	"courriel/delivery"
	"courriel/sieve"
)

// TestEnvironment: the environment test's client items come from our own
// Received field only.
func TestEnvironment(t *testing.T) {
	f, _ := New(Options{Store: &delivery.Store{}, Directory: fakeDir{}, Hostname: "mx.example.org"})
	tests := []struct{ received, host, ip string }{
		{"from helo.example (mail.example.net [192.0.2.7])\r\n\tby mx.example.org (courriel) with ESMTPS id X\r\n\tfor <a@b>; date",
			"mail.example.net", "192.0.2.7"},
		{"from helo (unknown [IPv6:2001:db8::1])\r\n\t(using TLSv1.3 with cipher X)\r\n\tby mx.example.org (courriel) with ESMTP id X; d",
			"", "2001:db8::1"},
		{"from helo (mail.example.net [192.0.2.7]) by other.example (courriel) with ESMTP id X; d", "", ""},
		{"from helo (mail.example.net [not-an-ip]) by mx.example.org (courriel) with ESMTP id X; d", "", ""},
		{"by mx.example.org (courriel) with ESMTP id X; d", "", ""},
	}
	for _, tc := range tests {
		msg, err := sieve.ReadMessage(strings.NewReader("Received: " + tc.received + "\r\nSubject: x\r\n\r\nbody\r\n"))
		if err != nil {
			t.Fatal(err)
		}
		e := f.environment(msg)
		host, ip := e.Remote()
		if host != tc.host || ip != tc.ip || e.Host != "mx.example.org" || e.Domain != "example.org" {
			t.Errorf("%q: got %+v, want host %q ip %q", tc.received, e, tc.host, tc.ip)
		}
	}
}
