package main

import (
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"courriel/delivery"
	"courriel/imap/mailstore"
	"courriel/milter"
)

// MilterConfig is one [[milter]] table: a filter (rspamd, ClamAV, OpenDKIM…)
// spoken to with the milter protocol, as Postfix's smtpd_milters.
type MilterConfig struct {
	// Address: "inet:127.0.0.1:11332" or "unix:/run/rspamd/milter.sock".
	Address string `toml:"address"`
	// Listeners it filters: smtp (default), submission, submissions. A
	// submission listener can so have its own milters, or none.
	Listeners      []string      `toml:"listeners,omitempty"`
	ConnectTimeout time.Duration `toml:"connect_timeout,omitempty"` // default 30s
	CommandTimeout time.Duration `toml:"command_timeout,omitempty"` // default 30s
	ContentTimeout time.Duration `toml:"content_timeout,omitempty"` // end of message; default 5m
	// DefaultAction when the milter is down or times out: tempfail
	// (default), accept or reject (Postfix milter_default_action).
	DefaultAction string `toml:"default_action,omitempty"`
}

// stringList is a repeatable string flag.
type stringList []string

func (l *stringList) String() string     { return strings.Join(*l, ",") }
func (l *stringList) Set(v string) error { *l = append(*l, v); return nil }

// smtpListenerNames are the listeners milters can filter.
var smtpListenerNames = []string{"smtp", "submission", "submissions"}

func (m MilterConfig) listeners() []string {
	if len(m.Listeners) == 0 {
		return []string{"smtp"}
	}
	return m.Listeners
}

func (m MilterConfig) milterConfig() (milter.Config, error) {
	p, err := milter.ParsePolicy(m.DefaultAction)
	if err != nil {
		return milter.Config{}, err
	}
	return milter.Config{Address: m.Address, ConnectTimeout: m.ConnectTimeout,
		CommandTimeout: m.CommandTimeout, ContentTimeout: m.ContentTimeout, DefaultAction: p}, nil
}

// validateMilters checks every [[milter]].
func (c *Config) validateMilters() error {
	for i, m := range c.Milters {
		key := fmt.Sprintf("milter[%d]", i)
		if _, _, err := milter.ParseAddress(m.Address); err != nil {
			return keyErr(key+".address", "%v", strings.TrimPrefix(err.Error(), "milter: "))
		}
		for _, l := range m.listeners() {
			if !slices.Contains(smtpListenerNames, l) {
				return keyErr(key+".listeners", "%q: want smtp, submission or submissions", l)
			}
		}
		if _, err := milter.ParsePolicy(m.DefaultAction); err != nil {
			return keyErr(key+".default_action", "%q: want tempfail, accept or reject", m.DefaultAction)
		}
		for k, d := range map[string]time.Duration{"connect_timeout": m.ConnectTimeout, "command_timeout": m.CommandTimeout, "content_timeout": m.ContentTimeout} {
			if d < 0 || d > time.Hour {
				return keyErr(key+"."+k, "%v is out of range (0 for the default .. 1h)", d)
			}
		}
	}
	return nil
}

// milterChain builds the milters of one listener, in configuration order;
// nil when it has none.
func (c *Config) milterChain(listener string, log *slog.Logger) (*milter.Chain, error) {
	var cfgs []milter.Config
	for _, m := range c.Milters {
		if !slices.Contains(m.listeners(), listener) {
			continue
		}
		mc, err := m.milterConfig()
		if err != nil {
			return nil, err
		}
		cfgs = append(cfgs, mc)
	}
	if len(cfgs) == 0 {
		return nil, nil
	}
	return milter.NewChain(cfgs, log.With("component", "milter", "listener", listener))
}

// subscribeFolder subscribes a user to a folder delivery created (the Junk
// folder a milter's verdict filed a message in), in the maildir's Dovecot
// subscriptions file, so that it shows in IMAP clients listing subscribed
// folders. Best effort: the message is stored either way.
func subscribeFolder(chown bool, log *slog.Logger) func(delivery.Recipient) {
	return func(r delivery.Recipient) {
		st, err := mailstore.OpenStore(strings.TrimSuffix(r.Maildir, "/"), mailstore.Owner{UID: r.UID, GID: r.GID, Chown: chown})
		if err == nil {
			// r.Folder is the directory's name (modified UTF-7, '.' between
			// levels); SetSubscribed takes the mailbox name.
			name := r.Folder
			if levels := strings.Split(name, "."); len(levels) > 0 {
				for i, l := range levels {
					if d, derr := mailstore.DecodeMUTF7(l); derr == nil {
						levels[i] = d
					}
				}
				name = strings.Join(levels, string(mailstore.Delimiter))
			}
			err = st.SetSubscribed(name, true)
			st.Close()
		}
		if err != nil {
			log.Warn("delivery: cannot subscribe the user to a new folder", "maildir", r.Maildir, "folder", r.Folder, "err", err)
		}
	}
}
