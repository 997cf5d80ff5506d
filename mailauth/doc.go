// Package mailauth is courriel's mail authentication: DKIM signing of what
// our users send (RFC 6376, RFC 8463: an Ed25519 and an RSA-2048 signature
// per message), and the checks of mail arriving from other MTAs: SPF
// (RFC 7208), DKIM verification and DMARC (RFC 7489), summed up in one
// Authentication-Results field (RFC 8601); and SRS, the rewriting of the
// sender of forwards (srs.go).
//
// It knows nothing of SMTP sessions: smtp declares the small interfaces it
// calls (smtp.Signer, smtp.AuthChecker) and cmd/courriel adapts this
// package to them. The cryptography and record parsing are go-msgauth's
// (dkim, dmarc, authres) and blitiri.com.ar/go/spf's; what they lack is
// here: key files and their DNS records, DMARC's alignment, organisational
// domain (Public Suffix List), policy choice and pct, the decision for the
// message, and a DNS cache.
//
// Decisions worth knowing:
//   - A configuration selector S is two DNS selectors, S-ed25519 and S-rsa:
//     two key records at one name give undefined results (RFC 6376
//     §3.6.2.2), and receivers that cannot verify Ed25519 still need RSA.
//   - The signing domain is the From field's (what DMARC aligns with); mail
//     whose From has no key, or more than one address, is not signed.
//   - From, Reply-To, Subject, Date, To, Cc and Message-ID are oversigned:
//     a field of those names added on the way breaks the signature.
//   - DMARC: the organisational domain is the Public Suffix List's
//     (golang.org/x/net/publicsuffix); a subdomain without its own record
//     gets the organisational record's sp= (else p=); pct= sends the
//     messages outside the sample to the next policy down (§6.6.4).
//   - DNS trouble is never a bounce: a temperror in the header, and a Defer
//     (451) only when SPF or DKIM could not be checked for a domain whose
//     policy is quarantine or reject. A policy that cannot be fetched is
//     a temperror and the message is accepted.
//   - ARC (RFC 8617, arc.go) is verified where present — structure, the
//     newest ARC-Message-Signature, every ARC-Seal — and reported as arc=
//     in Authentication-Results; it does not change the DMARC decision
//     (no sealer is trusted). We never seal. At most 50 instances, so at
//     most 51 key lookups (cached) per message.
//   - Only the first 8 DKIM signatures are verified; all the DNS work of a
//     message is bounded by 20 s.
//   - DNS answers are kept 5 minutes (1 minute for "no such name"; Go's
//     resolver does not report TTLs), at most 20,000 of them; temporary
//     failures are never kept. Lookups hold no lock, so one slow DNS answer
//     delays only the session that asked for it.
package mailauth
