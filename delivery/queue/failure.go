package queue

import (
	"errors"
	"fmt"
	"strings"

	gosmtp "github.com/emersion/go-smtp"
)

// failure is why a delivery to a recipient did not happen: a reply from the
// remote server (code != 0) or a local or network error.
type failure struct {
	perm       bool
	code       int    // SMTP reply code; 0 when the failure is not a reply
	status     string // RFC 3463 enhanced status, class matching perm
	text       string // printable: "550 5.1.1 user unknown" or "connect to ...: refused"
	relay      string // "host[ip]:port", "" when no connection was made
	remoteMTA  string // host name that replied
	retryPlain bool   // policy may: the TLS attempt failed, try again without
	dead       bool   // no connection or a 421 greeting: the destination is down
	stale      bool   // a cached session failed before its first reply: try a new one
	postpone   bool   // not tried: the destination can take no session now (outPostponed)
	loop       bool   // the best MX host is this host (loop.go): no other host is tried
}

// maxReplyText bounds what is kept of a remote reply: RFC 5321 §4.5.3.1.5
// allows 512 octets per line, and a multi-line reply is joined into one.
const maxReplyText = 1000

func tempFailure(status, text string) *failure {
	return &failure{status: status, text: printable(text, maxReplyText)}
}

func permFailure(status, text string) *failure {
	return &failure{perm: true, status: status, text: printable(text, maxReplyText)}
}

// asTemporary is f as a temporary failure: its status class 4.
func (f *failure) asTemporary() *failure {
	t := *f
	t.perm = false
	if strings.HasPrefix(t.status, "5.") {
		t.status = "4" + t.status[1:]
	}
	return &t
}

// replyFailure classifies an error from the SMTP client. A reply keeps its
// code; 5xx is permanent, anything else temporary. An error that is not a
// reply (I/O, timeout) is temporary with the status given.
func replyFailure(err error, what, status string) *failure {
	var se *gosmtp.SMTPError
	if !errors.As(err, &se) {
		return tempFailure(status, what+": "+err.Error())
	}
	f := &failure{code: se.Code, perm: se.Code/100 == 5}
	f.status = enhancedStatus(se.Code, se.EnhancedCode)
	// The text is the server's reply as it was (RFC 3464 §2.3.6: the
	// Diagnostic-Code is what the remote MTA said), as Postfix quotes
	// it: the status made up for a reply without an enhanced code, or
	// with one whose class contradicts the code, is the Status field's,
	// never put into the server's mouth.
	said := se.Message
	if ec := se.EnhancedCode; ec != (gosmtp.EnhancedCode{}) && ec != gosmtp.NoEnhancedCode {
		said = fmt.Sprintf("%d.%d.%d %s", ec[0], ec[1], ec[2], said)
	}
	f.text = printable(fmt.Sprintf("%d %s", se.Code, said), maxReplyText)
	return f
}

// isReply reports whether err is a reply, after which the session is still
// usable; any other error means the connection is lost.
func isReply(err error) bool {
	var se *gosmtp.SMTPError
	return errors.As(err, &se)
}

// enhancedStatus returns the reply's RFC 3463 status, or class.0.0 when the
// server sent none or one whose class contradicts the reply code (a "550
// 4.1.1" is permanent: the reply code decides, RFC 3463 §3.1).
func enhancedStatus(code int, ec gosmtp.EnhancedCode) string {
	class := code / 100
	if class != 2 && class != 4 && class != 5 {
		class = 4
	}
	if ec[0] != class || ec[1] < 0 || ec[1] > 999 || ec[2] < 0 || ec[2] > 999 {
		return fmt.Sprintf("%d.0.0", class)
	}
	return fmt.Sprintf("%d.%d.%d", ec[0], ec[1], ec[2])
}

// diagnostic is the DSN Diagnostic-Code value (RFC 3464 §2.3.6) of a
// recipient's last reply or error.
func diagnostic(r Recipient) string {
	if r.Code != 0 {
		return "smtp; " + r.Reply
	}
	return "X-Courriel; " + r.Reply
}
