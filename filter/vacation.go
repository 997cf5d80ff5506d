package filter

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"mime"
	"mime/quotedprintable"
	"net/mail"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"courriel/delivery"
	"courriel/directory"
	"courriel/internal/envaddr"
	"courriel/internal/sevenbit"
	"courriel/sieve"
)

// VacationMemoryName is courriel's memory in the home: the side effects
// a keyed copy queued (outbound.go), and the vacation replies of earlier
// versions, read until they expire; replies are now recorded in
// Pigeonhole's database (DuplicateDBName, markReply), which dovecot-lda
// reads too.
const VacationMemoryName = ".courriel.vacation"

// maxMemoryEntries bounds courriel's memory; past it the entries that
// expire first are forgotten.
const maxMemoryEntries = 10000

// noReplyLocalParts are senders that never get a vacation reply (RFC 5230
// §4.6, and Pigeonhole's list): daemons and list addresses.
var noReplyLocalParts = []string{"mailer-daemon", "listserv", "majordomo", "postmaster"}

// vacationVerdict says why a vacation reply is not sent ("" when it is).
func vacationVerdict(msg *sieve.Message, from string, own []string) string {
	if from == "" {
		return "null sender"
	}
	local, _, _ := envaddr.Split(strings.ToLower(from)) // "x@y"@z: the last '@'
	if slices.Contains(noReplyLocalParts, local) || strings.HasPrefix(local, "owner-") ||
		strings.HasSuffix(local, "-request") || strings.HasSuffix(local, "-owner") {
		return "sender is a daemon or a list"
	}
	for _, a := range own {
		if strings.EqualFold(a, from) {
			return "sender is the user"
		}
	}
	h := msg.Header
	if v := strings.TrimSpace(strings.ToLower(h.Get("Auto-Submitted"))); v != "" && v != "no" {
		return "auto-submitted"
	}
	switch strings.TrimSpace(strings.ToLower(h.Get("Precedence"))) {
	case "bulk", "list", "junk":
		return "precedence bulk, list or junk"
	}
	// Microsoft's X-Auto-Response-Suppress: comma-separated flags, All
	// or OOF (any case, blanks around) suppress an out-of-office reply,
	// as Pigeonhole reads it
	for _, v := range h.Values("X-Auto-Response-Suppress") {
		for _, flag := range strings.Split(v, ",") {
			flag = strings.Trim(flag, " \t\r\n")
			if strings.EqualFold(flag, "All") || strings.EqualFold(flag, "OOF") {
				return "x-auto-response-suppress " + flag
			}
		}
	}
	for _, name := range []string{"List-Id", "List-Post", "List-Help", "List-Subscribe", "List-Unsubscribe", "List-Owner", "List-Archive"} {
		if h.Has(name) {
			return "mailing list"
		}
	}
	if myAddress(msg, own) == "" {
		return "none of the user's addresses is a recipient"
	}
	return ""
}

// myAddress is the first of own found in To, then Cc, Bcc, Resent-To,
// Resent-Cc, Resent-Bcc (each field before the next, each of own in
// order within one): the user's address the message came to, which
// Pigeonhole's act_vacation_commit makes the reply's From. "" when none
// is there.
func myAddress(msg *sieve.Message, own []string) string {
	for _, name := range []string{"To", "Cc", "Bcc", "Resent-To", "Resent-Cc", "Resent-Bcc"} {
		values := msg.Header.Values(name)
		if len(values) == 0 {
			continue
		}
		lists := make([][]*mail.Address, len(values))
		parsed := make([]bool, len(values))
		for i, v := range values {
			list, err := mail.ParseAddressList(v)
			lists[i], parsed[i] = list, err == nil
		}
		for _, o := range own {
			if o == "" {
				continue
			}
			for i, v := range values {
				if !parsed[i] {
					// Unparsable: look for the address as text, as
					// lenient as Pigeonhole's own parser would be.
					if strings.Contains(strings.ToLower(v), strings.ToLower(o)) {
						return o
					}
					continue
				}
				for _, a := range lists[i] {
					if strings.EqualFold(a.Address, o) {
						return o
					}
				}
			}
		}
	}
	return ""
}

