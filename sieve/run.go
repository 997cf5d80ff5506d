package sieve

import (
	"bufio"
	"bytes"
	"context"
	"courriel/internal/mimepart"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/mail"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/emersion/go-message/charset"
	"github.com/emersion/go-message/textproto"
)

// Message is what a script sees of a message: its header, its size and
// (for the body test) its body.
type Message struct {
	Header textproto.Header
	// Size in octets with LF line ends: the message as delivery stores it
	// in the maildir, and as Dovecot's LDA, fed by Postfix with LF line
	// ends, gives it to Pigeonhole's size test.
	Size int64
	// Body is the body as read (after the empty line) with LF line ends,
	// at most the limit
	// given to ReadMessageLimit (DefaultMaxBody for ReadMessage);
	// BodyTruncated says a longer body was cut there. Size always counts
	// the whole message.
	Body          []byte
	BodyTruncated bool
	// layout is where ReadMessage found the header's fields; nil for a
	// Message made otherwise.
	layout *headerLayout
	// src is what ReadMessageAt read, read again for the fields of the
	// header past what a script sees (deleteheader); nil from ReadMessage.
	src io.ReaderAt
}

// ReadMessage reads a message (LF or CRLF line ends), keeping its header,
// the first DefaultMaxBody octets of its body, and measuring its size.
func ReadMessage(r io.Reader) (*Message, error) {
	return ReadMessageLimit(r, DefaultMaxBody)
}

// ReadMessageAt is ReadMessage of the size octets of src, which a run
// reads again (never whole: one field at a time) when a deleteheader
// reaches the fields of the header past what a script sees: src must not
// change while the Message is used. Without it (ReadMessage), deleteheader
// counts and deletes only the fields a script sees.
func ReadMessageAt(src io.ReaderAt, size int64) (*Message, error) {
	m, err := ReadMessage(io.NewSectionReader(src, 0, size))
	if err != nil {
		return nil, err
	}
	m.src = src
	return m, nil
}

// ReadMessageLimit is ReadMessage keeping at most maxBody octets of the
// body (0 keeps none: a script with a body test then sees an empty body).
func ReadMessageLimit(r io.Reader, maxBody int) (*Message, error) {
	cr := &lfCounter{r: r}
	br := bufio.NewReader(cr)
	hs, err := scanHeader(br, maxHeaderBytes)
	if err != nil {
		return nil, fmt.Errorf("sieve: reading the message header: %w", err)
	}
	h, err := textproto.ReadHeader(bufio.NewReader(bytes.NewReader(hs.block)))
	if err != nil {
		return nil, fmt.Errorf("sieve: reading the message header: %w", err)
	}
	var body bytes.Buffer
	if _, err := io.Copy(&body, io.LimitReader(br, int64(max(maxBody, 0)))); err != nil {
		return nil, fmt.Errorf("sieve: reading the message body: %w", err)
	}
	rest, err := io.Copy(io.Discard, br)
	if err != nil {
		return nil, fmt.Errorf("sieve: reading the message body: %w", err)
	}
	// LF line ends, as Dovecot's LDA fed by Postfix sees the body (and
	// as Size counts it): body :raw :is gives the same answer whether the
	// message came with CRLF or LF.
	b := bytes.ReplaceAll(body.Bytes(), []byte("\r\n"), []byte("\n"))
	m := &Message{Header: h, Size: cr.n, Body: b, BodyTruncated: rest > 0, layout: &hs.layout}
	m.layout.total = cr.raw
	if h.Len() != len(m.layout.spans) {
		// the fields are not numbered as the parser numbers them: the
		// edits cannot be placed in the message (HeaderEdit.Pieces)
		m.layout = nil
	}
	return m, nil
}

// maxHeaderBytes bounds the header a script sees: the fields past it are
// read and skipped. A parsed field costs far more than its octets, and a
// 10 MB header of one-word fields cost hundreds of megabytes for any
// client of port 25 writing to a user with a script. Real headers are a
// few kilobytes.
const maxHeaderBytes = 1 << 20

// maxHeaderFields bounds the fields a script sees the same way: go-message
// spends about 500 octets on each, so a megabyte of "X: y" lines (130,000
// fields) cost 65 MB. A long-travelled list message has a few hundred.
const maxHeaderFields = 5000

// headerLayout is where ReadMessage found the header in what it read:
// editheader's edits are applied to the message itself (HeaderEdit.Pieces),
// fields the script did not see included.
type headerLayout struct {
	spans []fieldSpan // the fields a script sees, in order: octets in the input
	end   int64       // where the header's fields end: its empty line, or the input's end
	// unseen is where the fields past what a script sees start (end when
	// it sees them all)
	unseen int64
	noEOL  bool  // the header's last line has no line end (the input ends there)
	total  int64 // octets read
}

// fieldSpan is a field's octets [start, end), its folded lines and line
// ends included.
type fieldSpan struct{ start, end int64 }

type headerScan struct {
	block  []byte
	layout headerLayout
}

