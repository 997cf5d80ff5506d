package milter

import (
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Policy is what happens to a transaction when a milter cannot be asked
// (Postfix milter_default_action).
type Policy int

const (
	// Tempfail answers 451 4.7.1: the client comes back later.
	Tempfail Policy = iota
	// Accept goes on without that milter.
	Accept
	// Reject answers 550 5.7.1.
	Reject
)

func (p Policy) String() string {
	switch p {
	case Tempfail:
		return "tempfail"
	case Accept:
		return "accept"
	case Reject:
		return "reject"
	}
	return fmt.Sprintf("Policy(%d)", int(p))
}

// ParsePolicy reads "tempfail", "accept" or "reject" ("" is tempfail).
func ParsePolicy(s string) (Policy, error) {
	switch strings.ToLower(s) {
	case "", "tempfail":
		return Tempfail, nil
	case "accept":
		return Accept, nil
	case "reject":
		return Reject, nil
	}
	return 0, fmt.Errorf("milter: default action %q is not tempfail, accept or reject", s)
}

// Defaults of Config, Postfix's.
const (
	DefaultConnectTimeout = 30 * time.Second
	DefaultCommandTimeout = 30 * time.Second
	DefaultContentTimeout = 300 * time.Second
)

// Config is one milter.
type Config struct {
	// Address is "inet:host:port", "inet6:host:port" or "unix:/path", as in
	// Postfix's smtpd_milters ("host:port" alone is inet).
	Address string
	// ConnectTimeout bounds the connection and the option negotiation.
	ConnectTimeout time.Duration
	// CommandTimeout bounds each answer before the end of the message.
	CommandTimeout time.Duration
	// ContentTimeout bounds sending the message and the end-of-message
	// answer, within what is left of the chain's MessageBudget.
	ContentTimeout time.Duration
	// DefaultAction applies when the milter fails.
	DefaultAction Policy
}

func (c *Config) setDefaults() {
	if c.ConnectTimeout <= 0 {
		c.ConnectTimeout = DefaultConnectTimeout
	}
	if c.CommandTimeout <= 0 {
		c.CommandTimeout = DefaultCommandTimeout
	}
	if c.ContentTimeout <= 0 {
		c.ContentTimeout = DefaultContentTimeout
	}
}

// ParseAddress splits a milter address into a network and address for
// net.Dial.
func ParseAddress(s string) (network, address string, err error) {
	kind, rest, ok := strings.Cut(s, ":")
	if !ok {
		return "", "", fmt.Errorf("milter: address %q: want inet:host:port or unix:/path", s)
	}
	switch kind {
	case "unix", "local":
		if !filepath.IsAbs(rest) {
			return "", "", fmt.Errorf("milter: address %q: the socket path must be absolute", s)
		}
		return "unix", rest, nil
	case "inet", "inet6":
	default:
		// host:port without a prefix
		rest = s
		kind = "inet"
	}
	host, port, err := net.SplitHostPort(rest)
	if err != nil {
		return "", "", fmt.Errorf("milter: address %q: want inet:host:port or unix:/path", s)
	}
	if host == "" {
		return "", "", fmt.Errorf("milter: address %q: no host", s)
	}
	if n, err := strconv.Atoi(port); err != nil || n <= 0 || n > 65535 {
		return "", "", fmt.Errorf("milter: address %q: bad port", s)
	}
	network = "tcp"
	if kind == "inet6" {
		network = "tcp6"
	}
	return network, net.JoinHostPort(host, port), nil
}

// validate checks c after setDefaults.
func (c *Config) validate() error {
	var errs []error
	if _, _, err := ParseAddress(c.Address); err != nil {
		errs = append(errs, err)
	}
	if c.DefaultAction < Tempfail || c.DefaultAction > Reject {
		errs = append(errs, fmt.Errorf("milter %s: unknown default action %d", c.Address, int(c.DefaultAction)))
	}
	return errors.Join(errs...)
}
