package smtp

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"time"

	"courriel/cluster"
	"courriel/delivery"
	"courriel/delivery/queue"
	"courriel/directory"
	"courriel/loginguard"
	"courriel/milter"
)

// Kind is the policy of one listener.
type Kind int

const (
	// Inbound is port 25: mail from other MTAs for our domains; relay only
	// for authenticated clients (after STARTTLS) and MyNetworks.
	Inbound Kind = iota
	// Submission is port 587: STARTTLS then AUTH before MAIL (RFC 6409).
	Submission
	// Submissions is port 465: implicit TLS (RFC 8314), then AUTH.
	Submissions
	// Cluster is a cluster node's internal mail hop (listen.cluster, see
	// cluster.go): other nodes hand over the copies for users homed here,
	// after AUTH PLAIN as cluster.ClusterLogin with the shared secret. No
	// milters, no SPF/DKIM/DMARC (the front node ran them), no relay, no
	// alias expansion: RCPT names a final maildrop homed here.
	Cluster
	// Local is the local submission socket (listen.local, a Unix domain
	// socket; see local.go): what `courriel sendmail` hands over, as
	// Postfix's postdrop and pickup. The client is the socket's peer
	// (SO_PEERCRED: its uid and user name go into Received and the log),
	// trusted as pickup trusts it: it may relay anywhere and choose any
	// sender, without AUTH; no milters (Postfix's non_smtpd_milters is
	// empty by default), no SPF/DKIM/DMARC, no DKIM signature, no SRS.
	Local
)

func (k Kind) String() string {
	switch k {
	case Inbound:
		return "smtp"
	case Submission:
		return "submission"
	case Submissions:
		return "submissions"
	case Cluster:
		return "cluster"
	case Local:
		return "local"
	}
	return fmt.Sprintf("Kind(%d)", int(k))
}

// Directory is what the SMTP policy asks the directory (courriel/directory).
type Directory interface {
	// ClassifyDomain says whether mail for domain is ours. ErrUnavailable.
	ClassifyDomain(ctx context.Context, domain string) (directory.DomainClass, error)
	// ResolveClassified expands an address of ours to its final
	// destinations, class being what ClassifyDomain just said of its
	// domain (not asked again). ErrNotFound, ErrUnavailable.
	ResolveClassified(ctx context.Context, addr string, class directory.DomainClass) (directory.Resolution, error)
	// Authenticate checks a login and password. ErrInvalidCredentials,
	// ErrUnavailable.
	Authenticate(ctx context.Context, login, password string) (directory.User, error)
	// SenderLogins lists the logins (uid values) allowed to send as addr.
	// ErrNotFound means nobody.
	SenderLogins(ctx context.Context, addr string) ([]string, error)
}

// Mailboxes finds a final maildrop (directory.Directory.Mailbox): no alias
// expansion. ErrNotFound, ErrUnavailable.
type Mailboxes interface {
	Mailbox(ctx context.Context, addr string) (*directory.Mailbox, error)
}

// Deliverer stores local copies durably (*delivery.Store). It returns one
// error per recipient, nil for a copy that is durable.
type Deliverer interface {
	Deliver(ctx context.Context, m *delivery.Message, rcpts []delivery.Recipient) []error
}

// Queue is the durable queue (*queue.Queue). Accept returns nil only once
// the message is durably queued for every recipient, and local copies were
// tried once (localErrs: their outcomes); on an error nothing was stored.
type Queue interface {
	Accept(ctx context.Context, msgID, from string, remote []string, local []delivery.Recipient, data delivery.Content, opts ...queue.Option) (id string, localErrs []error, err error)
}

// BareNewline is what DATA does with a line ending in a bare LF, named
// after Postfix's smtpd_forbid_bare_newline.
type BareNewline int

const (
	// BareNewlineNormalize stores a bare LF as CRLF (Postfix 3.9's
	// default, smtpd_forbid_bare_newline = normalize). DATA still ends only
	// at <CRLF>.<CRLF>, so nothing after an <LF>.<LF> becomes a command,
	// and what is stored and relayed has only CRLF line endings: no lax
	// next hop can find an end of data inside it (SMTP smuggling).
	BareNewlineNormalize BareNewline = iota
	// BareNewlineReject refuses the message (554 5.6.0), as
	// smtpd_forbid_bare_newline = reject.
	BareNewlineReject
)

