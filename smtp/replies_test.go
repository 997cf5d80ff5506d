package smtp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"syscall"
	"testing"

	gosmtp "github.com/emersion/go-smtp"

	"courriel/delivery"
	"courriel/directory"
)

// TestReplyFor is the table of error → reply (STYLE habit 3). Each row
// states the code class too, so a helper that always answered 5.x.x (or
// 4.x.x) fails here.
func TestReplyFor(t *testing.T) {
	t.Parallel()
	wrap := func(err error) error { return fmt.Errorf("layer: %w", err) }
	for _, tc := range []struct {
		name  string
		st    stage
		err   error
		code  int
		ec    gosmtp.EnhancedCode
		exact *gosmtp.SMTPError // when set, that very reply
	}{
		{"policy reply passes", stageRcpt, replyRelayDenied, 554, gosmtp.EnhancedCode{5, 7, 1}, replyRelayDenied},
		{"wrapped policy reply", stageMail, wrap(replyAuthRequired), 530, gosmtp.EnhancedCode{5, 7, 0}, replyAuthRequired},
		{"rcpt not found", stageRcpt, wrap(directory.ErrNotFound), 550, gosmtp.EnhancedCode{5, 1, 1}, nil},
		{"rcpt unavailable", stageRcpt, wrap(directory.ErrUnavailable), 451, gosmtp.EnhancedCode{4, 3, 0}, nil},
		{"rcpt alias expansion limit", stageRcpt, wrap(directory.ErrExpansionLimit), 451, gosmtp.EnhancedCode{4, 6, 0}, replyAliasExpansion},
		{"mail unavailable", stageMail, directory.ErrUnavailable, 451, gosmtp.EnhancedCode{4, 3, 0}, nil},
		{"mail not found is not 550 5.1.1", stageMail, directory.ErrNotFound, 451, gosmtp.EnhancedCode{4, 3, 0}, nil},
		{"auth bad credentials", stageAuth, wrap(directory.ErrInvalidCredentials), 535, gosmtp.EnhancedCode{5, 7, 8}, nil},
		{"auth unavailable", stageAuth, wrap(directory.ErrUnavailable), 454, gosmtp.EnhancedCode{4, 7, 0}, nil},
		{"auth unexpected", stageAuth, errors.New("x"), 454, gosmtp.EnhancedCode{4, 7, 0}, nil},
		{"too large", stageData, errTooLarge, 552, gosmtp.EnhancedCode{5, 3, 4}, nil},
		{"bare newline", stageData, errBareNewline, 554, gosmtp.EnhancedCode{5, 6, 0}, nil},
		{"NUL", stageData, errNUL, 554, gosmtp.EnhancedCode{5, 6, 0}, nil},
		{"disk full sentinel", stageData, &delivery.Error{Temporary: true, Err: delivery.ErrDiskFull}, 452, gosmtp.EnhancedCode{4, 3, 1}, nil},
		{"ENOSPC", stageData, wrap(syscall.ENOSPC), 452, gosmtp.EnhancedCode{4, 3, 1}, nil},
		{"EDQUOT", stageData, wrap(syscall.EDQUOT), 452, gosmtp.EnhancedCode{4, 3, 1}, nil},
		{"bad maildir is temporary", stageData, &delivery.Error{Temporary: true, Err: delivery.ErrBadMaildir}, 451, gosmtp.EnhancedCode{4, 3, 0}, nil},
		{"permanent delivery", stageData, &delivery.Error{Temporary: false, Reason: "r"}, 554, gosmtp.EnhancedCode{5, 6, 0}, nil},
		{"temporary delivery", stageData, &delivery.Error{Temporary: true, Reason: "r"}, 451, gosmtp.EnhancedCode{4, 3, 0}, nil},
		{"canceled", stageData, context.Canceled, 451, gosmtp.EnhancedCode{4, 3, 0}, nil},
		{"deadline", stageData, wrap(context.DeadlineExceeded), 451, gosmtp.EnhancedCode{4, 3, 0}, nil},
		{"client vanished", stageData, io.ErrUnexpectedEOF, 451, gosmtp.EnhancedCode{4, 3, 0}, nil},
		{"anything else", stageData, errors.New("open /var/vmail/x: permission denied"), 451, gosmtp.EnhancedCode{4, 3, 0}, replyTempFailure},
	} {
		r := replyFor(tc.st, tc.err)
		if r == nil || r.Code != tc.code || r.EnhancedCode != tc.ec {
			t.Errorf("%s: got %+v, want %d %v", tc.name, r, tc.code, tc.ec)
			continue
		}
		if r.Code/100 != r.EnhancedCode[0] {
			t.Errorf("%s: class of %d and %v differ", tc.name, r.Code, r.EnhancedCode)
		}
		if tc.exact != nil && r != tc.exact {
			t.Errorf("%s: got %+v, want %+v", tc.name, r, tc.exact)
		}
		if tc.err != nil && r.Message == tc.err.Error() {
			t.Errorf("%s: error text sent to the client", tc.name)
		}
	}
	if replyFor(stageData, nil) != nil {
		t.Error("nil error gave a reply")
	}
}

func TestWithID(t *testing.T) {
	t.Parallel()
	r := withID(replyTempFailure, "ABC")
	if r.Message != replyTempFailure.Message+" (id ABC)" || replyTempFailure.Message == r.Message {
		t.Errorf("withID: %q (shared reply changed: %q)", r.Message, replyTempFailure.Message)
	}
	ok := rep(250, gosmtp.EnhancedCode{2, 0, 0}, "ok")
	if withID(ok, "ABC") != ok {
		t.Error("id added to a 2xx reply")
	}
}

func TestIDsUnique(t *testing.T) {
	t.Parallel()
	clk := &fakeClock{}
	g := &idGen{now: clk.Now}
	seen := map[string]bool{}
	for range 20000 {
		id := g.next()
		if len(id) != 16 || seen[id] {
			t.Fatalf("id %q: len %d, seen %v", id, len(id), seen[id])
		}
		seen[id] = true
	}
}
