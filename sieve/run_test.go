package sieve

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

const testMessage = "From: Alice <alice@example.com>\r\nTo: bob@example.org\r\nSubject: Hello\r\n\r\nbody\r\n"

func runScript(t *testing.T, src string, env Envelope) Result {
	t.Helper()
	s, err := compileAll([]byte(src), Limits{})
	if err != nil {
		t.Fatalf("compile %q: %v", src, err)
	}
	msg, err := ReadMessage(strings.NewReader(testMessage))
	if err != nil {
		t.Fatal(err)
	}
	return s.Run(msg, env)
}

func TestRunResults(t *testing.T) {
	env := Envelope{From: "alice@example.com", To: "bob+x@example.org"}
	tests := []struct {
		name, src string
		env       *Envelope
		want      []string
	}{
		{"implicit keep", "", nil, []string{"implicit store INBOX"}},
		{"null sender", "require \"envelope\"; if envelope :is \"from\" \"\" { discard; }",
			&Envelope{From: "", To: "bob@example.org"}, []string{"discard"}},
		{"non-null sender", "require \"envelope\"; if envelope :is \"from\" \"\" { discard; }", nil,
			[]string{"implicit store INBOX"}},
		{"implicit keep carries flags", "require \"imap4flags\"; addflag [\"\\\\Seen\", \"a b\"]; removeflag \"a\";",
			nil, []string{"implicit store INBOX flags=\\seen,b"}},
		{"fileinto :copy keeps the implicit keep", "require [\"fileinto\",\"copy\"]; fileinto :copy \"X\";",
			nil, []string{"store X", "implicit store INBOX"}},
		{"stop keeps the implicit keep", "stop; discard;", nil, []string{"implicit store INBOX"}},
		{"redirect domain case", "redirect \"Joe <Joe@Example.NET>\"; redirect \"Joe@example.net\";", nil,
			[]string{"redirect Joe@example.net"}},
		{"elsif chain", "if false { discard; } elsif true { keep; } else { discard; } if false { discard; } else { stop; }",
			nil, []string{"store INBOX"}},
		{"detail absent", "require [\"subaddress\",\"envelope\"]; if envelope :detail \"from\" \"\" { discard; }",
			nil, []string{"implicit store INBOX"}},
		{"empty detail", "require [\"subaddress\",\"envelope\"]; if envelope :detail \"to\" \"\" { discard; }",
			&Envelope{From: "a@b.c", To: "bob+@example.org"}, []string{"discard"}},
	}
	var full []string
	for i := 0; i < 32; i++ {
		full = append(full, fmt.Sprintf("store f%d", i))
	}
	tests = append(tests, struct {
		name, src string
		env       *Envelope
		want      []string
	}{"implicit keep past the action limit", "require [\"fileinto\", \"copy\"];" + numbered("fileinto :copy \"f%d\";", 32),
		nil, append(full, "implicit store INBOX")})
	for _, tc := range tests {
		e := env
		if tc.env != nil {
			e = *tc.env
		}
		res := runScript(t, tc.src, e)
		if res.Err != nil {
			t.Errorf("%s: %v", tc.name, res.Err)
			continue
		}
		if got := canonicalResult(res); strings.Join(got, "|") != strings.Join(tc.want, "|") {
			t.Errorf("%s: got %q, want %q", tc.name, got, tc.want)
		}
	}
}