// vacation sends the plan's vacation reply if the rules allow it and the
// memory has no reply to this sender under this handle within the period.
// Failures are logged: a reply never holds up the delivery.
func (f *Filter) vacation(ctx context.Context, m *delivery.Message, r *delivery.Recipient, p *plan) {
	v := p.vacation
	msg, err := (&messageReader{m: m}).sieveMessage()
	if err != nil {
		f.log.Warn("sieve: vacation not sent", "msg_id", m.ID, "to", r.Address, "err", err)
		return
	}
	// Who the user is: the maildrop, the original recipient when
	// configured, the script's :addresses and the entry's own addresses
	// (Pigeonhole's sieve_user_email), in the order Pigeonhole looks for
	// them in the message, which also leaves out the address the sender
	// used unless told: an alias of a whole team would otherwise bring
	// one reply from each member who is away.
	own := []string{r.Address}
	if r.OrigTo != "" && f.o.VacationUseOriginalRecipient {
		own = append(own, r.OrigTo)
	}
	own = append(own, v.Addresses...)
	own = append(own, p.mb.Addresses...)
	if why := vacationVerdict(msg, m.From, own); why != "" {
		f.log.Info("sieve: vacation not sent", "msg_id", m.ID, "to", r.Address, "sender", printable(m.From, 300), "reason", why)
		return
	}
	if f.o.Outbound == nil {
		f.log.Warn("sieve: vacation not sent: no outbound queue", "msg_id", m.ID, "to", r.Address)
		return
	}
	remote, local, err := f.route(ctx, []string{m.From})
	if err != nil {
		f.log.Warn("sieve: vacation not sent: cannot route the reply", "msg_id", m.ID, "to", r.Address, "err", err)
		return
	}
	if p.mb.Home != "" {
		uid, gid := -1, -1
		if f.o.Chown {
			uid, gid = r.UID, r.GID
		}
		fresh, problem, err := f.markReply(ctx, replyMark{home: p.mb.Home, user: vacationUser(p.mb, r), sender: m.From,
			handle: v.Handle, claim: replyClaim(r.CopyKey), period: v.Period, uid: uid, gid: gid})
		if problem != "" {
			f.log.Warn("sieve: vacation memory damaged: the records before the damage are kept, the rest forgotten at the next reply",
				"msg_id", m.ID, "to", r.Address, "file", DuplicateDBName, "problem", problem)
		}
		switch {
		case err != nil && fresh:
			f.log.Warn("sieve: vacation memory written but not synced: a crash may forget the reply", "msg_id", m.ID, "to", r.Address, "err", err)
		case err != nil:
			// Without a memory a reply per message could flood the sender.
			f.log.Warn("sieve: vacation not sent: memory unusable", "msg_id", m.ID, "to", r.Address, "err", err)
			return
		}
		if !fresh {
			f.log.Info("sieve: vacation not sent", "msg_id", m.ID, "to", r.Address, "sender", printable(m.From, 300), "reason", "already replied within the period")
			return
		}
	}
	// From the address the message came to, as Pigeonhole's
	// act_vacation_commit: the first of own in its To, Cc, Bcc or
	// Resent-* (the verdict made sure there is one).
	from := cmp.Or(myAddress(msg, own), r.Address)
	if v.From != "" {
		if a, err := mail.ParseAddress(v.From); err == nil && slices.ContainsFunc(own, func(o string) bool { return strings.EqualFold(o, a.Address) }) {
			from = v.From
		}
	}
	reply := f.composeReply(msg, m.From, from, v)
	// A :mime reason may be 8-bit: in 7 bits before it is signed, as
	// submission's messages are, or a next hop without 8BITMIME would
	// have the queue convert it after the signature.
	if d, changed := sevenbit.Downgrade(reply); changed {
		reply = d
	}
	if f.o.Sign != nil {
		if sig, err := f.o.Sign(reply); err != nil {
			f.log.Warn("sieve: vacation reply not signed", "msg_id", m.ID, "to", r.Address, "err", err)
		} else {
			reply = append(sig, reply...)
		}
	}
	// Its key makes the retry after a crash queue it once: the memory
	// has it recorded for this copy (markReply) whether the crash came
	// before the Accept or after.
	key := queueKey(r.CopyKey, "vacation", []string{m.From})
	qid, _, err := f.o.Outbound.Accept(ctx, Outgoing{Key: key, MsgID: m.ID, Remote: remote, Local: local, Data: bytes.NewReader(reply)})
	if err != nil {
		f.log.Warn("sieve: vacation not queued", "msg_id", m.ID, "to", r.Address, "err", err)
		return
	}
	f.log.Info("sieve: vacation reply queued", "msg_id", m.ID, "to", r.Address, "sender", printable(m.From, 300), "queue_id", qid)
}

