package queue

import (
	"encoding/json"
	"fmt"
	"math"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"courriel/cluster"
)

// State is where one recipient of a queued message stands.
type State string

const (
	StatePending   State = "pending"   // not delivered yet; retried at NextAttempt
	StateDelivered State = "delivered" // a server answered 250 to the data
	StateFailed    State = "failed"    // permanent failure or expiry; see Notified
)

// Recipient is one envelope recipient and its delivery state.
type Recipient struct {
	Addr string `json:"addr"`
	// OrigTo is the address the client named when an alias of ours
	// expanded to Addr, a remote one (WithOrigTo): the orig_to= of its
	// delivery lines and the Original-Recipient of its DSN. Local copies
	// keep theirs in Local.
	OrigTo      string    `json:"orig_to,omitempty"`
	State       State     `json:"state"`
	Attempts    int       `json:"attempts,omitempty"`
	LastAttempt time.Time `json:"last_attempt,omitzero"`
	NextAttempt time.Time `json:"next_attempt,omitzero"`
	Reply       string    `json:"reply,omitempty"`      // last reply or error, printable ASCII
	Code        int       `json:"code,omitempty"`       // SMTP code of Reply; 0 when Reply is a local error
	Status      string    `json:"status,omitempty"`     // RFC 3463 status of Reply, e.g. "4.4.1"
	RemoteMTA   string    `json:"remote_mta,omitempty"` // host that gave Reply, if any
	// Notified is set once the sender was told of a failure (or there was
	// nobody to tell: null sender). A failed recipient that is not Notified
	// keeps its message in the queue until the DSN is out.
	Notified bool `json:"notified,omitempty"`
	// Local, when set, makes this a copy for a maildir on this host,
	// delivered through Options.Local; Addr is then the final maildrop.
	Local *LocalTarget `json:"local,omitempty"`
	// Node, set only with Local, makes the copy a node copy: the user is
	// at home on that cluster node, and the copy is handed to its cluster
	// listener over SMTP instead of stored here. Looked up again before
	// every attempt (Options.Homes), so a copy follows a user who moved;
	// envelopes written before clusters have none (local).
	Node string `json:"node,omitempty"`
	// Notify and ORcpt are the client's NOTIFY and ORCPT (RFC 3461,
	// WithDSN): "" when absent, as in envelopes written before DSN.
	Notify string `json:"notify,omitempty"`
	ORcpt  string `json:"orcpt,omitempty"`
	// Action, on a delivered recipient, is the success DSN owed to the
	// sender (NOTIFY=SUCCESS): ActionDelivered, ActionRelayed or
	// ActionExpanded; Notified once it is out. "" when none is owed (no
	// SUCCESS asked, or a next hop that offers DSN took the request).
	Action string `json:"action,omitempty"`
}

// LocalTarget is where a local recipient's copy goes, as the directory
// resolved it at the last attempt: at acceptance, then again before every
// retry when Options.Mailboxes is set (reresolve), so that a change of
// the entry reaches a queued copy. OrigTo and Folder are the message's and
// stay as accepted.
type LocalTarget struct {
	OrigTo  string `json:"orig_to,omitempty"` // the RCPT TO before alias expansion
	Maildir string `json:"maildir"`           // absolute and clean
	UID     int    `json:"uid"`
	GID     int    `json:"gid"`
	// The quota at the last attempt; 0 is no limit.
	QuotaBytes    int64 `json:"quota_bytes,omitempty"`
	QuotaMessages int64 `json:"quota_messages,omitempty"`
	// Folder is delivery.Recipient.Folder: "" for the INBOX, "Junk" for a
	// message a milter flagged as spam.
	Folder string `json:"folder,omitempty"`
}