// scanHeader reads the header section from br, up to and including the
// empty line that ends it (or the end of the message), and returns its
// first fields up to about max octets and maxHeaderFields fields, whole,
// ended by an empty line, and where each of them is in the input. A
// field that would pass either bound is left out with every field after
// it. A field without a name the parser reads (namedField) is left out
// of the block too, but counts within the bounds and stays in the
// message where it is, as the fields past them do.
func scanHeader(br *bufio.Reader, max int) (*headerScan, error) {
	hs := &headerScan{}
	var block []byte
	var pos int64
	full, fields := false, 0
	fieldAt := -1        // where the last field kept starts in block
	var fieldStart int64 // and in the input
	hs.layout.unseen = -1
	numbered := false // the last field kept has a span
	// cuts are the fields without a name, [from, to) in block; cutFrom
	// is where the one being read starts, -1 when the field is named
	var cuts [][2]int
	cutFrom := -1
	for {
		start, lb := pos, len(block)
		room := max - lb
		if full {
			room = 0
		}
		// one line, kept in block while it fits
		var head [2]byte
		n, eol, dropped := 0, false, false
		for {
			frag, err := br.ReadSlice('\n')
			if n < 2 {
				copy(head[n:], frag)
			}
			n += len(frag)
			pos += int64(len(frag))
			if !dropped {
				if n > room {
					block, dropped = block[:lb], true
				} else {
					block = append(block, frag...)
				}
			}
			if errors.Is(err, bufio.ErrBufferFull) {
				continue
			}
			if err != nil && !errors.Is(err, io.EOF) {
				return nil, err
			}
			eol = err == nil
			break
		}
		if n == 0 || (n == 1 && head[0] == '\n') || (n == 2 && eol && head[0] == '\r') {
			block = block[:lb]
			hs.layout.end = start
			break
		}
		// a folded line first of all continues no field: Dovecot's
		// parser reads it as a field of its own
		cont := (head[0] == ' ' || head[0] == '\t') && fields > 0
		switch {
		case full:
		case !cont:
			if cutFrom >= 0 {
				cuts = append(cuts, [2]int{cutFrom, lb})
				cutFrom = -1
			}
			fields++
			if fields > maxHeaderFields || dropped {
				full = true
				block = block[:lb]
				hs.layout.unseen = start
				break
			}
			fieldAt, fieldStart, numbered = lb, start, false
			if namedField(block[lb:]) {
				hs.layout.spans = append(hs.layout.spans, fieldSpan{start, pos})
				numbered = true
			} else {
				cutFrom = lb
			}
		case dropped:
			// a folded line that does not fit: the whole field is left out
			full = true
			hs.layout.unseen = start
			if fieldAt >= 0 {
				hs.layout.unseen = fieldStart
				block = block[:fieldAt]
				if numbered {
					hs.layout.spans = hs.layout.spans[:len(hs.layout.spans)-1]
				}
			}
		default:
			if numbered {
				hs.layout.spans[len(hs.layout.spans)-1].end = pos
			}
		}
		if !eol {
			hs.layout.end, hs.layout.noEOL = pos, true
			break
		}
	}
	if hs.layout.unseen < 0 {
		hs.layout.unseen = hs.layout.end
	}
	if cutFrom >= 0 {
		cuts = append(cuts, [2]int{cutFrom, len(block)})
	}
	block = cutOut(block, cuts)
	if len(block) > 0 && block[len(block)-1] != '\n' {
		block = append(block, '\r', '\n')
	}
	hs.block = append(block, '\r', '\n')
	return hs, nil
}

// namedField says whether the field whose first line is line has a name
// textproto.ReadHeader reads (printable ASCII before a colon, white space
// after it aside, on a line that is no folded line), which it numbers
// (ReadHeader fails on any other, or skips it when the name is empty).
// No script can name another: deleteheader never reaches it, a test never
// sees it, and an edit keeps it where it is, as it keeps the fields past
// what a script sees. Dovecot's parser reads one without a colon or with
// an empty name as a field without a name, which Pigeonhole 2.3.19's
// editheader aborts on (an assertion, body_offset > 0, in
// edit_mail_headers_parse) and 2.3.21's drops from an edited copy when
// the edit happened to parse the header (a deleteheader, or a test after
// an addheader; after an addheader alone it is kept): no rule worth
// following, so it is kept, as the sender wrote it.
func namedField(line []byte) bool {
	if len(line) == 0 || line[0] == ' ' || line[0] == '\t' {
		return false
	}
	i := bytes.IndexByte(line, ':')
	if i < 0 {
		return false
	}
	name := bytes.TrimRight(line[:i], " \t")
	for _, c := range name {
		if c < 33 || c > 126 {
			return false
		}
	}
	return len(name) > 0
}

// cutOut is block without the ranges cuts (in order, each clipped to
// block), in place.
func cutOut(block []byte, cuts [][2]int) []byte {
	if len(cuts) == 0 {
		return block
	}
	out, at := block[:0], 0
	for _, c := range cuts {
		from, to := min(c[0], len(block)), min(c[1], len(block))
		out = append(out, block[at:from]...)
		at = max(at, to)
	}
	return append(out, block[at:]...)
}

// lfCounter counts the octets read, a CR before an LF not counted.
type lfCounter struct {
	r      io.Reader
	n      int64
	raw    int64 // every octet
	lastCR bool
}

