package smtp

import (
	"context"
	"crypto/tls"
	"net/netip"
	"strings"
	"sync"
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
	if s.c.peer != nil {
		return s.localReceived(now)
	}
	// Room for the field and what data appends to it (addedFields): one
	// allocation for the whole trace header of most messages.
	b := make([]byte, 0, 512)
	b = append(b, "Received: from "...)
	if s.helo == "" { // MAIL without HELO: the client's name, as Postfix
		b = append(b, s.reverseName()...)
	} else {
		b = append(b, cleanHelo(s.helo)...)
	}
	b = append(b, " ("...)
	b = append(b, s.reverseName()...)
	b = append(b, " ["...)
	if s.c.ip.Is6() {
		b = append(b, "IPv6:"...)
	}
	b = s.c.ip.AppendTo(b)
	b = append(b, "])\r\n"...)
	if s.tls != nil {
		b = append(b, "\t(using "...)
		b = append(b, tlsVersion(s.tls.Version)...)
		b = append(b, " with cipher "...)
		b = append(b, tls.CipherSuiteName(s.tls.CipherSuite)...)
		b = append(b, ")\r\n"...)
	}
	return s.appendBy(b, s.protocol(), now)
}

// appendBy ends a Received: field after its from clause: by us, with
// protocol (none when ""), our id, the one recipient, the date.
func (s *session) appendBy(b []byte, protocol string, now time.Time) []byte {
	b = append(b, "\tby "...)
	b = append(b, s.srv.o.Hostname...)
	b = append(b, " (courriel)"...)
	if protocol != "" {
		b = append(b, " with "...)
		b = append(b, protocol...)
	}
	b = append(b, " id "...)
	b = append(b, s.tx.id...)
	if len(s.tx.rcpts) == 1 {
		b = append(b, "\r\n\tfor <"...)
		b = append(b, s.tx.rcpts[0]...)
		b = append(b, ">"...)
	}
	b = append(b, ";\r\n\t"...)
	b = now.AppendFormat(b, "Mon, 02 Jan 2006 15:04:05 -0700 (MST)")
	return append(b, "\r\n"...)
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
// The server remembers it for a while (rdnsCache): a sender that opens a
// connection per message is looked up once, not for every message.
func (s *session) reverseName() string {
	c := s.c
	c.mu.Lock()
	if c.rdns != nil {
		defer c.mu.Unlock()
		return *c.rdns
	}
	c.mu.Unlock()
	now := s.srv.o.Now()
	name, ok := s.srv.rdns.get(c.ip, now)
	if !ok {
		name = "unknown"
		ctx, cancel := context.WithTimeout(s.ctx, 5*time.Second)
		names, err := s.srv.o.LookupAddr(ctx, c.ip.String())
		cancel()
		if err == nil && len(names) > 0 {
			n := strings.TrimSuffix(names[0], ".")
			if validDomain(n) && isASCII(n) {
				name = strings.ToLower(n)
			}
		}
		if s.ctx.Err() == nil { // a lookup cut short by the session's end says nothing
			s.srv.rdns.put(c.ip, name, now)
		}
	}
	c.mu.Lock()
	c.rdns = &name
	c.mu.Unlock()
	return name
}

// rdnsCache remembers the reverse names of recent clients for rdnsTTL, at
// most maxRDNS of them (then it starts afresh). A failed lookup is
// remembered too ("unknown"): a client whose DNS times out does not make
// each of its connections wait for it.
type rdnsCache struct {
	mu sync.Mutex
	m  map[netip.Addr]rdnsEntry // guarded by mu
}

type rdnsEntry struct {
	name  string
	until time.Time
}

const (
	rdnsTTL = time.Minute
	maxRDNS = 4096
)

func (c *rdnsCache) get(ip netip.Addr, now time.Time) (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[ip]
	if !ok || !now.Before(e.until) {
		return "", false
	}
	return e.name, true
}

func (c *rdnsCache) put(ip netip.Addr, name string, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil || len(c.m) >= maxRDNS {
		c.m = make(map[netip.Addr]rdnsEntry)
	}
	c.m[ip] = rdnsEntry{name: name, until: now.Add(rdnsTTL)}
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}