// ParseBareNewline reads the configuration's name of a BareNewline.
func ParseBareNewline(s string) (BareNewline, error) {
	switch s {
	case "normalize", "":
		return BareNewlineNormalize, nil
	case "reject":
		return BareNewlineReject, nil
	}
	return 0, fmt.Errorf("smtp: bare newline %q: want normalize or reject", s)
}

// Defaults of Options.
const (
	DefaultMaxMessageBytes = 10240000 // Postfix message_size_limit
	DefaultMaxRecipients   = 1000     // Postfix smtpd_recipient_limit
	DefaultTimeout         = 5 * time.Minute
	// DefaultMaxLineLength bounds a command line, CRLF included: RFC 5321
	// §4.5.3.1.4 says 512 octets, and extensions add parameters, so it is
	// as generous as Postfix's line_length_limit (2048) and then some.
	// DATA and BDAT text has no line limit (only the message size).
	DefaultMaxLineLength = 4096
	// DefaultMaxConnsPerIP is Postfix's smtpd_client_connection_count_limit.
	DefaultMaxConnsPerIP = 50
	// DefaultMaxConns bounds one listener's connections: with at most
	// SpoolThreshold of message in memory each, 1000 sessions in DATA hold
	// about 160 MiB.
	DefaultMaxConns = 1000
	// DefaultSpoolThreshold: a message larger than this is read into an
	// unlinked file in SpoolDir instead of memory.
	DefaultSpoolThreshold  = 128 << 10
	DefaultMaxErrors       = 20    // Postfix smtpd_hard_error_limit
	DefaultMaxCommands     = 10000 // commands the session sees (not NOOP/VRFY) between two accepted messages
	DefaultDeliveryTimeout = 2 * time.Minute
)