func (c *lfCounter) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.raw += int64(n)
	for _, b := range p[:n] {
		if b == '\n' && c.lastCR {
			c.n--
		}
		c.lastCR = b == '\r'
		c.n++
	}
	return n, err
}

// Envelope is the SMTP envelope of the copy being delivered, its
// addresses in SMTP's external form (a local part quoted where it must
// be: "\"john doe\"@example.org"); the envelope test reads them as
// Pigeonhole does (mailAddr).
type Envelope struct {
	From string // MAIL FROM, "" for the null sender
	To   string // the RCPT TO address this copy is for
}

// ActionKind is what an Action does.
type ActionKind int

const (
	// Store puts the message into Folder ("INBOX" for keep) with Flags.
	Store ActionKind = iota
	// Redirect sends the message on to Address.
	Redirect
	// Discard records that the script discarded the message; with no Store
	// nor Redirect beside it, nothing is delivered.
	Discard
	// Reject refuses the message with Reason (RFC 5429): in the SMTP
	// dialogue when still possible, else by a DSN; never beside a Store or
	// Redirect (that is a runtime error).
	Reject
	// Vacation asks for an auto-reply to the sender (RFC 5230, RFC 6131),
	// described by Action.Vacation. Whether it is sent (null sender, lists,
	// auto-replies, the :days/:seconds memory) is for the deliverer.
	Vacation
	// Notify asks for a notification (RFC 5435, mailto: RFC 5436)
	// described by Action.Notify; like Vacation it does not cancel the
	// implicit keep, and sending it is the deliverer's.
	Notify
)

// VacationReply is what a vacation action asks for.
type VacationReply struct {
	Reason    string        // the reply's body text, or a whole MIME entity when MIME
	MIME      bool          // :mime: Reason is a MIME entity (headers + body)
	Subject   string        // :subject; "" means the deliverer's default ("Auto: " + original)
	From      string        // :from; "" means the recipient's address
	Addresses []string      // :addresses: the user's other addresses
	Handle    string        // :handle, or the one RFC 5230 §4.2 derives from the arguments
	Period    time.Duration // :days or :seconds, clamped to the limits; 0 = reply every time
}

// Action is one thing delivery must do with the message.
type Action struct {
	Kind     ActionKind
	Folder   string   // Store: a folder name as the script wrote it; see Inbox
	Flags    []string // Store: IMAP flags (\Seen…, keywords) to set
	Create   bool     // Store: create Folder when missing (fileinto :create)
	Implicit bool     // Store: the implicit keep (RFC 5228 §2.10.2)
	// Keep (Store): the keep command took it (a fileinto "INBOX" did not).
	// In a sequence of scripts, Pigeonhole defers an explicit keep: it
	// keeps the sequence going as the implicit keep does, and a later
	// script's fileinto, redirect or discard cancels it.
	Keep     bool
	Address  string         // Redirect: the address, local@domain
	Copy     bool           // Store/Redirect: with :copy
	Reason   string         // Reject: the text, CRLF line ends
	Extended bool           // Reject: ereject (refuse in SMTP, never a DSN, when possible)
	Vacation *VacationReply // Vacation: the reply asked for
	Notify   *Notification  // Notify: the notification asked for
	// Edit (Store, Redirect): the header as editheader had left it when
	// the action was taken (the last time, for a repeated one; the end of
	// the run for the implicit keep), nil when unedited: what the copy
	// carries (HeaderEdit.Pieces), as Pigeonhole stores the message as
	// it was then.
	Edit *HeaderEdit
}

// Inbox says whether a Store goes to the INBOX: "INBOX" in any case, or ""
// (Dovecot stores fileinto "" there too).
func (a Action) Inbox() bool {
	return a.Kind == Store && (a.Folder == "" || strings.EqualFold(a.Folder, "INBOX"))
}

// Result is the outcome of a run: the actions in the order the script took
// them. When Err is set, the script failed at runtime and Actions is a keep
// into INBOX (RFC 5228 §2.10.6): the message is never lost.
type Result struct {
	Actions []Action
	Err     error
	// Edit, when non-nil, is the message's header as editheader (RFC 5293)
	// left it at the end of the run: for the implicit keep (its Action.Edit)
	// and the next script of a sequence (RunOptions.Edit). nil after a
	// failed run: its keep stores the message as it came, as Pigeonhole's.
	Edit *HeaderEdit
	// DuplicateMarks are the ids the duplicate tests of the run ask to
	// remember (RFC 7352): the deliverer commits them
	// (DuplicateStore.Commit) once the message is stored, never before.
	DuplicateMarks []DuplicateMark
	// Work is the units of work the run spent (Limits.MaxRunWork).
	Work int64
	// Notes are what the run did otherwise than Pigeonhole would have,
	// for the deliverer's log (at most maxNotes, each once): a field
	// past what a script sees deleted without its value matched, too
	// long to be (unseen.go).
	Notes []string
}

// maxNotes bounds Result.Notes, which a deleteheader in a loop adds to
// once.
const maxNotes = 16

// note adds a note to the run's, once.
func (r *runner) note(s string) {
	if len(r.notes) >= maxNotes || slices.Contains(r.notes, s) {
		return
	}
	r.notes = append(r.notes, s)
}

