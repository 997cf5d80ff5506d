package smtp

import (
	"context"
	"crypto/tls"
	"strings"
	"time"
)

// received builds the Received: trace field (RFC 5321 §4.4), Postfix style
// with its smtpd_tls_received_header details (SPEC §3):
//
//	Received: from helo (rdns [ip])
//		(using TLSv1.3 with cipher TLS_AES_128_GCM_SHA256)
//		by host (courriel) with ESMTPSA id MSGID
//		for <rcpt>; Wed, 25 Nov 2026 10:16:36 +0000 (UTC)
//
// with protocol names from RFC 3848 (RFC 6531 §3.7.3 for SMTPUTF8): SMTP
// after HELO, as Postfix writes it. Every value from the network is
// sanitized: nothing can fold the header or add another one.
func (s *session) received(now time.Time) []byte {
	var b strings.Builder
	b.WriteString("Received: from ")
	b.WriteString(cleanHelo(s.helo))
	b.WriteString(" (")
	b.WriteString(s.reverseName())
	b.WriteString(" [")
	if s.c.ip.Is6() {
		b.WriteString("IPv6:")
	}
	b.WriteString(s.c.ip.String())
	b.WriteString("])\r\n")
	if s.tls != nil {
		b.WriteString("\t(using ")
		b.WriteString(tlsVersion(s.tls.Version))
		b.WriteString(" with cipher ")
		b.WriteString(tls.CipherSuiteName(s.tls.CipherSuite))
		b.WriteString(")\r\n")
	}
	b.WriteString("\tby ")
	b.WriteString(s.srv.o.Hostname)
	b.WriteString(" (courriel) with ")
	b.WriteString(s.protocol())
	b.WriteString(" id ")
	b.WriteString(s.tx.id)
	if len(s.tx.rcpts) == 1 {
		b.WriteString("\r\n\tfor <")
		b.WriteString(s.tx.rcpts[0])
		b.WriteString(">")
	}
	b.WriteString(";\r\n\t")
	b.WriteString(now.Format("Mon, 02 Jan 2006 15:04:05 -0700 (MST)"))
	b.WriteString("\r\n")
	return []byte(b.String())
}

func (s *session) protocol() string {
	if !s.esmtp {
		return "SMTP"
	}
	p := "ESMTP"
	if s.tx.utf8 {
		p = "UTF8SMTP"
	}
	if s.tls != nil {
		p += "S"
	}
	if s.user != nil || s.clusterPeer { // s.mu held (data)
		p += "A"
	}
	return p
}

func tlsVersion(v uint16) string {
	switch v {
	case tls.VersionTLS10:
		return "TLSv1"
	case tls.VersionTLS11:
		return "TLSv1.1"
	case tls.VersionTLS12:
		return "TLSv1.2"
	case tls.VersionTLS13:
		return "TLSv1.3"
	}
	return "TLS"
}

// cleanHelo keeps the characters a host name or address literal can have.
func cleanHelo(h string) string {
	if h == "" {
		return "unknown"
	}
	if len(h) > maxDomain {
		h = h[:maxDomain]
	}
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
			return r
		case strings.ContainsRune(".-_:[]", r):
			return r
		}
		return '?'
	}, h)
}

// reverseName is the client's PTR name, looked up once per connection with
// a short timeout; "unknown" when there is none or it is not a host name.
// It is not forward-confirmed: it is information, never used for policy.
func (s *session) reverseName() string {
	c := s.c
	c.mu.Lock()
	if c.rdns != nil {
		defer c.mu.Unlock()
		return *c.rdns
	}
	c.mu.Unlock()
	name := "unknown"
	ctx, cancel := context.WithTimeout(s.ctx, 5*time.Second)
	defer cancel()
	if names, err := s.srv.o.LookupAddr(ctx, c.ip.String()); err == nil && len(names) > 0 {
		n := strings.TrimSuffix(names[0], ".")
		if validDomain(n) && isASCII(n) {
			name = strings.ToLower(n)
		}
	}
	c.mu.Lock()
	c.rdns = &name
	c.mu.Unlock()
	return name
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}
