package smtp

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"time"

	gosmtp "github.com/emersion/go-smtp"

	"courriel/cluster"
	"courriel/delivery"
	"courriel/delivery/maildirsize"
	"courriel/delivery/queue"
	"courriel/directory"
	"courriel/smtp/wire"
)

// The Cluster listener (Kind Cluster, listen.cluster) is where the other
// nodes of a cluster hand over the copies for users homed here, as the
// queue's node copies:
//
//	EHLO, STARTTLS (when the listener has TLS), AUTH PLAIN with authcid
//	cluster.ClusterLogin and the shared secret (required before MAIL and
//	XIMPORT; failures throttled as any login), MAIL FROM:<sender>,
//	MAIL FROM:<sender> [XARRIVED=<unix seconds> [XRETRY]],
//	RCPT TO:<maildrop> [XKEY=<key>] [ORCPT=rfc822;<original>] [XJUNK]
//	[NOTIFY=<notify>] [XORCPT=<addr-type>;<xtext>],
//	DATA or BDAT.
//
// With a queue, EHLO says XDSN: the front node then gives MAIL its RET and
// ENVID and each RCPT its NOTIFY (never SUCCESS: the front reports a
// success once this node's 250 arrives) and the client's ORCPT as XORCPT,
// so that a copy this node queues and later fails to store is reported,
// or not, as the client asked (queue.WithDSN, as for any client).
//
// RCPT names a final maildrop, looked up with Mailboxes (no alias
// expansion: the front node expanded them); it must be at home on this
// node and not held, else 450 4.2.0 (the front retries, never bounces); a
// maildrop this node's directory does not know gets 450 4.1.1 (its replica
// may be behind the front's); a foreign domain 554 5.7.1 (no relay).
// ORCPT (RFC 3461, xtext) is the recipient before expansion: the copy's
// OrigTo, which Sieve sees as the envelope "to". XJUNK (no value) files
// the copy as the front's milter or DMARC quarantine decided (Junk); it
// means something only here, after the cluster login. XKEY names the
// copy (delivery.Recipient.CopyKey: the front's queue id and recipient
// index) with XARRIVED (when the front queued it), and XRETRY says an
// earlier attempt may have stored it: the copy is then looked for before
// it is stored, so a 250 lost on the way back makes no duplicate. No milters, no
// SPF/DKIM/DMARC checks (the front ran them and its headers are in the
// message), no relay. Delivery is as for any local copy: Sieve runs here,
// a single copy is stored at DATA and fsynced before 250.
//
// XIMPORT <login> <octets> (after the cluster login): 354, then exactly
// that many octets, handed to Options.ImportHome (courriel move-user's
// receiving side); 250 when it returns nil. The octets are a tar stream
// (cluster/move's archive.go) whose first member says what it is: a whole
// home to put in place (format 1), or, for one move id (format 2), a
// pre-copy staged while the user works, a delta applied to that staging
// directory, or the final delta sent while the user is held, after which
// the home is put in place. One verb for all: the kind travels inside the
// stream, checked by the importer, which refuses a delta for a move id it
// did not pre-copy.

// clusterAuth checks the cluster login: authcid ClusterLogin (authzid
// empty or the same) and the shared secret, in constant time. Failures
// count in the login throttle like any other.
func (s *session) clusterAuth(identity, login, password string) error {
	if s.srv.guard.Blocked(s.c.ip) {
		s.log.Warn("cluster auth refused: client throttled", "ip", s.c.ip.String())
		return s.authFailed("", replyAuthThrottled)
	}
	why := "not the cluster login"
	if (identity == "" || identity == login) && login == cluster.ClusterLogin {
		why = s.srv.hops.CheckLogin(password, s.tls != nil, s.c.ip)
	}
	if why == "" {
		s.mu.Lock()
		s.clusterPeer = true
		s.mu.Unlock()
		s.srv.guard.Succeeded(login, s.c.ip)
		s.log.Info("cluster auth ok")
		return nil
	}
	d := s.srv.guard.Failed(login, s.c.ip)
	s.log.Warn("cluster auth failed", "login", logValue(login, 64), "why", why, "delay", d)
	if d > 0 {
		s.srv.o.Sleep(s.ctx, d)
	}
	return s.authFailed(login, replyAuthFailed)
}

