package sieve

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// A run's budget. A script meets messages its author never saw: one
// written to match each part of a message (foreverypart) must not hold a
// core for minutes when a stranger sends ten thousand parts. A run
// therefore counts its work and stops, failing as any runtime error does
// (a keep into INBOX, RFC 5228 §2.10.6), past Limits.MaxRunWork units, or
// past Limits.MaxRunTime (Pigeonhole's sieve_max_cpu_time, measured here
// as wall-clock time: Go cannot read a goroutine's CPU time), or once the
// context given to RunContext is done.
//
// A unit is priced as about a nanosecond of one core, or less: matching
// a value costs its length and the key's (a unit an octet), a command or
// test stepCost, an octet decoded, folded, parsed or compared by :matches
// decodeCost, an octet a regular expression reads regexCost. The count
// is deterministic, so a limit in units is testable; the time limit is
// the backstop for work it prices wrongly, on a slow or busy machine.

// DefaultMaxRunWork is Limits.MaxRunWork's default: a few seconds of one
// core at most, thousands of times what an ordinary script spends.
const DefaultMaxRunWork = 4_000_000_000

// DefaultMaxRunTime is Limits.MaxRunTime's default, Pigeonhole's
// sieve_max_cpu_time.
const DefaultMaxRunTime = 30 * time.Second

// ErrWorkLimit and ErrTimeLimit are what a run stopped by Limits.MaxRunWork
// or Limits.MaxRunTime wraps (Result.Err, an *Error): errors.Is tells them
// from the context's error (context.Canceled, context.DeadlineExceeded or
// its cause) when the run was stopped by RunContext's context.
var (
	ErrWorkLimit = errors.New("sieve: the run exceeded its work limit")
	ErrTimeLimit = errors.New("sieve: the run exceeded its time limit")
)

const (
	stepCost   = 256 // a command or a test, beside the strings it matches
	decodeCost = 4   // an octet decoded, folded or parsed
	regexCost  = 40  // an octet a regular expression reads (Go's NFA)
	// checkEvery is how often (in units) the time and the context are
	// looked at: about every 100 µs.
	checkEvery = 1 << 17
)

// budget is what a run may still spend. The zero budget (nil pointer)
// spends without limit.
type budget struct {
	used, max int64
	nextCheck int64
	ctx       context.Context
	// err is why the run must stop, once it must: the first one sticks,
	// and the run fails at the next command or test (runner.step).
	err error
}

// spend counts n units; false once the run must stop.
func (b *budget) spend(n int) bool {
	if b == nil {
		return true
	}
	if b.err != nil {
		return false
	}
	b.used += int64(n)
	if b.used > b.max {
		b.err = ErrWorkLimit
		return false
	}
	if b.used >= b.nextCheck {
		b.nextCheck = b.used + checkEvery
		if b.ctx.Err() != nil {
			b.err = context.Cause(b.ctx)
			return false
		}
	}
	return true
}

// step counts a command or test at p, and fails the run there when its
// budget is spent (by it or by the work before it).
func (r *runner) step(p Pos) error {
	r.at = p
	if r.budget.spend(stepCost) {
		return nil
	}
	return r.limitError()
}

// limitError is the runtime error of a run stopped by its budget, at the
// command or test it had reached.
func (r *runner) limitError() error {
	cause := r.budget.err
	var reason string
	switch {
	case errors.Is(cause, ErrWorkLimit):
		reason = fmt.Sprintf("execution exceeded the work limit (%d units)", r.budget.max)
	case errors.Is(cause, ErrTimeLimit):
		reason = fmt.Sprintf("execution exceeded the time limit (%v)", r.timeLimit)
	default:
		reason = fmt.Sprintf("execution stopped: %v", cause)
	}
	return &Error{Line: r.at.Line, Column: r.at.Column, Reason: reason, Err: cause}
}