// composeReply builds the reply (RFC 5230 §5): From the user, To the
// sender, "Auto: " + the original subject by default, In-Reply-To and
// References, Auto-Submitted: auto-replied, CRLF line ends.
func (f *Filter) composeReply(msg *sieve.Message, sender, from string, v *sieve.VacationReply) []byte {
	var b bytes.Buffer
	hdr := func(name, value string) { writeFolded(&b, name, value) }
	// Pigeonhole's fields in Pigeonhole's order (act_vacation_send), so
	// that a reply reads the same whichever server sent it.
	hdr("X-Sieve", "courriel Sieve")
	hdr("Message-ID", "<"+randomID()+"@"+f.o.Hostname+">")
	hdr("Date", f.o.Now().Format(time.RFC1123Z))
	if a, err := mail.ParseAddress(from); err == nil && a.Name != "" {
		// A display name in UTF-8 is RFC 2047-encoded, as Pigeonhole
		// writes it: the reply leaves from <> and must pass any hop.
		hdr("From", a.String())
	} else {
		hdr("From", headerSafe(from))
	}
	hdr("To", replyRecipient(msg, sender))
	subject := v.Subject
	if subject == "" {
		orig := msg.Header.Get("Subject")
		if d, err := new(mime.WordDecoder).DecodeHeader(orig); err == nil {
			orig = d
		}
		subject = "Auto: " + orig
		if strings.TrimSpace(orig) == "" {
			subject = "Automated reply" // Pigeonhole's, for a message without one
		}
	}
	hdr("Subject", mime.QEncoding.Encode("utf-8", oneLineUTF8(subject, 900)))
	if id := strings.TrimSpace(msg.Header.Get("Message-ID")); id != "" && len(id) < 1000 && !strings.ContainsAny(id, "\r\n") {
		hdr("In-Reply-To", id)
		refs := strings.TrimSpace(msg.Header.Get("References"))
		if refs != "" && len(refs) < 4000 && !strings.ContainsAny(refs, "\r\n") {
			hdr("References", refs+" "+id)
		} else {
			hdr("References", id)
		}
	}
	hdr("Auto-Submitted", "auto-replied (vacation)")
	hdr("Precedence", "bulk")
	// Microsoft's clients are told not to answer it, as Pigeonhole does
	hdr("X-Auto-Response-Suppress", "All")
	hdr("MIME-Version", "1.0")
	if v.MIME {
		// The reason is a MIME entity: its own header, then its body.
		body := strings.ReplaceAll(strings.ReplaceAll(v.Reason, "\r\n", "\n"), "\n", "\r\n")
		b.WriteString(body)
		if !strings.HasSuffix(body, "\r\n") {
			b.WriteString("\r\n")
		}
		return b.Bytes()
	}
	hdr("Content-Type", "text/plain; charset=utf-8")
	hdr("Content-Transfer-Encoding", "quoted-printable")
	b.WriteString("\r\n")
	var qp bytes.Buffer
	w := quotedprintable.NewWriter(&qp)
	io.WriteString(w, strings.ReplaceAll(v.Reason, "\r\n", "\n"))
	w.Close()
	b.WriteString(strings.ReplaceAll(strings.ReplaceAll(qp.String(), "\r\n", "\n"), "\n", "\r\n"))
	if !bytes.HasSuffix(b.Bytes(), []byte("\r\n")) {
		b.WriteString("\r\n")
	}
	return b.Bytes()
}

// writeFolded writes a header field folded at its spaces into lines of at
// most 78 octets where it can (RFC 5322 §2.1.1): a long References or an
// encoded Subject (several encoded-words) stays far under the 998 limit.
func writeFolded(b *bytes.Buffer, name, value string) {
	line := len(name) + 1
	b.WriteString(name + ":")
	for i, w := range strings.Split(value, " ") {
		if w == "" && i > 0 {
			continue
		}
		if line+1+len(w) > 78 && line > len(name)+1 {
			b.WriteString("\r\n")
			line = 0
		}
		b.WriteByte(' ')
		b.WriteString(w)
		line += 1 + len(w)
	}
	b.WriteString("\r\n")
}

