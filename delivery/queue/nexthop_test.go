package queue

import "testing"

// Postfix's relayhost syntax: host, host:port (MX lookup), [host],
// [host]:port (the host itself).
func TestParseNexthop(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]Nexthop{
		"smtp.provider.net":       {Host: "smtp.provider.net", Port: "25", MX: true},
		"Smtp.Provider.NET.":      {Host: "smtp.provider.net", Port: "25", MX: true},
		"[smtp.provider.net]":     {Host: "smtp.provider.net", Port: "25"},
		"[smtp.provider.net]:587": {Host: "smtp.provider.net", Port: "587"},
		"smtp.provider.net:587":   {Host: "smtp.provider.net", Port: "587", MX: true},
		"smtp_relay.lan:25":       {Host: "smtp_relay.lan", Port: "25", MX: true},
		"relais.bücher.test:2525": {Host: "relais.xn--bcher-kva.test", Port: "2525", MX: true},
		"192.0.2.1":               {Host: "192.0.2.1", Port: "25"},
		"192.0.2.1:2525":          {Host: "192.0.2.1", Port: "2525"},
		"[192.0.2.1]:2525":        {Host: "192.0.2.1", Port: "2525"},
		"[2001:db8::1]:587":       {Host: "2001:db8::1", Port: "587"},
		"[ipv6:2001:db8::1]":      {Host: "2001:db8::1", Port: "25"},
		"[IPv6:2001:DB8::1]:465":  {Host: "2001:db8::1", Port: "465"},
	} {
		got, err := ParseNexthop(in)
		if err != nil || got != want {
			t.Errorf("ParseNexthop(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "smtp_relay!:25", "exa mple:25", "[smtp.provider.net", "[smtp.provider.net]587",
		"smtp.provider.net:", "smtp.provider.net:smtp", "host:0", "host:65536", "2001:db8::1", "[]:25", "-host:25", "[fe80::1%eth0]:25"} {
		if got, err := ParseNexthop(in); err == nil {
			t.Errorf("ParseNexthop(%q) = %+v, want an error", in, got)
		}
	}
	for in, want := range map[string]string{
		"relay.test": "relay.test:25", "[relay.test]": "[relay.test]:25", "[2001:db8::1]:587": "[2001:db8::1]:587",
	} {
		if nh, _ := ParseNexthop(in); nh.String() != want {
			t.Errorf("ParseNexthop(%q).String() = %q, want %q", in, nh.String(), want)
		}
	}
}