// Message is a queued message's envelope, the content of its .env file.
type Message struct {
	Version int    `json:"v"`
	ID      string `json:"id"`
	// MsgID is the id the message had where it came from (the SMTP
	// transaction's msg_id), so that one grep follows it from its arrival
	// through every attempt; "" for messages the queue made (DSNs).
	MsgID string `json:"msg_id,omitempty"`
	From  string `json:"from"` // "" is the null sender (a DSN): never bounced
	// LocalFrom, when set, is the sender local copies show (Return-Path)
	// where From was rewritten for the remote ones (AcceptForward: SRS, or
	// the null sender); nil: From.
	LocalFrom   *string     `json:"local_from,omitempty"`
	Created     time.Time   `json:"created"`
	Size        int64       `json:"size"`
	Recipients  []Recipient `json:"rcpts"`
	DelayWarned bool        `json:"delay_warned,omitempty"`
	// SMTPUTF8: the sender asked for SMTPUTF8 and the message needs it
	// (WithSMTPUTF8): it leaves only with SMTPUTF8, or bounces (RFC 6531
	// §3.2). Non-ASCII envelope addresses need it regardless.
	SMTPUTF8 bool `json:"smtputf8,omitempty"`
	// RemoteHeader is put on top of the copies that leave, not of those
	// stored here (WithRemoteHeader): the Delivered-To of an alias that
	// forwards outside, which finds the copy if it comes back, and which
	// the alias's other recipients here must not see.
	RemoteHeader string `json:"remote_header,omitempty"`
	// NotifyAfter delays the next try to send a DSN after one failed.
	NotifyAfter time.Time `json:"notify_after,omitzero"`
	// Ret and EnvID are the client's RET (RetFull, RetHdrs) and ENVID,
	// decoded (RFC 3461 §4.3, §4.4; WithDSN); "" when absent.
	Ret   string `json:"ret,omitempty"`
	EnvID string `json:"envid,omitempty"`
	// Expanded are the recipients with NOTIFY=SUCCESS an alias of ours
	// expanded (WithDSN): never delivered, only reported, as Recipients
	// delivered with Action ActionExpanded.
	Expanded []Recipient `json:"expanded,omitempty"`
	// DSNs are the DSNs about this message being handed over: each is
	// recorded here before its hand-over (queued, or stored in a maildir
	// through Options.Bounce) and taken out with the record that the
	// sender was told (Notified, DelayWarned), so that the next try after
	// a crash between the two finds out whether it went (known) instead
	// of sending it again.
	DSNs []PendingDSN `json:"dsns,omitempty"`
	// Once: the message was made by the delivery of another and queued
	// under its caller's key (WithOnceKey, once.go): it leaves a mark
	// when it leaves the spool, so that the same key stores nothing.
	// Origin is that other message's queue id, when the key names it:
	// the mark is kept while it is here.
	Once   bool   `json:"once,omitempty"`
	Origin string `json:"origin,omitempty"`

	// queueID, set by a DSN's hand-over (withQueueID) or WithOnceKey, is
	// the id Accept gives the message instead of a fresh one; fixed says
	// that m.ID is such an id, which create stores nothing under when it
	// is known. Never written.
	queueID string
	fixed   bool
	// notBefore, set by a job some of whose recipients waited for a
	// destination that could take no session (postponed), is when the
	// runner takes the message again at the soonest. Never written.
	notBefore time.Time
}

// PendingDSN is a DSN being handed over (Message.DSNs).
type PendingDSN struct {
	ID    string `json:"id"`    // the DSN's queue id (dsnID): the same at every try
	Kind  string `json:"kind"`  // "failed", "delayed" or "success"
	Rcpts []int  `json:"rcpts"` // the recipients it is about, by index; -1: the expansions
}

const envelopeVersion = 1

// Summary is one line of `courriel queue list`.
type Summary struct {
	ID          string
	MsgID       string // Message.MsgID: the SMTP reply's "queued as"; "" for a DSN the queue made
	From        string
	Created     time.Time
	Size        int64
	NextAttempt time.Time   // earliest retry of a pending recipient; zero if none
	Recipients  []Recipient // every recipient not yet delivered
	Held        bool        // in the hold queue (Hold): not delivered until released
}

// msgID is the message's id in every component's log lines: where it came
// from, or the queue id for a message the queue itself made.
func (m *Message) msgID() string {
	if m.MsgID != "" {
		return m.MsgID
	}
	return m.ID
}