// RuntimeError is a script failure while running: its place and reason.
type RuntimeError = Error

var spaceAroundAt = regexp.MustCompile(`[ \t]*@[ \t]*`)

// runState is what the scripts of one run (the main one and those it
// includes) share.
type runState struct {
	msg      *Message
	env      Envelope
	opts     RunOptions
	now      time.Time
	flags    []string // imap4flags' internal variable
	actions  []Action
	canceled bool // the implicit keep is canceled
	redirs   int
	headers  map[string][]string // decoded values by lower-case name: rules often read the same
	globals  map[string]string   // include's global variables
	edited   []headerField       // the header as editheader left it; nil while unedited
	// editShared: a snapshot (snap, or an earlier one) holds edited, which
	// the next edit copies first
	editShared bool
	snap       *HeaderEdit // edited as it is now, while no edit follows
	// drops: deleteheader's rules over the fields past what a script
	// sees (unseen.go); a snapshot shares it, an edit appends to a copy
	drops     []*unseenDrop
	sizeDelta int64 // what editheader added to the size (LF line ends)
	// editedBytes is the size of edited (LF line ends), within
	// maxEditedBytes; edited holds at most maxEditedFields fields
	editedBytes, maxEditedBytes int64
	maxEditedFields             int
	once                        map[*Script]bool // scripts included so far, for :once
	dups                        []DuplicateMark
	dupChecked                  []dupCacheEntry
	body                        *bodyCache
	regexps                     map[string]*regexp.Regexp // patterns made from variables, compiled once per run
	dates                       map[string]dateCacheEntry // parsed date field values
	spam                        map[[2]bool]string        // spamtest/virustest values, read once as in Pigeonhole
	parts                       []mimeEntity              // the MIME parts for foreverypart and :mime, once read
	tree                        *mimepart.Entity          // the body cut into its entities (mimeTree), once read
	extracted                   map[int]string            // extracttext's text of parts, by index in parts
	// loopIterations counts foreverypart's iterations (maxLoopIterations).
	loopIterations int
	notes          []string      // Result.Notes
	budget         budget        // what the run may still spend
	timeLimit      time.Duration // Limits.MaxRunTime, for the error
	at             Pos           // the command or test running, for the budget's error
}

// runner runs one script: its variables are its own.
type runner struct {
	*runState
	s     *Script
	vars  map[string]string
	match []string
	loops []loopFrame // the foreverypart loops running, innermost last
}

func (r *runner) decoded(name string) []string {
	key := strings.ToLower(name)
	if v, ok := r.headers[key]; ok {
		return v
	}
	var vals []string
	for _, v := range r.headerValues(name) {
		r.budget.spend(decodeCost * len(v))
		vals = append(vals, decodeHeader(v))
	}
	if r.headers == nil {
		r.headers = map[string][]string{}
	}
	r.headers[key] = vals
	return vals
}

var errStop = errors.New("stop")

// errReturn ends an included script (RFC 6609 return).
var errReturn = errors.New("return")

// RunWith runs the script on a message for one recipient.
func (s *Script) RunWith(msg *Message, env Envelope, opts RunOptions) Result {
	return s.RunContext(context.Background(), msg, env, opts)
}

// RunContext is RunWith stopped once ctx is done: the run fails (Result.Err
// wraps the context's cause), its actions a keep into INBOX, as when it
// exceeds Limits.MaxRunWork or Limits.MaxRunTime.
func (s *Script) RunContext(ctx context.Context, msg *Message, env Envelope, opts RunOptions) Result {
	now := opts.Now
	if now.IsZero() {
		now = time.Now()
	}
	if opts.Location == nil {
		opts.Location = time.Local
	}
	ctx, cancel := context.WithTimeoutCause(ctx, s.limits.MaxRunTime, ErrTimeLimit)
	defer cancel()
	st := &runState{msg: msg, env: env, opts: opts, now: now, globals: map[string]string{},
		budget: budget{max: s.limits.MaxRunWork, ctx: ctx}, timeLimit: s.limits.MaxRunTime}
	if e := opts.Edit; e != nil {
		st.edited, st.editShared, st.snap, st.drops = e.fields, true, e, e.drops
		st.sizeDelta, st.editedBytes = e.sizeDelta, e.editedBytes
		st.maxEditedBytes, st.maxEditedFields = e.maxBytes, e.maxFields
	}
	r := &runner{runState: st, s: s, vars: map[string]string{}}
	err := r.block(s.cmds)
	if (err == nil || err == errStop || err == errReturn) && r.budget.err != nil {
		// spent by the last command
		err = r.limitError()
	}
	if err != nil && err != errStop && err != errReturn {
		return Result{Actions: []Action{{Kind: Store, Folder: "INBOX", Implicit: true}}, Err: err, Work: r.budget.used}
	}
	if !r.canceled {
		r.store(Action{Kind: Store, Folder: "INBOX", Flags: r.flags, Implicit: true}) // a merge at worst: never fails
	}
	return Result{Actions: r.actions, DuplicateMarks: r.dups, Work: r.budget.used, Edit: r.snapshot(), Notes: r.notes}
}

