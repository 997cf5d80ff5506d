package main

import (
	"strings"
	"testing"
)

func TestIsLoopback(t *testing.T) {
	t.Parallel()
	for host, want := range map[string]bool{
		"127.0.0.1": true, "127.0.0.2": true, "::1": true, "localhost": true,
		"": false, "0.0.0.0": false, "::": false, "192.0.2.1": false, "10.0.0.1": false,
		"2001:db8::1": false, "::ffff:192.0.2.1": false, "no-such-host.invalid": false,
	} {
		if got := isLoopback(host); got != want {
			t.Errorf("isLoopback(%q) = %v, want %v", host, got, want)
		}
	}
}

// The demo's examples put an IPv6 -listen address in brackets, in the
// forms swaks, curl and ldapsearch take.
func TestDemoHelpIPv6(t *testing.T) {
	t.Parallel()
	for host, want := range map[string][]string{
		"::1": {"swaks --server '[::1]:2525' ", "swaks --server '[::1]:2587' ", "swaks --server '[::1]:2465' ",
			"'imaps://[::1]:2993/INBOX?ALL'", "curl 'http://[::1]:8025/healthz'", "'http://[::1]:8025/mail/", "-H 'ldap://[::1]:3389' ",
			"sieve-connect --server ::1 --port 14190", "IMAP server ::1 port 2993"},
		"127.0.0.1": {"swaks --server 127.0.0.1:2525 ", "'imaps://127.0.0.1:2993/INBOX?ALL'", "curl 'http://127.0.0.1:8025/healthz'", "-H 'ldap://127.0.0.1:3389' "},
	} {
		cfg := demoConfig("/tmp/d", host)
		var b strings.Builder
		printDemoHelp(&b, &cfg, host, "/tmp/d")
		for _, w := range want {
			if !strings.Contains(b.String(), w) {
				t.Errorf("-listen %s: no %q in\n%s", host, w, b.String())
			}
		}
		if strings.Contains(b.String(), "%!") {
			t.Errorf("-listen %s: bad format:\n%s", host, b.String())
		}
	}
}
