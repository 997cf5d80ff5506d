// Package smtp is courriel's SMTP front: a go-smtp backend with one session
// per connection that applies the policy of one listener — inbound mail on
// port 25, submission on 587 (STARTTLS) and 465 (implicit TLS) — decides
// every recipient at RCPT time from the directory, and answers 250 at the end
// of DATA only after every local copy is durable and every remote copy is
// queued.
//
// It declares what it needs (Directory, Deliverer, Queue) and knows nothing
// of LDAP, maildirs or the spool. One Server serves one Kind of listener,
// because go-smtp holds one policy per gosmtp.Server.
//
// Where go-smtp v0.25.1 decides for us (see server.go and data.go for the
// details): successful MAIL and RCPT replies are go-smtp's fixed
// "250 2.0.0" lines; CHUNKING (BDAT) is always advertised, so BDAT is
// supported and goes through the same checks as DATA; go-smtp's DATA reader
// refuses a message of exactly MaxMessageBytes octets (it asks for one more
// read after the limit), so the largest message accepted is
// MaxMessageBytes-1 octets while SIZE advertises MaxMessageBytes.
package smtp
