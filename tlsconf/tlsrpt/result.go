package tlsrpt

// PolicyType is the kind of policy a session was held to (RFC 8460 §4.4).
type PolicyType string

const (
	PolicySTS      PolicyType = "sts"
	PolicyTLSA     PolicyType = "tlsa"
	PolicyNotFound PolicyType = "no-policy-found"
)

// ResultType is a failure type of RFC 8460 §4.3.
type ResultType string

const (
	StartTLSNotSupported    ResultType = "starttls-not-supported"
	CertificateHostMismatch ResultType = "certificate-host-mismatch"
	CertificateExpired      ResultType = "certificate-expired"
	CertificateNotTrusted   ResultType = "certificate-not-trusted"
	ValidationFailure       ResultType = "validation-failure"
	TLSAInvalid             ResultType = "tlsa-invalid"
	DNSSECInvalid           ResultType = "dnssec-invalid"
	DANERequired            ResultType = "dane-required"
	STSPolicyFetchError     ResultType = "sts-policy-fetch-error"
	STSPolicyInvalid        ResultType = "sts-policy-invalid"
	STSWebPKIInvalid        ResultType = "sts-webpki-invalid"
)

// Result is one session (or one attempt that ended before a session) to
// report: Failure empty for a success.
type Result struct {
	PolicyDomain  string     // the recipient domain
	PolicyType    PolicyType // what the session was held to
	PolicyStrings []string   // the policy as published (sts: its lines; tlsa: the records)

	Failure       ResultType // "" for a successful session
	SendingIP     string
	ReceivingMX   string // host name
	ReceivingIP   string
	FailureReason string // free text, bounded by the recorder
}