// Options configure one Server. Zero values take the defaults above.
type Options struct {
	Kind     Kind
	Hostname string // our name in the greeting and in Received; required

	Directory Directory // required
	Deliverer Deliverer // required
	// Queue may be nil: then recipients that need the outbound queue get
	// 451 4.3.0 at RCPT time; nothing is ever silently dropped.
	Queue Queue

	// Signer, if set, DKIM-signs what authenticated clients send;
	// AuthChecker, if set, checks what Inbound accepts from clients
	// neither authenticated nor in MyNetworks (see mailAuth).
	Signer      Signer
	AuthChecker AuthChecker
	// SRS, if set, rewrites the sender of what Inbound forwards outside
	// and takes the bounces to its addresses back (see rcptSRS).
	SRS SRS

	// TLSConfig enables STARTTLS (Inbound, Submission) or is the implicit
	// TLS of Submissions. Required for Submission and Submissions. Without
	// it Inbound offers neither STARTTLS nor AUTH.
	TLSConfig *tls.Config

	// MyNetworks may relay through Inbound without AUTH. Empty by default
	// (not even loopback, unlike Postfix: SPEC §1).
	MyNetworks []netip.Prefix
	// AllowUnauthOwnedSender lets a client of Inbound that did not log in
	// (MyNetworks included) use a sender address of our domains that
	// SenderLogins gives an owner: the seed's reject_sender_login_mismatch
	// refuses it (553 5.7.1 at RCPT, checkUnauthSender); true keeps only
	// the authenticated half.
	AllowUnauthOwnedSender bool

	MaxMessageBytes int64 // advertised in SIZE; see the package doc
	MaxRecipients   int   // per transaction: 452 4.5.3 beyond
	// ReadTimeout is the deadline for one command line, set when the
	// server starts waiting for it and not extended by each byte: it bounds
	// idle time and slow-loris trickling alike (RFC 5321 §4.5.3.2.7: 5 min).
	// During DATA the deadline moves by ReadTimeout for every 64 KiB
	// received, so a message must arrive at more than 64 KiB per ReadTimeout.
	ReadTimeout  time.Duration
	WriteTimeout time.Duration
	// MaxLineLength bounds a command line (and an AUTH response), CRLF
	// included; a longer one gets 500 5.5.2 and the connection closes.
	// Message text has no line limit.
	MaxLineLength int
	// MaxConnsPerIP: further connections from one address (one /64 for
	// IPv6) get 421 4.7.0 and are closed.
	MaxConnsPerIP int
	// MaxConns: further connections to this listener get 421 4.7.0 and are
	// closed.
	MaxConns int
	// SpoolDir holds the messages being received that are larger than
	// SpoolThreshold, each in a file without a name (O_TMPFILE, or removed
	// right after it is created), so nothing is left behind by a crash.
	// Such a file is only a buffer: the message is acknowledged once it is
	// stored or queued, never because it is in SpoolDir. Default
	// os.TempDir(); courriel serve uses <queue dir>/incoming.
	SpoolDir string
	// SpoolThreshold is the largest message held in memory while it is
	// received.
	SpoolThreshold int64
	// BareNewline: what a bare LF in a message gets.
	BareNewline BareNewline
	// AllowUnauthPipelining turns off the check Postfix 3.9 makes by
	// default (smtpd_forbid_unauth_pipelining = yes; this is "no"): a
	// client that sends before the greeting, or more after a command that
	// must end a pipelined group (RFC 2920 §3.1: HELO, EHLO, DATA, NOOP,
	// VRFY; after HELO or before any greeting, every command), gets
	// 554 5.5.0 and is disconnected. Off, it is only logged.
	AllowUnauthPipelining bool
	// MaxErrors: after this many rejected commands since its last
	// accepted message, a session gets its last refusal, then 421 4.7.0,
	// and is closed (Postfix's smtpd_hard_error_limit).
	MaxErrors int
	// MaxCommands: after this many commands without a message accepted, a
	// session gets 421 4.7.0.
	MaxCommands int
	// DeliveryTimeout bounds the local delivery and queueing of a message.
	DeliveryTimeout time.Duration

	// Milters filter every transaction (courriel/milter); nil for none.
	Milters *milter.Chain

	// ClusterNodes is the node map (nil: a single node). A recipient whose
	// mailbox is at home on another node becomes a node copy, queued and
	// handed over by the queue; the Cluster listener needs it.
	ClusterNodes *cluster.Cluster
	// Holds are the users being moved away (nil: none): their copies are
	// queued, never stored, and the Cluster listener refuses them (450).
	Holds *cluster.Holds
	// Mailboxes finds a final maildrop without alias expansion
	// (*directory.Directory): required by the Cluster listener.
	Mailboxes Mailboxes
	// ImportHome, on the Cluster listener only, takes a user's mailbox
	// sent by XIMPORT (courriel move-user): the stream is exactly the
	// octets announced. nil: XIMPORT gets 502. An error that is (or wraps)
	// a *gosmtp.SMTPError is replied as is; any other gets 451 4.3.0.
	ImportHome func(ctx context.Context, login string, r io.Reader) error

	// AuthThrottle tunes the throttling of failed logins: PerSession
	// always, the rest when Guard is nil.
	AuthThrottle ThrottleOptions
	// Guard counts failed logins; one per process, shared by every SMTP
	// listener and IMAP, so that guesses spread over protocols and ports
	// count together. Nil: one of this server's own, from AuthThrottle.
	Guard *loginguard.Guard

	// Metrics receives connection, transaction, delivery and AUTH
	// events; nil for none.
	Metrics Metrics
	// Listener labels this server's metrics and logs ("smtp",
	// "submission", "submissions" from Kind by default). It comes from the
	// configuration, never from the network.
	Listener string

	Logger *slog.Logger
	// Now is the clock (tests); time.Now by default.
	Now func() time.Time
	// Sleep waits d or until ctx ends (tests); a timer by default.
	Sleep func(ctx context.Context, d time.Duration)
	// LookupAddr is the reverse DNS for Received; net.DefaultResolver's by
	// default, with a short timeout.
	LookupAddr func(ctx context.Context, ip string) ([]string, error)
}

