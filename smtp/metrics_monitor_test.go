package smtp_test

import (
	"courriel/monitor"
	"courriel/smtp"
)

// The interface smtp declares must stay satisfied by the real metrics; the
// import is only in this external test, so smtp itself does not depend on
// monitor.
var _ smtp.Metrics = (*monitor.Metrics)(nil)