// replyRecipient is the reply's To: the envelope sender as the message
// names it, display name included, in the first of Sender, Resent-From
// and From that holds it (Pigeonhole's _get_full_reply_recipient), so
// that the reader sees "Bob Martin" rather than a bare address; the bare
// address when none does.
func replyRecipient(msg *sieve.Message, sender string) string {
	for _, name := range []string{"Sender", "Resent-From", "From"} {
		v := msg.Header.Get(name)
		if v == "" || len(v) > 4000 {
			continue
		}
		list, err := mail.ParseAddressList(v)
		if err != nil {
			continue
		}
		for _, a := range list {
			if strings.EqualFold(a.Address, sender) {
				// Re-encoded by net/mail: quoted or RFC 2047 as needed,
				// never a line break.
				return (&mail.Address{Name: oneLineUTF8(a.Name, 200), Address: a.Address}).String()
			}
		}
	}
	return "<" + headerSafe(sender) + ">"
}

// headerSafe drops what could end a header field.
func headerSafe(s string) string {
	return strings.NewReplacer("\r", "", "\n", "", "\x00", "").Replace(s)
}

// oneLineUTF8 is s on one line, at most n bytes, valid UTF-8 kept.
func oneLineUTF8(s string, n int) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
	for len(s) > n {
		_, size := lastRune(s)
		s = s[:len(s)-size]
	}
	return s
}

func lastRune(s string) (rune, int) {
	for i := len(s) - 1; i >= 0; i-- {
		if s[i]&0xc0 != 0x80 {
			return rune(s[i]), len(s) - i
		}
	}
	return 0, 1
}

func randomID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// remember records key (with handle, "" for the side effects of a copy)
// for period in home's courriel memory, and says whether it was not
// recorded within it. The file holds "<expiry unix> <sha256(key, handle)>"
// lines, is replaced atomically (write, fsync, rename) and bounded; a
// period of 0 records nothing. Vacation replies are no longer recorded
// there but in Pigeonhole's database (markReply), which reads the
// replies earlier versions recorded here until they expire.
func (f *Filter) remember(home, key, handle string, period time.Duration, uid, gid int) (bool, error) {
	if period <= 0 {
		return true, nil
	}
	mu := &f.homes[int(sha256.Sum256([]byte(home))[0])%len(f.homes)]
	mu.Lock()
	defer mu.Unlock()
	root, err := os.OpenRoot(home)
	if err != nil {
		return false, err
	}
	defer root.Close()
	now := f.o.Now()
	sum := sha256.Sum256([]byte(strings.ToLower(key) + "\x00" + handle))
	k := hex.EncodeToString(sum[:])
	entries, err := readMemory(root, now)
	if err != nil {
		return false, err
	}
	if _, ok := entries[k]; ok {
		return false, nil
	}
	entries[k] = now.Add(period).Unix()
	return true, f.writeMemory(root, entries, uid, gid)
}

// replyMark is a vacation reply for markReply to decide and record.
type replyMark struct {
	home   string
	user   string // the mail user the record names (vacationUser)
	sender string
	handle string
	claim  string // the copy's replyClaim; "" for none
	period time.Duration
	// uid, gid own the files written; -1: left to the process (or kept
	// as they were, for the database).
	uid, gid int
}