func (o *Options) setDefaults() {
	if o.MaxMessageBytes <= 0 {
		o.MaxMessageBytes = DefaultMaxMessageBytes
	}
	if o.MaxRecipients <= 0 {
		o.MaxRecipients = DefaultMaxRecipients
	}
	if o.ReadTimeout <= 0 {
		o.ReadTimeout = DefaultTimeout
	}
	if o.WriteTimeout <= 0 {
		o.WriteTimeout = DefaultTimeout
	}
	if o.MaxLineLength <= 0 {
		o.MaxLineLength = DefaultMaxLineLength
	}
	if o.MaxConnsPerIP <= 0 {
		o.MaxConnsPerIP = DefaultMaxConnsPerIP
	}
	if o.MaxConns <= 0 {
		o.MaxConns = DefaultMaxConns
	}
	if o.SpoolDir == "" {
		o.SpoolDir = os.TempDir()
	}
	if o.SpoolThreshold <= 0 {
		o.SpoolThreshold = DefaultSpoolThreshold
	}
	if o.MaxErrors <= 0 {
		o.MaxErrors = DefaultMaxErrors
	}
	if o.MaxCommands <= 0 {
		o.MaxCommands = DefaultMaxCommands
	}
	if o.DeliveryTimeout <= 0 {
		o.DeliveryTimeout = DefaultDeliveryTimeout
	}
	o.AuthThrottle.setDefaults()
	if o.Metrics == nil {
		o.Metrics = noMetrics{}
	}
	if o.Listener == "" {
		o.Listener = o.Kind.String()
	}
	if o.Kind == Cluster {
		// The front node filtered and checked the message; nothing
		// relays from here.
		o.Milters, o.AuthChecker, o.Signer, o.SRS, o.MyNetworks = nil, nil, nil, nil, nil
	}
	if o.Kind == Local {
		// A local process, trusted as Postfix's pickup trusts postdrop's
		// files: no TLS or AUTH on a socket nobody outside reaches, no
		// milters (non_smtpd_milters = none), no checks of the sender's
		// domain, and no DKIM signature, since any local user may set any
		// sender (sendmail -f) and a signature would vouch for it.
		o.Milters, o.AuthChecker, o.Signer, o.SRS, o.MyNetworks, o.TLSConfig = nil, nil, nil, nil, nil, nil
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Sleep == nil {
		o.Sleep = sleepCtx
	}
	if o.LookupAddr == nil {
		o.LookupAddr = net.DefaultResolver.LookupAddr
	}
}

func (o *Options) validate() error {
	var errs []error
	switch o.Kind {
	case Inbound, Local:
	case Cluster:
		if o.ClusterNodes == nil {
			errs = append(errs, errors.New("the cluster listener needs the node map ([cluster])"))
		}
		if o.Mailboxes == nil {
			errs = append(errs, errors.New("the cluster listener needs Mailboxes"))
		}
	case Submission, Submissions:
		if o.TLSConfig == nil {
			errs = append(errs, fmt.Errorf("%v needs a TLS configuration", o.Kind))
		}
	default:
		errs = append(errs, fmt.Errorf("unknown kind %d", int(o.Kind)))
	}
	if o.Hostname == "" || !validDomain(o.Hostname) {
		errs = append(errs, fmt.Errorf("hostname %q is not a host name", o.Hostname))
	}
	if o.Directory == nil {
		errs = append(errs, errors.New("no directory"))
	}
	if o.Deliverer == nil {
		errs = append(errs, errors.New("no deliverer"))
	}
	if o.MaxLineLength < 512 {
		// RFC 5321 §4.5.3.1.4: a command line may be 512 octets.
		errs = append(errs, fmt.Errorf("max line length %d is below 512 (RFC 5321 §4.5.3.1.4)", o.MaxLineLength))
	}
	if o.BareNewline != BareNewlineNormalize && o.BareNewline != BareNewlineReject {
		errs = append(errs, fmt.Errorf("unknown bare newline policy %d", int(o.BareNewline)))
	}
	if fi, err := os.Stat(o.SpoolDir); err != nil || !fi.IsDir() {
		errs = append(errs, fmt.Errorf("spool directory %q is not a directory", o.SpoolDir))
	}
	for _, p := range o.MyNetworks {
		if !p.IsValid() {
			errs = append(errs, fmt.Errorf("invalid network %v", p))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("smtp %v: %w", o.Kind, err)
	}
	return nil
}

func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}
