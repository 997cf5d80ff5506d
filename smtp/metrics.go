package smtp

import (
	"errors"

	gosmtp "github.com/emersion/go-smtp"
)

// Metrics receives events; *monitor.Metrics satisfies it (the consumer
// declares the interface, so smtp does not import monitor). Nil in Options:
// no metrics. Every method must be safe for concurrent use.
type Metrics interface {
	// ConnOpened and ConnClosed pair up for every accepted connection,
	// including those refused at once by the per-address limit.
	ConnOpened(listener string)
	ConnClosed(listener string)
	// Transaction is called once per DATA or final BDAT outcome, with
	// "accepted" (250), "rejected" (5xx) or "deferred" (4xx).
	Transaction(listener, result string)
	// Delivery is called once per local copy the server stores itself
	// (Options.Deliverer): "sent" (durable), "deferred" (a temporary
	// failure: the client retries) or "bounced" (a permanent failure: the
	// 5xx makes the client's MTA send the DSN). The copies given to the
	// queue, local ones included, are counted by the queue
	// (queue.Options.Attempted).
	Delivery(status string)
	// AuthFailure is called once per failed AUTH: wrong credentials, a
	// throttled attempt, malformed SASL data.
	AuthFailure(listener string)
}

// Label values, as courriel/monitor spells them.
const (
	resultAccepted = "accepted"
	resultRejected = "rejected"
	resultDeferred = "deferred"

	statusSent     = "sent"
	statusDeferred = "deferred"
	statusBounced  = "bounced"
)

// noMetrics is the Metrics of a server built without one.
type noMetrics struct{}

func (noMetrics) ConnOpened(string)          {}
func (noMetrics) ConnClosed(string)          {}
func (noMetrics) Transaction(string, string) {}
func (noMetrics) Delivery(string)            {}
func (noMetrics) AuthFailure(string)         {}

// transactionResult classifies what Data returned, which conn sends as
// the reply; ok is false when there is no outcome to count (an aborted
// BDAT transaction, whose result nobody reads).
func transactionResult(err error) (result string, ok bool) {
	var se *gosmtp.SMTPError
	switch {
	case err == nil:
		return resultAccepted, true
	case errors.Is(err, errDataReset):
		return "", false
	case errors.As(err, &se) && se.Code >= 400 && se.Code < 500:
		return resultDeferred, true
	case errors.As(err, &se) && se.Code >= 500:
		return resultRejected, true
	}
	// Not an SMTPError: Data never returns one (fail maps everything), and
	// conn would answer it with a temporary failure.
	return resultDeferred, true
}

var _ Metrics = noMetrics{}
