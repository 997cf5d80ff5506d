package milter

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"sync/atomic"
	"time"

	gomilter "github.com/d--j/go-milter"
)

// Chain is the milters of one listener, asked in order. Safe for
// concurrent use; a nil or empty Chain filters nothing.
type Chain struct {
	filters []*filter // immutable
	log     *slog.Logger
	// budget bounds the whole chain's time for one message
	// (MessageBudget); now is the clock it is measured by (tests).
	budget time.Duration
	now    func() time.Time
}

// MessageBudget is the time all the milters of a chain have together for
// one message (from DATA to the last end-of-message answer), each getting
// at most its ContentTimeout of what is left. The client waits 10 minutes
// for the reply to the final dot (RFC 5321 §4.5.3.2.6) and, after the
// milters, the message still has its authentication and storage (smtp's
// DeliveryTimeout, 2 minutes): past this budget the reply would come too
// late, the client would retry while our copy is stored, a duplicate. So
// when it runs out the message gets 451 whatever the milters' policies,
// with nothing stored.
const MessageBudget = 5 * time.Minute

// filter is one configured milter and its last known state.
type filter struct {
	cfg     Config // immutable, defaults set
	network string // for net.Dial; immutable
	address string // immutable
	log     *slog.Logger
	// down is the state last logged: a change is logged once, a milter
	// that stays down is not logged again for every message.
	down atomic.Bool
}