func (m *Message) clone() *Message {
	c := *m
	c.Recipients = slices.Clone(m.Recipients)
	c.Expanded = slices.Clone(m.Expanded)
	c.DSNs = slices.Clone(m.DSNs)
	return &c
}

// done reports whether the message can leave the queue: every recipient is
// delivered or failed with its sender told, every success DSN out, and no
// DSN's hand-over left unsettled.
func (m *Message) done() bool {
	if len(m.DSNs) > 0 {
		return false
	}
	for _, r := range m.Recipients {
		if r.State == StatePending || r.owesDSN() {
			return false
		}
	}
	return !m.owesExpanded()
}

// owesDSN: r failed, or was delivered with a success to report, and the
// sender was not told yet.
func (r *Recipient) owesDSN() bool {
	return !r.Notified && (r.State == StateFailed || r.State == StateDelivered && r.Action != "")
}

// owesExpanded: an expansion is still to be reported.
func (m *Message) owesExpanded() bool {
	for _, r := range m.Expanded {
		if !r.Notified {
			return true
		}
	}
	return false
}

// due is when the runner should next look at m: the earliest retry of a
// pending recipient, or NotifyAfter when a failure awaits its DSN or a
// DSN's hand-over is to be settled.
func (m *Message) due() (t time.Time, ok bool) {
	for _, r := range m.Recipients {
		next := r.NextAttempt
		switch {
		case r.owesDSN():
			next = m.NotifyAfter
		case r.State != StatePending:
			continue
		}
		if !ok || next.Before(t) {
			t, ok = next, true
		}
	}
	if (m.owesExpanded() || len(m.DSNs) > 0) && (!ok || m.NotifyAfter.Before(t)) {
		t, ok = m.NotifyAfter, true
	}
	return t, ok
}

func (m *Message) summary() Summary {
	s := Summary{ID: m.ID, MsgID: m.MsgID, From: m.From, Created: m.Created, Size: m.Size}
	for _, r := range m.Recipients {
		if r.State == StateDelivered {
			continue
		}
		s.Recipients = append(s.Recipients, r)
		if r.State == StatePending && (s.NextAttempt.IsZero() || r.NextAttempt.Before(s.NextAttempt)) {
			s.NextAttempt = r.NextAttempt
		}
	}
	return s
}

// decodeEnvelope parses and checks an .env file named for id. Everything in
// it is re-validated: the file may have been edited or damaged.
func decodeEnvelope(id string, b []byte, maxRcpts int) (*Message, error) {
	var m Message
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", errCorrupt, id, err)
	}
	switch {
	case m.Version != envelopeVersion:
		return nil, fmt.Errorf("%w: %s: version %d", errCorrupt, id, m.Version)
	case m.ID != id:
		return nil, fmt.Errorf("%w: %s: names message %q", errCorrupt, id, printable(m.ID, 64))
	case m.From != "" && !validAddress(m.From), m.LocalFrom != nil && *m.LocalFrom != "" && !validAddress(*m.LocalFrom):
		return nil, fmt.Errorf("%w: %s: bad sender", errCorrupt, id)
	case len(m.Recipients) == 0 || len(m.Recipients) > maxRcpts:
		return nil, fmt.Errorf("%w: %s: %d recipients", errCorrupt, id, len(m.Recipients))
	case m.MsgID != "" && !validMsgID(m.MsgID):
		return nil, fmt.Errorf("%w: %s: bad msg_id", errCorrupt, id)
	case m.Created.IsZero() || m.Size < 0:
		return nil, fmt.Errorf("%w: %s: bad creation time or size", errCorrupt, id)
	case m.Ret != "" && m.Ret != RetFull && m.Ret != RetHdrs, m.EnvID != "" && !ValidEnvID(m.EnvID):
		return nil, fmt.Errorf("%w: %s: bad RET or ENVID", errCorrupt, id)
	case len(m.Expanded) > maxRcpts:
		return nil, fmt.Errorf("%w: %s: %d expansions", errCorrupt, id, len(m.Expanded))
	case m.Origin != "" && !validID(m.Origin):
		return nil, fmt.Errorf("%w: %s: bad origin", errCorrupt, id)
	}
	for _, d := range m.DSNs {
		if !validPendingDSN(d, len(m.Recipients)) {
			return nil, fmt.Errorf("%w: %s: bad pending DSN", errCorrupt, id)
		}
	}
	for _, r := range m.Expanded {
		if !validAddress(r.Addr) || r.State != StateDelivered || r.Action != ActionExpanded || !validRcptDSN(r) {
			return nil, fmt.Errorf("%w: %s: bad expansion", errCorrupt, id)
		}
	}
	for _, r := range m.Recipients {
		if !validRcptDSN(r) {
			return nil, fmt.Errorf("%w: %s: bad DSN parameters", errCorrupt, id)
		}
		if !validAddress(r.Addr) {
			return nil, fmt.Errorf("%w: %s: bad recipient", errCorrupt, id)
		}
		switch r.State {
		case StatePending, StateDelivered, StateFailed:
		default:
			return nil, fmt.Errorf("%w: %s: bad recipient state %q", errCorrupt, id, printable(string(r.State), 32))
		}
		if l := r.Local; l != nil && !validLocal(l) {
			return nil, fmt.Errorf("%w: %s: bad local target", errCorrupt, id)
		}
		if r.Node != "" && (r.Local == nil || cluster.CheckNodeName(r.Node) != nil) {
			return nil, fmt.Errorf("%w: %s: bad node", errCorrupt, id)
		}
	}
	return &m, nil
}