// markReply says whether rm's reply may go: not when Pigeonhole's
// database (dupes.go) records a reply to its sender under its handle
// within its period, whichever server sent it, nor when the courriel
// memory of earlier versions (~/.courriel.vacation) does. When it may,
// the reply is recorded there before it is queued, for its period, with
// the id and user dovecot-lda would write, and with the copy's claim
// (rm.claim): a reply recorded with its claim is fresh all the same, for
// this is that delivery tried again, and the crash that made it try
// again may have come before the reply was queued (the queue's key makes
// it once if it was). Both records go in one write, under Dovecot's id
// lock and dotlock: a crash leaves both or neither. A period of 0
// records nothing (Pigeonhole's :seconds 0), yet a reply recorded with a
// longer one still holds. problem says what was wrong with the database
// ("" when nothing was), whose records before the damage are used. A
// record in place that the home's fsync did not make durable is fresh
// with errNotDurable.
func (f *Filter) markReply(ctx context.Context, rm replyMark) (fresh bool, problem string, err error) {
	// Per home, not striped: the file locks below may be waited for up
	// to Dovecot's timeouts, and a user holding one in a shell must not
	// hold up the replies of other homes. In one process an fcntl lock
	// does not exclude itself: this does.
	unlockHome, err := f.replyHomes.lock(ctx, rm.home)
	if err != nil {
		return false, "", err
	}
	defer unlockHome()
	root, err := os.OpenRoot(rm.home)
	if err != nil {
		return false, "", err
	}
	defer root.Close()
	id := vacationDupID(rm.sender, rm.handle)
	unlock, err := f.lockDupID(ctx, root, id, rm.uid, rm.gid)
	if err != nil {
		return false, "", fmt.Errorf("locking the reply's id: %w", err)
	}
	defer unlock()
	dl, err := f.lockDupes(ctx, root)
	if err != nil {
		return false, "", err
	}
	now := f.o.Now()
	t, problem, old, err := readDupes(root, now.Unix())
	if err != nil {
		dl.release()
		return false, "", err
	}
	legacy, err := readMemory(root, now)
	if err != nil {
		dl.release()
		return false, problem, fmt.Errorf("reading %s: %w", VacationMemoryName, err)
	}
	sum := sha256.Sum256([]byte(strings.ToLower(rm.sender) + "\x00" + rm.handle))
	_, legacyReply := legacy[hex.EncodeToString(sum[:])]
	if t.has(id) || legacyReply {
		dl.release()
		_, legacyClaim := legacy[memoryKey(rm.claim)]
		return rm.claim != "" && (t.has(claimDupID(rm.claim)) || legacyClaim), problem, nil
	}
	if rm.period <= 0 {
		dl.release()
		return true, problem, nil
	}
	stamp := dupStamp(now, rm.period)
	t.set(id, rm.user, stamp, now.Unix(), true)
	if rm.claim != "" {
		// The claim matters only while its reply is remembered: past
		// the period the retry finds the sender fresh anyway (and the
		// queue's key keeps the reply once). A second more than the
		// reply, so that the bound, which drops the earliest expiries
		// first, never drops the claim and keeps its reply, which would
		// lose the reply of a retry after a crash before the Accept.
		t.set(claimDupID(rm.claim), rm.user, min(stamp+1, math.MaxUint32), now.Unix(), true)
	}
	if err := dl.replace(t.encode(), old, rm.uid, rm.gid); err != nil {
		// In place but not synced: the next message finds the record,
		// so this reply goes, or none would for the whole period (a
		// crash may forget it: one more reply then).
		return errors.Is(err, errNotDurable), problem, err
	}
	return true, problem, nil
}

// homeLocks excludes one another's work on a home, waited for under a
// context, without making other homes wait.
type homeLocks struct {
	mu   sync.Mutex
	held map[string]chan struct{} // closed when its home is released
}

