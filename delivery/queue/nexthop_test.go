package queue

import "testing"

// Postfix's relayhost syntax: host, host:port, [host], [host]:port.
func TestParseNexthop(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"smtp.provider.net":       "smtp.provider.net:25",
		"[smtp.provider.net]":     "smtp.provider.net:25",
		"[smtp.provider.net]:587": "smtp.provider.net:587",
		"smtp.provider.net:587":   "smtp.provider.net:587",
		"smtp_relay.lan:25":       "smtp_relay.lan:25",
		"192.0.2.1":               "192.0.2.1:25",
		"[192.0.2.1]:2525":        "192.0.2.1:2525",
		"[2001:db8::1]:587":       "[2001:db8::1]:587",
		"[ipv6:2001:db8::1]":      "[2001:db8::1]:25",
		"[IPv6:2001:db8::1]:465":  "[2001:db8::1]:465",
	} {
		got, err := ParseNexthop(in)
		if err != nil || got != want {
			t.Errorf("ParseNexthop(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"", "smtp_relay!:25", "exa mple:25", "[smtp.provider.net", "[smtp.provider.net]587",
		"smtp.provider.net:", "smtp.provider.net:smtp", "host:0", "host:65536", "2001:db8::1", "[]:25", "-host:25", "[fe80::1%eth0]:25"} {
		if got, err := ParseNexthop(in); err == nil {
			t.Errorf("ParseNexthop(%q) = %q, want an error", in, got)
		}
	}
}