func (r *runner) block(cmds []*Command) error {
	skipElse := false
	for _, c := range cmds {
		if err := r.step(c.Pos); err != nil {
			return err
		}
		n := r.s.nodes[c]
		switch c.Name {
		case "require":
		case "if", "elsif", "else":
			if c.Name == "if" {
				skipElse = false
			} else if skipElse {
				continue
			}
			ok := true
			if c.Name != "else" {
				var err error
				if ok, err = r.test(c.Tests[0]); err != nil {
					return err
				}
			}
			if ok {
				skipElse = true
				if err := r.block(c.Block); err != nil {
					return err
				}
			}
		case "stop":
			return errStop
		case "keep":
			r.canceled = true
			if _, err := r.store(Action{Kind: Store, Folder: "INBOX", Flags: r.flagArg(n), Keep: true}); err != nil {
				return r.errorf(c.Pos, "%v", err)
			}
		case "discard":
			r.canceled = true
			if err := r.add(Action{Kind: Discard}); err != nil {
				return r.errorf(c.Pos, "%v", err)
			}
		case "reject", "ereject":
			if err := r.reject(r.expand(n.pos[0].Strings[0]), c.Name == "ereject"); err != nil {
				return r.errorf(c.Pos, "%v", err)
			}
			r.canceled = true
		case "fileinto":
			_, cp := n.tags["copy"]
			_, create := n.tags["create"]
			folder := r.expand(n.pos[0].Strings[0])
			if err := checkFolder(folder); err != nil {
				return r.errorf(c.Pos, "fileinto %q: %v", folder, err)
			}
			added, err := r.store(Action{Kind: Store, Folder: folder, Flags: r.flagArg(n), Create: create, Copy: cp})
			if err != nil {
				return r.errorf(c.Pos, "%v", err)
			}
			if added && !cp {
				r.canceled = true
			}
		case "redirect":
			_, cp := n.tags["copy"]
			to := r.expand(n.pos[0].Strings[0])
			addr, err := parseRedirectAddress(to)
			if err != nil {
				return r.errorf(c.Pos, "redirect address %q is invalid: %v", to, err)
			}
			added, err := r.redirect(addr, cp)
			if err != nil {
				return r.errorf(c.Pos, "%v", err)
			}
			if added && !cp {
				r.canceled = true
			}
		case "setflag", "addflag", "removeflag":
			r.flagCommand(c.Name, n)
		case "set":
			r.set(n)
		case "vacation":
			if err := r.vacation(c, n); err != nil {
				return err
			}
		case "addheader":
			if err := r.addheader(c, n); err != nil {
				return err
			}
		case "deleteheader":
			if err := r.deleteheader(c, n); err != nil {
				return err
			}
		case "include":
			if err := r.include(n); err != nil {
				return err
			}
		case "return":
			return errReturn
		case "global":
		case "foreverypart":
			if err := r.foreverypart(c, n); err != nil {
				return err
			}
		case "break":
			return r.breakCommand(n)
		case "extracttext":
			r.extracttext(n)
		case "notify":
			if err := r.notify(c, n); err != nil {
				return err
			}
		case "error":
			// RFC 5463 §5: the script fails, its actions are dropped
			// and the implicit keep is made
			return r.errorf(c.Pos, "error: %s", r.expand(n.pos[0].Strings[0]))
		default:
			return r.errorf(c.Pos, "command %s cannot run", c.Name)
		}
	}
	return nil
}

func (r *runner) errorf(p Pos, format string, args ...any) error {
	return &Error{Line: p.Line, Column: p.Column, Reason: fmt.Sprintf(format, args...)}
}

// reject adds the Reject, which no other delivery may accompany.
func (r *runner) reject(reason string, extended bool) error {
	for _, b := range r.actions {
		switch b.Kind {
		case Reject:
			return errors.New("a second reject/ereject")
		case Store, Redirect:
			return errors.New("reject/ereject conflicts with an earlier keep, fileinto or redirect")
		case Vacation:
			// both would answer the sender
			return errors.New("reject/ereject conflicts with an earlier vacation")
		}
	}
	return r.add(Action{Kind: Reject, Reason: reason, Extended: extended})
}

func (r *runner) add(a Action) error {
	if a.Kind == Store || a.Kind == Redirect {
		for _, b := range r.actions {
			if b.Kind == Reject {
				return errors.New("keep, fileinto or redirect conflicts with an earlier reject/ereject")
			}
		}
	}
	if a.Kind == Discard {
		for _, b := range r.actions {
			if b.Kind == Discard {
				return nil
			}
		}
	}
	// The implicit keep is never refused: it is what keeps mail from being lost.
	if !a.Implicit && len(r.actions) >= r.s.limits.MaxActions {
		return fmt.Errorf("more than %d actions", r.s.limits.MaxActions)
	}
	r.actions = append(r.actions, a)
	return nil
}

func sameFolder(a, b string) bool {
	inbox := func(f string) bool { return f == "" || strings.EqualFold(f, "INBOX") }
	return a == b || (inbox(a) && inbox(b))
}

