// What a run is given and gives back: the envelope, the actions delivery must take, the Result.

package sieve

import (
	"slices"
	"strings"
	"time"
)

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
	// the action was taken (the first time, for a repeated one, as
	// Pigeonhole: RFC 5293 lets the implementation pick; the end of the
	// run for the implicit keep), nil when unedited: what the copy
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