// NewChain checks the configurations and builds a chain. log gets one line
// per state change of each milter and one per transaction it touches.
func NewChain(cfgs []Config, log *slog.Logger) (*Chain, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c := &Chain{log: log, budget: MessageBudget, now: time.Now}
	var errs []error
	for _, cfg := range cfgs {
		cfg.setDefaults()
		if err := cfg.validate(); err != nil {
			errs = append(errs, err)
			continue
		}
		network, address, _ := ParseAddress(cfg.Address)
		c.filters = append(c.filters, &filter{
			cfg: cfg, network: network, address: address,
			log: log.With("milter", cfg.Address),
		})
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return c, nil
}

// Len is the number of milters; 0 for a nil Chain.
func (c *Chain) Len() int {
	if c == nil {
		return 0
	}
	return len(c.filters)
}

// failed records that the milter could not be asked, logging the change
// from up to down once.
func (f *filter) failed(stage string, err error) {
	if f.down.CompareAndSwap(false, true) {
		f.log.Warn("milter unavailable: default action applies until it answers again",
			"stage", stage, "err", err, "default_action", f.cfg.DefaultAction.String())
		return
	}
	f.log.Debug("milter still unavailable", "stage", stage, "err", err)
}

// answered records a successful negotiation, logging a recovery once.
func (f *filter) answered() {
	if f.down.CompareAndSwap(true, false) {
		f.log.Info("milter available again")
	}
}

// recordingDialer dials one connection, keeps it (the library hides it) and
// gives it the connect timeout, which covers the option negotiation too.
// The library reads it through a packetConn.
type recordingDialer struct {
	timeout time.Duration
	conn    *packetConn
}

func (d *recordingDialer) Dial(network, address string) (net.Conn, error) {
	nd := net.Dialer{Timeout: d.timeout}
	c, err := nd.Dial(network, address)
	if err != nil {
		return nil, err
	}
	_ = c.SetDeadline(time.Now().Add(d.timeout))
	d.conn = &packetConn{Conn: c}
	return d.conn, nil
}

// Macro lists sent at each stage when the milter asks for none of its own:
// Postfix's milter_*_macros defaults, plus the client's address and name
// at connect ({client_addr} and friends, which rspamd and ClamAV read).
type macroStage struct {
	stage  gomilter.MacroStage
	macros []gomilter.MacroName
}

func macroStages() []macroStage {
	return []macroStage{
		{gomilter.StageConnect, []gomilter.MacroName{gomilter.MacroMTAFQDN, gomilter.MacroDaemonName, gomilter.MacroDaemonAddr,
			gomilter.MacroDaemonPort, gomilter.MacroMTAVersion, gomilter.MacroClientAddr, gomilter.MacroClientPort,
			gomilter.MacroClientName, gomilter.MacroClientPTR, gomilter.MacroIfAddr}},
		{gomilter.StageHelo, []gomilter.MacroName{gomilter.MacroTlsVersion, gomilter.MacroCipher, gomilter.MacroCipherBits,
			gomilter.MacroCertSubject, gomilter.MacroCertIssuer}},
		{gomilter.StageMail, []gomilter.MacroName{gomilter.MacroQueueId, gomilter.MacroAuthType, gomilter.MacroAuthAuthen,
			gomilter.MacroAuthAuthor, gomilter.MacroMailAddr, gomilter.MacroMailHost, gomilter.MacroMailMailer}},
		{gomilter.StageRcpt, []gomilter.MacroName{gomilter.MacroQueueId, gomilter.MacroRcptAddr, gomilter.MacroRcptHost,
			gomilter.MacroRcptMailer}},
		{gomilter.StageData, []gomilter.MacroName{gomilter.MacroQueueId}},
		{gomilter.StageEOH, []gomilter.MacroName{gomilter.MacroQueueId}},
		{gomilter.StageEOM, []gomilter.MacroName{gomilter.MacroQueueId}},
	}
}

// open connects to the milter and negotiates. The returned connection is
// the one under the session, for deadlines.
func (f *filter) open(macros gomilter.Macros) (*gomilter.ClientSession, *packetConn, error) {
	d := &recordingDialer{timeout: f.cfg.ConnectTimeout}
	opts := []gomilter.Option{
		gomilter.WithDialer(d),
		// Our own deadlines (see the package doc): zero turns the
		// library's off.
		gomilter.WithReadTimeout(0),
		gomilter.WithWriteTimeout(0),
		gomilter.WithOfferedMaxData(gomilter.DataSize64K),
		gomilter.WithActions(gomilter.AllClientSupportedActionMasks),
		gomilter.WithoutDefaultMacros(),
	}
	for _, s := range macroStages() {
		opts = append(opts, gomilter.WithMacroRequest(s.stage, s.macros))
	}
	cs, err := gomilter.NewClient(f.network, f.address, opts...).Session(macros)
	if err != nil {
		if d.conn != nil {
			d.conn.Close()
		}
		return nil, nil, err
	}
	return cs, d.conn, nil
}

// ConnInfo is what the milters are told about an SMTP session.
type ConnInfo struct {
	Client     netip.AddrPort // the real client address
	ClientName string         // its verified or reverse name; "" for unknown
	Local      netip.AddrPort // our address the client connected to
	Hostname   string         // our name (macro j)
	Listener   string         // {daemon_name}: smtp, submission, submissions
	Helo       string         // as the client sent it
	// TLS, empty without: {tls_version} ("TLSv1.3"), {cipher}, {cipher_bits}.
	TLSVersion string
	Cipher     string
	CipherBits int
	// AuthLogin and AuthMech: {auth_authen} and {auth_type} for an
	// authenticated client.
	AuthLogin string
	AuthMech  string
}

// macroBag fills the connection-wide macros.
func (ci *ConnInfo) macroBag() *gomilter.MacroBag {
	m := gomilter.NewMacroBag()
	m.Set(gomilter.MacroMTAFQDN, ci.Hostname)
	m.Set(gomilter.MacroMTAVersion, "courriel")
	if ci.Listener != "" {
		m.Set(gomilter.MacroDaemonName, ci.Listener)
	}
	if ci.Local.IsValid() {
		m.Set(gomilter.MacroDaemonAddr, ci.Local.Addr().String())
		m.Set(gomilter.MacroDaemonPort, strconv.Itoa(int(ci.Local.Port())))
		m.Set(gomilter.MacroIfAddr, ci.Local.Addr().String())
	}
	if ci.Client.IsValid() {
		m.Set(gomilter.MacroClientAddr, ci.Client.Addr().String())
		m.Set(gomilter.MacroClientPort, strconv.Itoa(int(ci.Client.Port())))
	}
	name := ci.ClientName
	if name == "" {
		name = "unknown"
	}
	m.Set(gomilter.MacroClientName, name)
	m.Set(gomilter.MacroClientPTR, name)
	if ci.TLSVersion != "" {
		m.Set(gomilter.MacroTlsVersion, ci.TLSVersion)
		m.Set(gomilter.MacroCipher, ci.Cipher)
		m.Set(gomilter.MacroCipherBits, strconv.Itoa(ci.CipherBits))
	}
	if ci.AuthLogin != "" {
		m.Set(gomilter.MacroAuthAuthen, ci.AuthLogin)
		m.Set(gomilter.MacroAuthType, ci.AuthMech)
		if ci.CipherBits > 0 {
			m.Set(gomilter.MacroAuthSsf, strconv.Itoa(ci.CipherBits))
		}
	}
	return m
}

// connFamily is the SMFIC_CONNECT family and address of the client.
func (ci *ConnInfo) connFamily() (gomilter.ProtoFamily, uint16, string) {
	if !ci.Client.IsValid() {
		return gomilter.FamilyUnknown, 0, ""
	}
	a := ci.Client.Addr().Unmap()
	if a.Is4() {
		return gomilter.FamilyInet, ci.Client.Port(), a.String()
	}
	return gomilter.FamilyInet6, ci.Client.Port(), a.String()
}

func (p Policy) reply() *Reply {
	switch p {
	case Accept:
		return nil
	case Reject:
		return &Reply{Code: 550, Status: "5.7.1", Text: "Command rejected"}
	}
	return &Reply{Code: 451, Status: "4.7.1", Text: "Service unavailable - try again later"}
}

func (r *Reply) String() string {
	if r == nil {
		return "continue"
	}
	return fmt.Sprintf("%d %s %s", r.Code, r.Status, r.Text)
}

// Probe connects to the milter of c and negotiates, as a transaction
// would, then hangs up: `courriel check-config` says whether it answers.
func Probe(c Config) error {
	c.setDefaults()
	if err := c.validate(); err != nil {
		return err
	}
	network, address, _ := ParseAddress(c.Address)
	f := &filter{cfg: c, network: network, address: address}
	cs, nc, err := f.open(gomilter.NewMacroBag())
	if err != nil {
		return fmt.Errorf("milter %s: %w", c.Address, err)
	}
	_ = nc.SetDeadline(time.Now().Add(c.CommandTimeout))
	_ = cs.Close()
	return nil
}