// store adds a Store, or merges it into the Store to the same folder taken
// earlier: its place stays, the later flags win, and, as in Pigeonhole, the
// repeat does not cancel the implicit keep (added false).
func (r *runner) store(a Action) (added bool, err error) {
	a.Flags = append([]string(nil), a.Flags...)
	a.Edit = r.snapshot()
	for i, b := range r.actions {
		if b.Kind == Store && sameFolder(a.Folder, b.Folder) {
			if a.Implicit {
				return false, nil
			}
			r.actions[i].Folder = a.Folder // Pigeonhole names it as the later one
			r.actions[i].Flags = a.Flags
			r.actions[i].Create = b.Create || a.Create
			r.actions[i].Copy = b.Copy && a.Copy
			r.actions[i].Keep = b.Keep || a.Keep
			r.actions[i].Edit = a.Edit
			return false, nil
		}
	}
	return true, r.add(a)
}

func (r *runner) redirect(addr string, cp bool) (added bool, err error) {
	for i, b := range r.actions {
		if b.Kind == Redirect && b.Address == addr {
			r.actions[i].Copy = b.Copy && cp
			r.actions[i].Edit = r.snapshot()
			return false, nil
		}
	}
	if r.redirs >= r.s.limits.MaxRedirects {
		return false, fmt.Errorf("more than %d redirects", r.s.limits.MaxRedirects)
	}
	r.redirs++
	return true, r.add(Action{Kind: Redirect, Address: addr, Copy: cp, Edit: r.snapshot()})
}

// checkFolder refuses names no mailbox can have; "" is the INBOX (Inbox).
func checkFolder(f string) error {
	switch {
	case !utf8.ValidString(f):
		return errors.New("folder name is not UTF-8")
	case len(f) > 255:
		return errors.New("folder name longer than 255 bytes")
	}
	for _, c := range f {
		if c < ' ' || c == 0x7f {
			return errors.New("control character in folder name")
		}
	}
	return nil
}

// parseRedirectAddress accepts an address (RFC 5228 §4.2; Pigeonhole also
// takes a display name or angle brackets) and returns its addr-spec in
// SMTP's form, as Pigeonhole redirects to it: the local part quoted only
// where it must be ("\"john doe\"@example.org", "plain@example.org" for
// "\"plain\"@example.org"), the domain in lower case.
func parseRedirectAddress(s string) (string, error) {
	s = strings.TrimSpace(s)
	a, err := mail.ParseAddress(s)
	if err != nil {
		// Pigeonhole takes white space around the @ (RFC 5322's CFWS).
		a, err = mail.ParseAddress(spaceAroundAt.ReplaceAllString(s, "@"))
		if err != nil {
			return "", err
		}
	}
	for i := 0; i < len(a.Address); i++ {
		if a.Address[i] >= 0x80 {
			return "", errors.New("not an ASCII address")
		}
	}
	at := strings.LastIndexByte(a.Address, '@')
	if at <= 0 || at == len(a.Address)-1 {
		return "", errors.New("missing local part or domain")
	}
	return quoteLocalPart(a.Address[:at]) + "@" + strings.ToLower(a.Address[at+1:]), nil
}

// strings returns an argument's strings, ${...} expanded when the script
// requires variables.
func (r *runner) strs(a Arg) []string {
	out := make([]string, len(a.Strings))
	for i, s := range a.Strings {
		out[i] = r.expand(s)
	}
	return out
}

// test runs a test within the run's budget: the work it did may have
// spent it, and its answer is then not to be acted on.
func (r *runner) test(t *Test) (bool, error) {
	if err := r.step(t.Pos); err != nil {
		return false, err
	}
	ok, err := r.evalTest(t)
	if err == nil && r.budget.err != nil {
		r.at = t.Pos
		return false, r.limitError()
	}
	return ok, err
}

