package sieve

import (
	"time"
)

// CompileOptions are what a compile may cost and where include finds the
// scripts it names.
type CompileOptions struct {
	Limits Limits
	// Include resolves include (RFC 6609) at compile time; nil refuses
	// every include that is not :optional (as a missing script).
	Include IncludeLoader
	// Uploaded compiles a script a user is storing or checking
	// (ManageSieve's PUTSCRIPT, CHECKSCRIPT), as Pigeonhole's
	// SIEVE_COMPILE_FLAG_UPLOADED: a personal or global script include
	// names that does not exist (yet) is a warning, not an error.
	Uploaded bool
	// Extensions are those a script may require (Pigeonhole's
	// sieve_extensions); the zero value is Pigeonhole's default set.
	Extensions Extensions
	// GlobalExtensions (Pigeonhole's sieve_global_extensions; zero: none)
	// are those only global scripts may require: a personal one may not,
	// even when Extensions has it (Extensions.ForPersonal).
	GlobalExtensions GlobalExtensions
	// Global compiles a global script (the admin's: Pigeonhole's
	// sieve_before and sieve_after), which may require GlobalExtensions;
	// false, a personal one (the user's, as dovecot-lda's
	// SIEVE_COMPILE_FLAG_NOGLOBAL). Whatever the includer, a script
	// included :global is global and one included :personal is not, as
	// in Pigeonhole 0.5.19 (ext-include-common.c).
	Global bool
	// Warn is told what the compile takes but Pigeonhole warns of, in
	// Pigeonhole's order (a script's own warnings, then those of the
	// scripts it includes); nil: nobody is told. A compile that fails may
	// have warned of what it found before the error.
	Warn func(Warning)
	// Errors is told each error of a compile that fails, in Pigeonhole's
	// order among the warnings (Warn and Errors are called in one
	// sequence): the checks go on past a command or test in error, as
	// Pigeonhole's validator, up to MaxErrors errors; the parser stops at
	// its first. nil: only the first is known, CompileWith's error.
	Errors func(*Error)
	// MaxErrors bounds the errors a compile reports and looks for, as
	// Pigeonhole's error handlers do: ManageSieve's
	// managesieve_max_compile_errors (5), dovecot-lda's user log
	// (LDA_SIEVE_MAX_USER_ERRORS, 30); 0: no bound (sievec's).
	MaxErrors int
}

// Warning is something a compile takes but Pigeonhole warns of, in its
// words.
type Warning struct {
	Script       string // the included script it is in; "" the main one
	Line, Column int
	Reason       string
}

// CompileWith parses and checks a script and every script it includes.
// The error is an *Error; an error in an included script names it.
func CompileWith(src []byte, opts CompileOptions) (*Script, error) {
	c := &compilation{opts: opts, limits: opts.Limits.withDefaults()}
	s, diags, err := c.compile(src, includeKey{}, opts.Global, 0)
	for _, d := range diags {
		switch {
		case d.err != nil && opts.Errors != nil:
			opts.Errors(d.err)
		case d.err == nil && opts.Warn != nil:
			opts.Warn(d.w)
		}
	}
	if err != nil {
		return nil, err
	}
	return s, nil
}

// Compile parses and checks a script that includes no other, with the
// default extensions.
func Compile(src []byte, limits Limits) (*Script, error) {
	return CompileWith(src, CompileOptions{Limits: limits})
}

// RunOptions are what a run needs beside the message and the envelope.
type RunOptions struct {
	// Now is the time currentdate, duplicate and the date tests see; zero
	// means time.Now().
	Now time.Time
	// Location is the local time zone of date and currentdate without
	// :zone; nil means time.Local.
	Location *time.Location
	// Duplicates answers the duplicate test (RFC 7352); nil: nothing is
	// ever a duplicate. The run only reads it: the marks to record are in
	// Result.DuplicateMarks, for the deliverer to commit once the message
	// is stored.
	Duplicates DuplicateStore
	// SpamTest configures spamtest and virustest (RFC 5235); the zero
	// value reads rspamd's headers (DefaultSpamTest).
	SpamTest *SpamTestConfig
	// Vacation bounds the period of vacation replies; zero fields take
	// Pigeonhole's defaults.
	Vacation VacationLimits
	// Environment is what the environment test (RFC 5183) knows of the
	// server and the client; the zero value knows only the name, the
	// version, the location (MDA) and the phase (during).
	Environment Environment
	// Edit is the header as the scripts before this one in a sequence
	// (Pigeonhole's sieve_before, the user's, sieve_after) left it: their
	// Result.Edit, of the same Message. The run sees it and edits it
	// further. nil: the message's own header.
	Edit *HeaderEdit
}

// Run runs the script on a message for one recipient at the present time,
// without a duplicate store.
func (s *Script) Run(msg *Message, env Envelope) Result {
	return s.RunWith(msg, env, RunOptions{})
}