// TestRunErrorKeeps: a failing script delivers to INBOX and says where it
// failed; the actions taken before the failure are dropped.
func TestRunErrorKeeps(t *testing.T) {
	tests := []struct{ src, reason string }{
		{"require [\"reject\", \"ereject\"]; reject \"a\";\nereject \"b\";", "a second reject/ereject"},
		{"require [\"ereject\", \"fileinto\"]; ereject \"a\";\nfileinto \"b\";", "conflicts with an earlier reject"},
		{"require [\"fileinto\",\"variables\"];\nfileinto \"A\";\nset \"x\" \"bad\";\nredirect \"${x}\";", "redirect address"},
		{"redirect \"a@x.y\"; redirect \"b@x.y\"; redirect \"c@x.y\"; redirect \"d@x.y\";\n redirect \"e@x.y\";", "more than 4 redirects"},
		{"require [\"fileinto\", \"copy\"];" + numbered("fileinto :copy \"f%d\";", 32) + "\ndiscard;", "more than 32 actions"},
		// Pigeonhole, in C, stores into "a"; a NUL in a name is an error here.
		{"require [\"fileinto\",\"encoded-character\"];\nfileinto \"a${unicode:0}b\";", "control character"},
	}
	for _, tc := range tests {
		res := runScript(t, tc.src, Envelope{From: "a@b.c", To: "d@e.f"})
		var se *Error
		if !errors.As(res.Err, &se) || !strings.Contains(se.Reason, tc.reason) {
			t.Errorf("%q: error %v, want %q", tc.src, res.Err, tc.reason)
			continue
		}
		if wantLine := strings.Count(tc.src, "\n") + 1; se.Line != wantLine {
			t.Errorf("%q: error on line %d, want %d", tc.src, se.Line, wantLine)
		}
		if len(res.Actions) != 1 || res.Actions[0].Kind != Store || res.Actions[0].Folder != "INBOX" {
			t.Errorf("%q: actions %+v, want a keep into INBOX", tc.src, res.Actions)
		}
	}
}

