package sieve

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

func runLimited(t *testing.T, src, msg string, limits Limits) Result {
	t.Helper()
	return runContext(t, context.Background(), src, msg, limits, RunOptions{})
}

func runContext(t *testing.T, ctx context.Context, src, msg string, limits Limits, opts RunOptions) Result {
	t.Helper()
	s, err := compileAll([]byte(src), limits)
	if err != nil {
		t.Fatalf("compile %q: %v", src, err)
	}
	m, err := ReadMessage(strings.NewReader(msg))
	if err != nil {
		t.Fatal(err)
	}
	return s.RunContext(ctx, m, Envelope{From: "a@example.com", To: "b@example.org"}, opts)
}

// checkStopped: the run failed with cause, at a place in the script, its
// actions a keep into INBOX.
func checkStopped(t *testing.T, name string, res Result, cause error) {
	t.Helper()
	var e *Error
	if !errors.As(res.Err, &e) || !errors.Is(res.Err, cause) || e.Line == 0 {
		t.Errorf("%s: error %v, want an *Error at a line, wrapping %v", name, res.Err, cause)
		return
	}
	if len(res.Actions) != 1 || !res.Actions[0].Inbox() || !res.Actions[0].Implicit {
		t.Errorf("%s: actions %+v, want the implicit keep alone", name, res.Actions)
	}
}

// TestRunBudget: a run past its work limit fails as any runtime error:
// the keep into INBOX, the reason and place in Result.Err. Under the
// default limits the QA round's script (foreverypart, extracttext, body
// :raw on thousands of parts) gives its answer as before.
func TestRunBudget(t *testing.T) {
	qa := strings.Replace(siblingParts(4000), "part 3999", "part qqq", 1)
	big := "Subject: big\r\n\r\n" + strings.Repeat("aaaaaaaaaaaaaaa\r\n", 1<<16) // 1 MiB
	deep := func(levels int) string {
		var b strings.Builder
		for l := 0; l < levels; l++ {
			// "l1." and "l10.": no boundary is a prefix of another
			fmt.Fprintf(&b, "Content-Type: multipart/mixed; boundary=l%d.\r\n\r\n--l%d.\r\n", l, l)
		}
		b.WriteString("Content-Type: text/html\r\n\r\n" + strings.Repeat("<p>text</p>\r\n", 20000))
		for l := levels - 1; l >= 0; l-- {
			fmt.Fprintf(&b, "--l%d.--\r\n", l)
		}
		return b.String()
	}(20)
	nested := `require ["foreverypart", "extracttext", "variables"];
		foreverypart { foreverypart { foreverypart { foreverypart { extracttext "x"; } } } }`
	tests := []struct {
		name, src, msg string
		limits         Limits
		want           string // the actions; "" for a run stopped by ErrWorkLimit
	}{
		{"the QA script under the default limits", qaLoopScript, qa, Limits{}, "store INBOX"},
		{"the QA script past a small work limit", qaLoopScript, qa, Limits{MaxRunWork: 1_000_000}, ""},
		{"nested loops over a deep message", nested, deep, Limits{MaxRunWork: 10_000_000}, ""},
		{"a key from each part, the body scanned for each",
			`require ["foreverypart", "extracttext", "variables", "body"];
			foreverypart { extracttext "x"; if body :raw :contains "${x}!" { discard; } }`,
			siblingParts(100) + strings.Repeat("filler line\r\n", 1<<16), Limits{MaxRunWork: 10_000_000}, ""},
		{"one :matches whose search goes back at every octet",
			`require "body"; if body :raw :matches "*` + strings.Repeat("a", 1000) + `b*" { discard; }`,
			"Subject: a line\r\n\r\n" + strings.Repeat("a", 1<<20), Limits{MaxRunWork: 50_000_000}, ""},
		{"one :regex over a large body", `require ["body", "regex"]; if body :raw :regex "a+b" { discard; }`,
			big, Limits{MaxRunWork: 10_000_000}, ""},
		{"many commands", `require "variables";` + strings.Repeat(`set "a" "${a}";`, 10000),
			"Subject: x\r\n\r\nx\r\n", Limits{MaxRunWork: 100_000}, ""},
		{"many commands under the default limits", `require "variables";` + strings.Repeat(`set "a" "${a}";`, 10000),
			"Subject: x\r\n\r\nx\r\n", Limits{}, "implicit store INBOX"},
	}
	for _, tc := range tests {
		res := runLimited(t, tc.src, tc.msg, tc.limits)
		if tc.want == "" {
			checkStopped(t, tc.name, res, ErrWorkLimit)
			if res.Err != nil && !strings.Contains(res.Err.Error(), "execution exceeded the work limit") {
				t.Errorf("%s: error %q does not say why", tc.name, res.Err)
			}
			continue
		}
		if got := strings.Join(canonicalResult(res), "|"); res.Err != nil || got != tc.want {
			t.Errorf("%s: got %q (%v), want %q", tc.name, got, res.Err, tc.want)
		}
	}
}