// replyNotHomedHere: the maildrop lives on another node, or is held while
// it moves. 450: the front node keeps the copy and tries again.
var replyNotHomedHere = rep(450, gosmtp.EnhancedCode{4, 2, 0}, "Mailbox not at home on this node now, try later")

// replyNotKnownHere: a maildrop the front node knows and this node's
// directory replica does not (yet).
var replyNotKnownHere = rep(450, gosmtp.EnhancedCode{4, 1, 1}, "Mailbox not in this node's directory yet, try later")

// replyUnknownNode: the directory names a home node the configuration
// does not list; mail waits while an admin fixes one or the other.
var replyUnknownNode = rep(451, gosmtp.EnhancedCode{4, 3, 0}, "Home node of this mailbox unknown here, try later")

// clusterRcpt decides one RCPT on the Cluster listener. s.mu held.
func (s *session) clusterRcpt(to, orig, key string, junk bool, dsn queue.RcptDSN) error {
	log := func() *slog.Logger { return s.log.With("msg_id", s.tx.id, "to", logValue(to, 300)) }
	a, err := parseAddress(to, s.tx.utf8)
	switch {
	case errors.Is(err, errNeedUTF8):
		return s.fail(stageRcpt, replyNeedUTF8)
	case err != nil:
		return s.fail(stageRcpt, replyBadRcpt)
	}
	addr := a.String()
	class, err := s.srv.o.Directory.ClassifyDomain(s.ctx, a.Domain)
	if err != nil {
		log().Error("cluster rcpt: classify domain", "err", err)
		return s.fail(stageRcpt, err)
	}
	if class == directory.DomainForeign {
		log().Warn("cluster rcpt refused: relay access denied")
		return s.fail(stageRcpt, replyRelayDenied)
	}
	mb, err := s.srv.o.Mailboxes.Mailbox(s.ctx, addr)
	if errors.Is(err, directory.ErrNotFound) {
		// The front node found it in its replica: this one may be behind
		// (a user just created). The front retries; it never bounces for
		// what one replica does not know yet.
		log().Warn("cluster rcpt deferred: no such maildrop in this node's directory")
		return s.fail(stageRcpt, replyNotKnownHere)
	}
	if err != nil {
		log().Error("cluster rcpt: mailbox", "err", err)
		return s.fail(stageRcpt, err)
	}
	home, remote, err := s.srv.o.ClusterNodes.Home(mb.Node)
	switch {
	case err != nil:
		log().Error("cluster rcpt: home node", "err", err)
		return s.fail(stageRcpt, replyUnknownNode)
	case remote:
		log().Warn("cluster rcpt refused: homed on another node", "node", home.Name)
		return s.fail(stageRcpt, replyNotHomedHere)
	case s.srv.o.Holds.Held(mb.Home):
		log().Info("cluster rcpt deferred: mailbox held (being moved)")
		return s.fail(stageRcpt, replyNotHomedHere)
	}
	k := dedupeKey(mb.Address)
	if !s.tx.seen[k] && len(s.tx.local) >= s.srv.o.MaxRecipients {
		return s.fail(stageRcpt, replyTooManyRcpts)
	}
	s.tx.rcpts = append(s.tx.rcpts, addr)
	if s.tx.seen[k] {
		return nil
	}
	s.tx.seen[k] = true
	if dsn != (queue.RcptDSN{}) {
		s.tx.setDSN(k, dsn)
	}
	if orig == "" {
		orig = addr
	}
	r := localRecipient(mb, orig)
	if key != "" && !s.tx.arrived.IsZero() {
		r.CopyKey = key
	}
	if junk {
		r.Folder = junkFolder
	}
	s.tx.local = append(s.tx.local, r)
	s.tx.setHome(k, mb.Home)
	return nil
}

// localRecipient is the copy for a mailbox, as RCPT found it, with the
// entry, so that the Sieve filter storing it at DATA does not look it up
// again (the queue drops the entry: its retries look it up afresh).
func localRecipient(mb *directory.Mailbox, orig string) delivery.Recipient {
	return delivery.Recipient{
		Address: mb.Address, OrigTo: orig, Maildir: mb.Maildir, UID: mb.UID, GID: mb.GID,
		Quota: maildirsize.Limits{Bytes: mb.QuotaBytes, Messages: mb.QuotaMessages},
		Entry: &delivery.Entry{Home: mb.Home, Addresses: mb.Addresses, Login: mb.Login},
	}
}