func TestGlobMatch(t *testing.T) {
	tests := []struct {
		value, pattern string
		ok             bool
		caps           []string
	}{
		{"hello", "h*o", true, []string{"hello", "ell"}},
		{"hello", "*l*", true, []string{"hello", "he", "lo"}},
		{"a.b.c", "*.*", true, []string{"a.b.c", "a", "b.c"}},
		{"abc", "???", true, []string{"abc", "a", "b", "c"}},
		{"abc", "????", false, nil},
		{"", "*", true, []string{"", ""}},
		{"", "?", false, nil},
		{"a*b", `a\*b`, true, []string{"a*b"}},
		{"axb", `a\*b`, false, nil},
		{"a?", `*\?`, true, []string{"a?", "a"}},
		{`a\b`, `a\\b`, true, []string{`a\b`}},
		{`ends\`, `*\`, true, []string{`ends\`, "ends"}},
		{"été", "??t??", true, []string{"été", "\xc3", "\xa9", "\xc3", "\xa9"}},
		{"été", "?t?", false, nil},
		// Pigeonhole 2.3.19 says true: after a ?, its matcher skips the
		// text up to the next * (so "J?rg*" matches "jane+sieve@…").
		{"abxdef", "a?c*", false, nil},
		{"abcdef", "a?c*", true, []string{"abcdef", "b", "def"}},
		{"xaaab", "*a?b", true, []string{"xaaab", "xa", "a"}},
		{"ab", "a**b", true, []string{"ab", "", ""}},
		{"mississippi", "*ss*ss*", true, []string{"mississippi", "mi", "i", "ippi"}},
	}
	for _, tc := range tests {
		ok, caps := globMatch(tc.value, tc.pattern, false, nil)
		if ok != tc.ok || strings.Join(caps, "|") != strings.Join(tc.caps, "|") {
			t.Errorf("%q :matches %q: got %v %q, want %v %q", tc.value, tc.pattern, ok, caps, tc.ok, tc.caps)
		}
	}
}

func TestNumericComparator(t *testing.T) {
	m := matcher{comparator: "i;ascii-numeric"}
	tests := []struct {
		a, b string
		want int
	}{
		{"10", "9", 1}, {"007", "7", 0}, {"12abc", "12", 0}, {"x", "99999999999999999999999", 1},
		{"x", "y", 0}, {"0", "", -1}, {"123456789012345678901234567890", "123456789012345678901234567891", -1},
	}
	for _, tc := range tests {
		if got := m.compare(tc.a, tc.b); got != tc.want {
			t.Errorf("compare(%q, %q) = %d, want %d", tc.a, tc.b, got, tc.want)
		}
	}
}

func TestReadMessageSize(t *testing.T) {
	crlf := "Subject: x\r\n\r\nline\r\nbare\rCR\r\n"
	lf := strings.ReplaceAll(crlf, "\r\n", "\n")
	for _, raw := range []string{crlf, lf} {
		m, err := ReadMessage(strings.NewReader(raw))
		if err != nil {
			t.Fatal(err)
		}
		if m.Size != int64(len(lf)) {
			t.Errorf("size of %q: %d, want %d", raw, m.Size, len(lf))
		}
	}
}

func TestVariableExpansionBounded(t *testing.T) {
	src := "require [\"variables\",\"fileinto\"];\nset \"a\" \"" + strings.Repeat("x", 4000) + "\";\n" +
		"set \"b\" \"" + strings.Repeat("${a}", 1000) + "\";\nfileinto \"${b}${b}\";"
	res := runScript(t, src, Envelope{From: "a@b.c", To: "d@e.f"})
	// the folder is 8000 bytes, over the 255 a folder name may have
	if res.Err == nil || !strings.Contains(res.Err.Error(), "longer than 255") {
		t.Fatalf("got %+v", res)
	}
}

func TestEreject(t *testing.T) {
	res := runScript(t, "require \"ereject\"; ereject text:\nNo thanks.\n.\n;", Envelope{From: "a@b.c", To: "d@e.f"})
	if res.Err != nil || len(res.Actions) != 1 {
		t.Fatalf("got %+v", res)
	}
	if a := res.Actions[0]; a.Kind != Reject || !a.Extended || a.Reason != "No thanks.\r\n" {
		t.Errorf("got %+v", a)
	}
}

func TestActionInbox(t *testing.T) {
	for folder, want := range map[string]bool{"INBOX": true, "inbox": true, "": true, "INBOX.a": false, "Archive": false} {
		if got := (Action{Kind: Store, Folder: folder}).Inbox(); got != want {
			t.Errorf("Inbox() of %q = %v, want %v", folder, got, want)
		}
	}
	if (Action{Kind: Redirect}).Inbox() {
		t.Error("a redirect is not the INBOX")
	}
	// fileinto "" and keep are one store
	res := runScript(t, "require \"fileinto\"; fileinto \"\"; keep;", Envelope{From: "a@b.c", To: "d@e.f"})
	if len(res.Actions) != 1 || !res.Actions[0].Inbox() {
		t.Errorf("got %+v", res.Actions)
	}
}

// TestConcurrentRuns backs the promise of doc.go: one Script, many Runs at
// once (run with -race).
func TestConcurrentRuns(t *testing.T) {
	s, err := compileAll([]byte(`require ["variables", "fileinto", "imap4flags"];
if header :matches "subject" "*" { set "s" "${1}"; addflag "seen"; fileinto "F-${s}"; }`), Limits{})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan string)
	for i := 0; i < 8; i++ {
		go func() {
			msg, err := ReadMessage(strings.NewReader(fmt.Sprintf("Subject: m%d\r\n\r\n", i)))
			if err != nil {
				done <- err.Error()
				return
			}
			res := s.Run(msg, Envelope{From: "a@b.c", To: "d@e.f"})
			if len(res.Actions) != 1 {
				done <- fmt.Sprintf("actions %+v", res.Actions)
				return
			}
			done <- res.Actions[0].Folder + " " + strings.Join(res.Actions[0].Flags, ",")
		}()
	}
	got := map[string]bool{}
	for i := 0; i < 8; i++ {
		got[<-done] = true
	}
	for i := 0; i < 8; i++ {
		if want := fmt.Sprintf("F-m%d seen", i); !got[want] {
			t.Errorf("missing %q in %v", want, got)
		}
	}
}

func TestUnfold(t *testing.T) {
	for in, want := range map[string]string{
		"a\r\n  b":    "a  b",
		"a\n\tb":      "a b",
		"a\r\n\tb\tc": "a b\tc",
		"plain":       "plain",
		"a\rb":        "a\rb",
	} {
		if got := unfold(in); got != want {
			t.Errorf("unfold(%q) = %q, want %q", in, got, want)
		}
	}
}