func (r *runner) evalTest(t *Test) (bool, error) {
	n := r.s.nodes[t]
	switch t.Name {
	case "true":
		return true, nil
	case "false":
		return false, nil
	case "not":
		ok, err := r.test(t.Tests[0])
		return !ok, err
	case "allof", "anyof":
		if v, ok := r.s.constantTest(t); ok {
			// Pigeonhole folds these at compile time: anyof (X, true) is
			// true without running X, whose :matches sets no variables.
			return v, nil
		}
		all := t.Name == "allof"
		for _, sub := range t.Tests {
			ok, err := r.test(sub)
			if err != nil {
				return false, err
			}
			if ok != all {
				return ok, nil
			}
		}
		return all, nil
	case "exists":
		if _, ok := n.tags["mime"]; ok {
			return r.mimeExists(n, r.strs(n.pos[0])), nil
		}
		for _, h := range r.strs(n.pos[0]) {
			if !r.headerExists(h) {
				return false, nil
			}
		}
		return true, nil
	case "size":
		// the message as edited, as Pigeonhole measures it
		limit, size := n.pos[0].Number, uint64(max(r.msg.Size+r.sizeDelta, 0))
		if _, ok := n.tags["over"]; ok {
			return size > limit, nil
		}
		return size < limit, nil
	case "header":
		// :index counts the fields of all the names given, in that order
		// (Pigeonhole's reading)
		var values []string
		if _, ok := n.tags["mime"]; ok {
			values = r.mimeHeaderValues(n, r.strs(n.pos[0]))
		} else {
			for _, h := range r.strs(n.pos[0]) {
				values = append(values, r.decoded(h)...)
			}
		}
		values = pickIndex(n, values)
		return r.matchValues(n, values, r.strs(n.pos[1])), nil
	case "address", "envelope":
		part := "all"
		for _, p := range []string{"localpart", "domain", "user", "detail"} {
			if _, ok := n.tags[p]; ok {
				part = p
			}
		}
		var addrs []mailAddr
		var unparsed []string // values :all sees whole, other parts only when empty
		if t.Name == "address" {
			var fields []string // :index counts the fields of all the names
			_, inParts := n.tags["mime"]
			for _, h := range r.strs(n.pos[0]) {
				if !inParts {
					fields = append(fields, r.headerValues(h)...)
					continue
				}
				for _, part := range r.mimeFields(n, h) {
					fields = append(fields, part...)
				}
			}
			for _, v := range pickIndex(n, fields) {
				r.budget.spend(decodeCost * len(v))
				list, ok := headerAddresses(v)
				if !ok {
					unparsed = append(unparsed, list...)
					continue
				}
				for _, a := range list {
					addrs = append(addrs, splitAddrSpec(a))
				}
			}
		} else {
			for _, p := range r.strs(n.pos[0]) {
				var v string
				switch strings.ToLower(p) {
				case "from":
					v = r.env.From
				case "to":
					v = r.env.To
				case "auth": // no authenticated sender at local delivery
					continue
				default:
					return false, r.errorf(t.Pos, "envelope part %q is not supported", p)
				}
				if a, ok := parseEnvelopeAddress(v); ok {
					addrs = append(addrs, a)
				} else {
					unparsed = append(unparsed, v) // the null sender
				}
			}
		}
		var values []string
		for _, v := range unparsed {
			// as Pigeonhole: a value that is no address is seen whole
			// by :all, and by every part when empty
			if part == "all" || v == "" {
				values = append(values, v)
			}
		}
		for _, a := range addrs {
			if v, ok := a.part(part); ok {
				values = append(values, v)
			}
		}
		if m := r.newMatcher(n); m.typ == "count" {
			// Pigeonhole counts the addresses, with or without the part
			// (an address without a +detail still counts for :detail).
			return m.countMatch(len(addrs)+len(unparsed), r.strs(n.pos[1])), nil
		}
		return r.matchValues(n, values, r.strs(n.pos[1])), nil
	case "hasflag":
		var flags []string
		if n.pos[0].Kind == ArgTag {
			flags = r.flags
		} else {
			for _, v := range r.strs(n.pos[0]) {
				flags = append(flags, strings.Fields(r.getVar(v))...)
			}
		}
		// For :is and :contains, as in Pigeonhole, keys are flag lists
		// too: "a b" is the keys "a" and "b"; :matches and :value take
		// them whole.
		keys := r.strs(n.pos[1])
		if m := r.newMatcher(n); m.typ == "is" || m.typ == "contains" {
			var split []string
			for _, k := range keys {
				split = append(split, strings.Fields(k)...)
			}
			keys = split
		}
		return r.matchValues(n, flags, keys), nil
	case "string":
		var values []string
		for _, v := range r.strs(n.pos[0]) {
			if m := r.newMatcher(n); m.typ != "count" || v != "" {
				values = append(values, v)
			}
		}
		return r.matchValues(n, values, r.strs(n.pos[1])), nil
	case "body":
		return r.bodyTest(n)
	case "date", "currentdate":
		return r.dateTest(t, n)
	case "spamtest", "virustest":
		return r.spamTest(t, n)
	case "duplicate":
		return r.duplicateTest(t, n)
	case "ihave":
		return !n.ihaveMissing, nil
	case "environment":
		return r.environmentTest(n), nil
	case "valid_notify_method", "notify_method_capability":
		return r.notifyTest(t, n)
	}
	return false, r.errorf(t.Pos, "test %s cannot run", t.Name)
}

// matchValues is true when one value matches one key; for :matches the
// first such pair sets the match variables.
func (r *runner) matchValues(n *node, values, keys []string) bool {
	m := r.newMatcher(n)
	if m.typ == "count" {
		return m.countMatch(len(values), keys)
	}
	for _, v := range values {
		for _, k := range keys {
			ok, caps := m.match(v, k)
			if ok {
				if caps != nil && r.s.required["variables"] {
					r.match = caps
				}
				return true
			}
		}
	}
	return false
}

// values are the unfolded values of a header field, in order. The raw
// field is read, since textproto's values squeeze the white space around
// line breaks: Pigeonhole (Dovecot's header parser) only drops the line
// break, a tab starting the continuation line becoming a space.
func (m *Message) values(key string) []string {
	return headerFieldValues(m.Header, key)
}

// headerFieldValues are the unfolded values of the fields of h named key.
func headerFieldValues(h textproto.Header, key string) []string {
	var out []string
	fields := h.FieldsByKey(key)
	for fields.Next() {
		raw, err := fields.Raw()
		if err != nil {
			out = append(out, fields.Value())
			continue
		}
		v := string(raw)
		if i := strings.IndexByte(v, ':'); i >= 0 {
			v = v[i+1:]
		}
		out = append(out, strings.TrimLeft(unfold(strings.TrimRight(v, "\r\n")), " \t"))
	}
	return out
}

