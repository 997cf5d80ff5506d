// The interpreter: a run's shared state and the loop running a script's commands.

package sieve

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"time"

	"courriel/internal/mimepart"
)

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

	// Pigeonhole's parse of the header, and Content-Length
	// (denyContentLength): parsed once a deleteheader reached the header,
	// modified once an edit changed it, contentLengthDenied once both
	// held and the message's Content-Length fields were dropped
	parsed, modified, contentLengthDenied bool
}

// runner runs one script: its variables are its own.
type runner struct {
	*runState
	s     *Script
	vars  map[string]string
	match []string
	loops []loopFrame // the foreverypart loops running, innermost last
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
		st.parsed, st.modified, st.contentLengthDenied = e.parsed, e.modified, e.contentLengthDenied
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

// strings returns an argument's strings, ${...} expanded when the script
// requires variables.
func (r *runner) strs(a Arg) []string {
	out := make([]string, len(a.Strings))
	for i, s := range a.Strings {
		out[i] = r.expand(s)
	}
	return out
}