// TestForeverypartWorkLinear: the QA script's work grows with the parts,
// not with parts × size as when every part's body test read the whole
// message again.
func TestForeverypartWorkLinear(t *testing.T) {
	work := func(parts int) int64 {
		res := runLimited(t, qaLoopScript, siblingParts(parts), Limits{})
		if res.Err != nil {
			t.Fatal(res.Err)
		}
		return res.Work
	}
	small, large := work(2000), work(8000)
	if large > 5*small {
		t.Errorf("work %d for 2,000 parts, %d for 8,000: not linear", small, large)
	}
	t.Logf("work: %d units for 2,000 parts, %d for 8,000", small, large)
}

// cancelingStore cancels the run's context when the script asks it.
type cancelingStore struct{ cancel context.CancelFunc }

func (c cancelingStore) Seen(id DuplicateID, now time.Time) (bool, error) {
	c.cancel()
	return false, nil
}

func (c cancelingStore) Commit(marks []DuplicateMark, now time.Time) error { return nil }

// TestRunContext: a run stops once its context is done (the delivery
// cancelled), and past Limits.MaxRunTime.
func TestRunContext(t *testing.T) {
	loop := `require ["duplicate", "foreverypart", "variables"];
		if duplicate :uniqueid "x" { discard; }
		foreverypart { set "a" "${a}"; set "b" "${a}"; set "c" "${b}"; }`
	msg := siblingParts(4000)
	full := runLimited(t, loop, msg, Limits{})
	if full.Err != nil {
		t.Fatal(full.Err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	res := runContext(t, ctx, loop, msg, Limits{}, RunOptions{})
	checkStopped(t, "cancelled before", res, context.Canceled)

	ctx, cancel = context.WithCancel(context.Background())
	defer cancel()
	res = runContext(t, ctx, loop, msg, Limits{}, RunOptions{Duplicates: cancelingStore{cancel}})
	checkStopped(t, "cancelled while running", res, context.Canceled)
	if res.Work > full.Work/4 {
		t.Errorf("cancelled while running: %d units spent, the whole run %d", res.Work, full.Work)
	}

	// A run that would take seconds, past a time limit of a nanosecond.
	scan := `require ["foreverypart", "extracttext", "variables", "body"];
		foreverypart { extracttext "x"; if body :raw :contains "${x}!" { discard; } }`
	res = runLimited(t, scan, siblingParts(10000)+strings.Repeat("filler line\r\n", 1<<18),
		Limits{MaxRunWork: 1 << 62, MaxRunTime: time.Nanosecond})
	checkStopped(t, "time limit", res, ErrTimeLimit)
	if res.Err != nil && !strings.Contains(res.Err.Error(), "execution exceeded the time limit (1ns)") {
		t.Errorf("time limit: error %q does not say why", res.Err)
	}
}