// unfold drops the line breaks of a folded value, a tab after one becoming a
// space.
func unfold(v string) string {
	if !strings.ContainsAny(v, "\r\n") {
		return v
	}
	b := make([]byte, 0, len(v))
	for i := 0; i < len(v); i++ {
		switch c := v[i]; {
		case c == '\r' && i+1 < len(v) && v[i+1] == '\n':
		case c == '\n':
			if i+1 < len(v) && v[i+1] == '\t' {
				b = append(b, ' ')
				i++
			}
		default:
			b = append(b, c)
		}
	}
	return string(b)
}

// decodeHeader decodes the RFC 2047 words of an unfolded header value.
func decodeHeader(v string) string {
	v = strings.TrimSpace(v)
	dec := mime.WordDecoder{CharsetReader: charset.Reader}
	if d, err := dec.DecodeHeader(v); err == nil {
		return d
	}
	return v
}

// headerAddresses returns the addr-specs of an address header, ok true; a
// value that is not a list of addresses (or a group without members) gives
// itself, ok false: Pigeonhole lets :all see it whole and other parts not.
func headerAddresses(v string) (list []string, ok bool) {
	p := mail.AddressParser{WordDecoder: &mime.WordDecoder{CharsetReader: charset.Reader}}
	parsed, err := p.ParseList(v)
	if err != nil || len(parsed) == 0 {
		return []string{strings.TrimSpace(v)}, false
	}
	out := make([]string, 0, len(parsed))
	for _, a := range parsed {
		out = append(out, a.Address)
	}
	return out, true
}

// mailAddr is an address split into its local part, as it is once
// unquoted ("john doe" of "\"john doe\"@example.org"), and its domain.
type mailAddr struct {
	local, domain string
	noDomain      bool // a local part alone (RCPT TO:<postmaster>)
}

// splitAddrSpec splits an addr-spec whose local part is unquoted
// already (net/mail's Address): at its last "@", since a domain has
// none.
func splitAddrSpec(s string) mailAddr {
	at := strings.LastIndexByte(s, '@')
	if at < 0 {
		return mailAddr{local: s, noDomain: true}
	}
	return mailAddr{local: s[:at], domain: s[at+1:]}
}

// parseEnvelopeAddress reads an envelope address as SMTP gives it (its
// local part quoted when it must be: "\"john doe\"@example.org"); false
// for the null sender, which is no address.
func parseEnvelopeAddress(s string) (mailAddr, bool) {
	if s == "" {
		return mailAddr{}, false
	}
	if s[0] != '"' {
		return splitAddrSpec(s), true
	}
	var local strings.Builder
	for i := 1; i < len(s); i++ {
		switch c := s[i]; c {
		case '\\':
			if i+1 < len(s) {
				i++
				local.WriteByte(s[i])
			}
		case '"':
			switch rest := s[i+1:]; {
			case rest == "":
				return mailAddr{local: local.String(), noDomain: true}, true
			case rest[0] == '@':
				return mailAddr{local: local.String(), domain: rest[1:]}, true
			}
			return splitAddrSpec(s), true // not a quoted local part after all
		default:
			local.WriteByte(c)
		}
	}
	return splitAddrSpec(s), true
}

// part is one address part, as Pigeonhole extracts it: :all the address
// with its local part quoted where it must be (Dovecot's
// smtp_address_encode), :localpart unquoted; :user and :detail split the
// local part at its first "+" (RFC 5233), and :detail has no value
// without one, nor :domain without a domain.
func (a mailAddr) part(part string) (string, bool) {
	switch part {
	case "all":
		if a.noDomain {
			return quoteLocalPart(a.local), true
		}
		return quoteLocalPart(a.local) + "@" + a.domain, true
	case "localpart":
		return a.local, true
	case "domain":
		return a.domain, !a.noDomain
	case "user":
		if i := strings.IndexByte(a.local, '+'); i >= 0 {
			return a.local[:i], true
		}
		return a.local, true
	case "detail":
		if i := strings.IndexByte(a.local, '+'); i >= 0 {
			return a.local[i+1:], true
		}
	}
	return "", false
}

// quoteLocalPart writes a local part as SMTP (RFC 5321) has it, as
// Dovecot's smtp_address_write: as it is when a dot-string (atoms
// separated by single dots; octets past ASCII count as atom text, RFC
// 6531), else quoted, '"' and '\\' escaped.
func quoteLocalPart(local string) string {
	dotString := local != ""
	for i := 0; i < len(local) && dotString; i++ {
		switch c := local[i]; {
		case c == '.':
			dotString = i > 0 && i < len(local)-1 && local[i-1] != '.'
		case !isAtext(c):
			dotString = false
		}
	}
	if dotString {
		return local
	}
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(local); i++ {
		if c := local[i]; c == '"' || c == '\\' {
			b.WriteByte('\\')
		}
		b.WriteByte(local[i])
	}
	b.WriteByte('"')
	return b.String()
}

// isAtext says whether c is RFC 5322's atext, or an octet past ASCII.
func isAtext(c byte) bool {
	switch {
	case c >= 0x80, 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-/=?^_`{|}~", c) >= 0
}
