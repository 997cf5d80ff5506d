package directory

// Mailbox is where mail for one maildrop address is stored.
type Mailbox struct {
	Address string // the maildrop, lower-cased domain, e.g. xomail@xoyize.xyz
	Maildir string // absolute, clean, ends in "/", e.g. /var/vmail/xomail/mailbox/
	UID     int
	GID     int
	// QuotaBytes and QuotaMessages are the maildir's quota from the
	// configured quota attributes; 0 is no limit.
	QuotaBytes    int64
	QuotaMessages int64
	// Home is the entry's home directory (the user query's attribute, seed:
	// homeDirectory), absolute and clean without a trailing slash, where
	// Sieve delivery finds ~/.dovecot.sieve; "" when no single entry of
	// the mailbox query's filter has one.
	Home string
	// Addresses are the entry's accepted addresses (the domains query's
	// attribute, seed: mailacceptinggeneralid): who the user is for a
	// vacation reply. Unchecked strings from the directory.
	Addresses []string
	// Node is the entry's home node (Options.HomeAttribute, lower-cased,
	// checked by cluster.CheckNodeName); "" when the attribute is not
	// configured or absent: at home on every node, as a single node.
	Node string
	// Login is the entry's uid attribute (User.Login), the user name
	// Dovecot's userdb (seed: user_filter (uid=%u)) gives the mail user,
	// which Pigeonhole writes beside each vacation record of
	// ~/.dovecot.lda-dupes; "" when the entry has no single uid.
	Login string
}

// Destination is one final target of a recipient after alias expansion.
type Destination struct {
	Address string   // final address (a maildrop)
	Mailbox *Mailbox // set for a local mailbox; nil when Remote
	Remote  bool     // the maildrop is in a foreign domain: forward via the queue
}

// Resolution is the outcome of ResolveRecipient.
type Resolution struct {
	Recipient    string        // the address as asked (normalized)
	Destinations []Destination // deduplicated, at least one
}

// DomainClass says how courriel treats a domain.
type DomainClass int

const (
	DomainForeign DomainClass = iota // not ours: relay only when allowed
	DomainMailbox                    // myhostname or a configured mailbox domain
	DomainHosted                     // a hosted alias domain found in the directory
)

// User is an authenticated or looked-up login user.
type User struct {
	Login   string // the uid attribute, e.g. xomail
	DN      string
	Home    string // homeDirectory, absolute and clean
	Maildir string // by the mailbox query's result_format, as delivery: seed's Home + "/mailbox/"
	// QuotaBytes and QuotaMessages: the quota attributes of the entry, as
	// Mailbox has them; 0 is no limit.
	QuotaBytes    int64
	QuotaMessages int64
	UID           int
	GID           int
	// Node is the entry's home node, as Mailbox.Node.
	Node string
}