func (h *homeLocks) lock(ctx context.Context, home string) (func(), error) {
	for {
		h.mu.Lock()
		busy, ok := h.held[home]
		if !ok {
			if h.held == nil {
				h.held = map[string]chan struct{}{}
			}
			mine := make(chan struct{})
			h.held[home] = mine
			h.mu.Unlock()
			return func() {
				h.mu.Lock()
				delete(h.held, home)
				h.mu.Unlock()
				close(mine)
			}, nil
		}
		h.mu.Unlock()
		select {
		case <-busy:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// vacationUser is the user name dovecot-lda gives the mail user, which
// its records carry: the entry's login (the seed's userdb finds the entry
// by uid=%u), else the maildrop. Dovecot compares it without regard to
// case, courriel not at all when it reads (dupTable.has).
func vacationUser(mb *directory.Mailbox, r *delivery.Recipient) string {
	return cmp.Or(mb.Login, mb.Address, r.Address)
}

// replyClaim names in the memory a keyed copy's vacation reply, recorded
// with the reply (rememberFor); "" for a copy without a key.
func replyClaim(copyKey string) string {
	if copyKey == "" {
		return ""
	}
	return sideEffectsKey(copyKey) + "\x00vacation"
}

// recalled says whether key (as remember records it, handle "") is in
// home's memory and not expired.
func (f *Filter) recalled(home, key string) (bool, error) {
	mu := &f.homes[int(sha256.Sum256([]byte(home))[0])%len(f.homes)]
	mu.Lock()
	defer mu.Unlock()
	root, err := os.OpenRoot(home)
	if err != nil {
		return false, err
	}
	defer root.Close()
	entries, err := readMemory(root, f.o.Now())
	if err != nil {
		return false, err
	}
	_, ok := entries[memoryKey(key)]
	return ok, nil
}

// memoryKey is key's line in the memory, as remember records it with
// handle "".
func memoryKey(key string) string {
	sum := sha256.Sum256([]byte(strings.ToLower(key) + "\x00"))
	return hex.EncodeToString(sum[:])
}

// recalledKeys says which of keys (as remember records them, handle "")
// are in home's memory and not expired: one read for them all.
func (f *Filter) recalledKeys(home string, keys []string) (map[string]bool, error) {
	mu := &f.homes[int(sha256.Sum256([]byte(home))[0])%len(f.homes)]
	mu.Lock()
	defer mu.Unlock()
	root, err := os.OpenRoot(home)
	if err != nil {
		return nil, err
	}
	defer root.Close()
	entries, err := readMemory(root, f.o.Now())
	if err != nil {
		return nil, err
	}
	found := map[string]bool{}
	for _, k := range keys {
		if _, ok := entries[memoryKey(k)]; ok {
			found[k] = true
		}
	}
	return found, nil
}

// rememberKeys records keys (handle "") for period in home's memory: one
// write for them all.
func (f *Filter) rememberKeys(home string, keys []string, period time.Duration, uid, gid int) error {
	mu := &f.homes[int(sha256.Sum256([]byte(home))[0])%len(f.homes)]
	mu.Lock()
	defer mu.Unlock()
	root, err := os.OpenRoot(home)
	if err != nil {
		return err
	}
	defer root.Close()
	now := f.o.Now()
	entries, err := readMemory(root, now)
	if err != nil {
		return err
	}
	for _, k := range keys {
		entries[memoryKey(k)] = now.Add(period).Unix()
	}
	return f.writeMemory(root, entries, uid, gid)
}

// maxMemoryFile bounds what is read of the memory file.
const maxMemoryFile = maxMemoryEntries * 100

func readMemory(root *os.Root, now time.Time) (map[string]int64, error) {
	entries := map[string]int64{}
	f, err := openHomeFile(root, VacationMemoryName)
	if f == nil || err != nil {
		return entries, err
	}
	defer f.Close()
	sc := bufio.NewScanner(io.LimitReader(f, maxMemoryFile))
	for sc.Scan() {
		exp, key, ok := strings.Cut(sc.Text(), " ")
		t, err := strconv.ParseInt(exp, 10, 64)
		if !ok || err != nil || len(key) != 64 || t <= now.Unix() {
			continue
		}
		entries[key] = t
	}
	return entries, sc.Err()
}

func (f *Filter) writeMemory(root *os.Root, entries map[string]int64, uid, gid int) error {
	keys := make([]string, 0, len(entries))
	for k := range entries {
		keys = append(keys, k)
	}
	// Latest expiry first: past the bound, the oldest replies are forgotten.
	slices.SortFunc(keys, func(a, b string) int { return int(entries[b] - entries[a]) })
	if len(keys) > maxMemoryEntries {
		keys = keys[:maxMemoryEntries]
	}
	var b bytes.Buffer
	for _, k := range keys {
		b.WriteString(strconv.FormatInt(entries[k], 10) + " " + k + "\n")
	}
	return f.writeHomeFile(root, VacationMemoryName, b.Bytes(), uid, gid)
}

// openHomeFile opens name in the user's home (root) for reading: a
// regular file, never through a symlink, never blocking on a FIFO; nil
// and no error when there is none.
func openHomeFile(root *os.Root, name string) (*os.File, error) {
	f, err := root.OpenFile(name, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("%s is not a regular file", name)
	}
	if err := notSymlink(root, name, f); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// notSymlink makes sure f, opened as name in root, was no symlink: an
// os.Root follows one that stays inside it, O_NOFOLLOW or not.
func notSymlink(root *os.Root, name string, f *os.File) error {
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	li, err := root.Lstat(name)
	if err != nil {
		return err
	}
	if li.Mode()&fs.ModeSymlink != 0 || !os.SameFile(fi, li) {
		return fmt.Errorf("%s is a symlink", name)
	}
	return nil
}

// writeHomeFile replaces name in the user's home (root) with data, as a
// whole: a temporary file, owned by uid:gid (unless uid < 0) and mode
// 0600, written, fsynced and renamed over it, the home fsynced (syncDir)
// for the rename to last; never through a symlink.
func (f *Filter) writeHomeFile(root *os.Root, name string, data []byte, uid, gid int) error {
	tmp := name + ".tmp"
	_ = root.Remove(tmp)
	w, err := root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return err
	}
	if uid >= 0 {
		if err := w.Chown(uid, gid); err != nil {
			w.Close()
			_ = root.Remove(tmp)
			return err
		}
	}
	_, err = w.Write(data)
	if err == nil {
		err = w.Sync()
	}
	if cerr := w.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = root.Rename(tmp, name)
	}
	if err != nil {
		_ = root.Remove(tmp)
		return err
	}
	return f.syncDir(root)
}