// validPendingDSN checks a DSN being handed over, read back from disk, of
// a message of n recipients.
func validPendingDSN(d PendingDSN, n int) bool {
	if !validID(d.ID) {
		return false
	}
	if _, ok := parseDSNKind(d.Kind); !ok || len(d.Rcpts) == 0 {
		return false
	}
	for _, i := range d.Rcpts {
		if i < -1 || i >= n {
			return false
		}
	}
	return true
}

// validID: s is a queue id as the queue writes them (ParseID, upper case).
func validID(s string) bool {
	id, err := ParseID(s)
	return err == nil && id == s
}

// validRcptDSN checks a recipient's DSN fields read back from disk.
func validRcptDSN(r Recipient) bool {
	switch r.Action {
	case "", ActionDelivered, ActionRelayed, ActionExpanded:
	default:
		return false
	}
	return (r.Notify == "" || CanonicalNotify(r.Notify) == r.Notify) && (r.ORcpt == "" || ValidORcpt(r.ORcpt))
}

// validMsgID: the id goes into log lines and file names (keyed copies):
// letters, digits, '-' and '_', bounded.
func validMsgID(s string) bool {
	if s == "" || len(s) > 40 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// validLocal checks a local target read back from disk; the delivery store
// checks the maildir again against its allowed base.
func validLocal(l *LocalTarget) bool {
	return filepath.IsAbs(l.Maildir) && filepath.Clean(l.Maildir) == strings.TrimSuffix(l.Maildir, "/") &&
		!strings.ContainsRune(l.Maildir, 0) && l.UID >= 0 && l.GID >= 0 &&
		int64(l.UID) < math.MaxUint32 && int64(l.GID) < math.MaxUint32 &&
		(l.OrigTo == "" || validAddress(l.OrigTo)) && l.QuotaBytes >= 0 && l.QuotaMessages >= 0 &&
		len(l.Folder) <= 64 && !strings.ContainsAny(l.Folder, "/.\x00")
}

func encodeEnvelope(m *Message) ([]byte, error) {
	return json.Marshal(m)
}

// backoff is the wait after a recipient's n-th failed attempt: MinBackoff,
// doubled each time, capped at MaxBackoff (Postfix's minimal/maximal
// backoff time).
func backoff(n int, lo, hi time.Duration) time.Duration {
	d := lo
	for i := 1; i < n && d < hi; i++ {
		d *= 2
	}
	return clampDuration(d, lo, hi)
}

func clampDuration(d, lo, hi time.Duration) time.Duration {
	return max(lo, min(d, hi))
}