// parseORCPT reads ORCPT's value (RFC 3461 §4.2): "rfc822;" (or RFC 6533's
// "utf-8;") and the xtext of an address.
func parseORCPT(v string) (string, bool) {
	typ, addr, ok := strings.Cut(v, ";")
	if !ok || !strings.EqualFold(typ, "rfc822") && !strings.EqualFold(typ, "utf-8") {
		return "", false
	}
	dec, err := wire.DecodeXtext(addr)
	if err != nil || dec == "" || len(dec) > 320 {
		return "", false
	}
	return dec, true
}

// validKey accepts XKEY's value: a delivery.Recipient.CopyKey (letters,
// digits, '-', '_', at most 64).
func validKey(k string) bool {
	if k == "" || len(k) > 64 {
		return false
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// parseArrived reads XARRIVED: Unix seconds, after 2000 and not far in
// the future.
func parseArrived(v string) (time.Time, bool) {
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 946684800 || n > time.Now().Add(24*time.Hour).Unix() {
		return time.Time{}, false
	}
	return time.Unix(n, 0), true
}

// importProgress: during XIMPORT the read deadline moves by ReadTimeout
// each time this much more has arrived.
const importProgress = 1 << 20

// ximport runs XIMPORT <login> <octets> on the Cluster listener.
func (c *conn) ximport(arg string) {
	o := c.srv.o
	if o.Kind != Cluster || c.sess == nil || !c.sess.isClusterPeer() {
		if c.counted() {
			c.protocolError(500, wire.Enhanced{5, 5, 2}, "Error: command not recognized")
		}
		return
	}
	f := strings.Fields(arg)
	var n uint64
	var err error
	if len(f) == 2 {
		n, err = strconv.ParseUint(f[1], 10, 63)
	}
	if len(f) != 2 || err != nil || len(f[0]) > 256 {
		c.w.Reply(501, wire.Enhanced{5, 5, 4}, "Syntax: XIMPORT login octets")
		return
	}
	if o.ImportHome == nil {
		c.w.Reply(502, wire.Enhanced{5, 5, 1}, "XIMPORT not available on this node")
		return
	}
	login := f[0]
	c.w.Plain(354, "Send "+strconv.FormatUint(n, 10)+" octets")
	c.flush()
	chunk := c.r.ChunkReader(int64(n))
	pr := &progressReader{r: chunk, c: c, next: importProgress}
	c.extendRead()
	ctx, cancel := context.WithCancel(c.sess.ctx)
	err = o.ImportHome(ctx, login, pr)
	cancel()
	if chunk.Left() > 0 {
		// The importer stopped before the end (a refusal, or a stream that
		// ended early): the connection is closed after the reply rather
		// than reading up to the announced size, which may be huge.
		c.dropAfterWrite.Store(true)
		if err == nil {
			err = errors.New("import stream not read whole")
		}
	}
	if err == nil {
		c.log.Info("ximport done", "login", logValue(login, 64), "octets", n)
		c.w.Reply(250, wire.Enhanced{2, 0, 0}, "Imported")
		return
	}
	c.log.Warn("ximport failed", "login", logValue(login, 64), "err", err)
	var se *gosmtp.SMTPError
	if !errors.As(err, &se) || se.Code < 400 || se.Code > 599 {
		se = withID(replyTempFailure, c.id)
	}
	c.w.Reply(se.Code, wire.Enhanced(se.EnhancedCode), se.Message)
}

// progressReader moves the connection's read deadline as data arrives.
type progressReader struct {
	r    io.Reader
	c    *conn
	read int64
	next int64
}

func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	p.read += int64(n)
	if p.read >= p.next {
		p.next += importProgress
		p.c.extendRead()
	}
	return n, err
}

func (s *session) isClusterPeer() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.clusterPeer
}

// homeOf says where a mailbox found by RCPT lives: "" here, or the name of
// the node its copies are handed to. An unknown node is a temporary
// failure.
func (s *session) homeOf(mb *directory.Mailbox) (string, error) {
	n, remote, err := s.srv.o.ClusterNodes.Home(mb.Node)
	if err != nil {
		return "", err
	}
	if remote {
		return n.Name, nil
	}
	return "", nil
}
