package milter

import (
	"io"
	"os"
	"strings"
	"testing"

	gomilter "github.com/d--j/go-milter"
)

func TestParseMessageRoundTrip(t *testing.T) {
	for _, msg := range []string{
		"Subject: a\r\nX-Folded: one\r\n two\r\n\r\nbody\r\n",
		"Subject: a\r\n\r\n",
		"Subject: no body\r\n",
		"not a header line\r\nSubject: x\r\n\r\nbody\r\n",
		"Subject: a\r\nbody without separator\r\n",
		"",
	} {
		if got := roundTrip(t, msg); got != msg {
			t.Errorf("round trip of %q gave %q", msg, got)
		}
	}
}

// roundTrip parses msg and writes it back.
func roundTrip(t *testing.T, msg string) string {
	t.Helper()
	m := parse(t, msg)
	body, err := io.ReadAll(io.NewSectionReader(m.body, 0, m.body.Size()))
	if err != nil {
		t.Fatal(err)
	}
	return string(m.header()) + string(body)
}

func parse(t *testing.T, msg string) *message {
	t.Helper()
	m, err := parseMessage(strings.NewReader(msg))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// A header longer than maxHeaderBytes ends there for the milters; the
// message is the same bytes.
func TestParseLongHeader(t *testing.T) {
	field := "X-Long: " + strings.Repeat("v", 1000) + "\r\n"
	msg := strings.Repeat(field, maxHeaderBytes/len(field)+10) + "\r\nbody\r\n"
	m := parse(t, msg)
	if n := len(m.header()); n > maxHeaderBytes || n < maxHeaderBytes-len(field) {
		t.Errorf("header of %d bytes kept, bound %d", n, maxHeaderBytes)
	}
	if m.sep {
		t.Error("the blank line was found past the bound")
	}
	if got := roundTrip(t, msg); got != msg {
		t.Error("round trip changed the message")
	}
}

func TestFieldValue(t *testing.T) {
	m := parse(t, "X-Folded:  one\r\n\ttwo\r\n\r\n")
	if got := m.fields[0].value(false); got != " one\n\ttwo" {
		t.Errorf("value %q", got)
	}
	if got := m.fields[0].value(true); got != "  one\n\ttwo" {
		t.Errorf("leading value %q", got)
	}
}

func TestNewField(t *testing.T) {
	for _, tc := range []struct {
		name, value string
		want        string // "" for refused
	}{
		{"X-Spam", "Yes", "X-Spam: Yes\r\n"},
		{"X-Folded", "a\n\tb", "X-Folded: a\r\n\tb\r\n"},
		{"X-Folded", "a\r\n b", "X-Folded: a\r\n b\r\n"},
		{"X-Evil", "a\r\nBcc: x@example.org", ""},
		{"X-Evil", "a\nBcc: x@example.org", ""},
		{"X-Evil", "a\rb", ""},
		{"X-Evil", "a\x00b", ""},
		{"Bad Name", "v", ""},
		{"Bad:Name", "v", ""},
		{"", "v", ""},
		{strings.Repeat("N", maxNameLen+1), "v", ""},
		{"X-Long", strings.Repeat("v", maxValueLen+1), ""},
	} {
		f, ok := newField(tc.name, tc.value, false)
		if got := string(f.raw); ok != (tc.want != "") || got != tc.want {
			t.Errorf("newField(%q, %q) = %q, %v; want %q", tc.name, tc.value, got, ok, tc.want)
		}
	}
}

func TestHeaderChanges(t *testing.T) {
	m := parse(t, "Received: r\r\nSubject: s\r\nX-A: 1\r\nX-A: 2\r\n\r\nb\r\n")
	f := func(n, v string) field { x, _ := newField(n, v, false); return x }
	m.insert(0, f("X-Top", "t"))
	m.insert(2, f("X-Third", "3"))
	m.change("x-a", 2, nil)          // delete the second X-A
	nf := f("Subject", "new")        //
	m.change("SUBJECT", 1, &nf)      // case-insensitive
	m.change("X-Missing", 1, nil)    // nothing to delete
	added := f("X-Missing", "added") // a change of a missing field adds it
	m.change("X-Missing", 1, &added)
	m.add(f("X-End", "e"))
	want := "X-Top: t\r\nReceived: r\r\nX-Third: 3\r\nSubject: new\r\nX-A: 1\r\nX-Missing: added\r\nX-End: e\r\n\r\nb\r\n"
	if got := string(m.header()) + "b\r\n"; got != want {
		t.Errorf("got\n%q\nwant\n%q", got, want)
	}
}

// A replaced body gets CRLF line ends and loses its NULs, whatever the
// pieces it comes in (a CR at the end of one, its LF in the next), and
// goes to the spool past the threshold.
func TestBodyBufferCRLF(t *testing.T) {
	for in, want := range map[string]string{
		"a\nb\n":     "a\r\nb\r\n",
		"a\r\nb":     "a\r\nb",
		"a\rb\r":     "a\r\nb\r\n",
		"a\x00b\r\n": "ab\r\n",
		"a\r\n\r\n":  "a\r\n\r\n",
		"\r\r\n\n":   "\r\n\r\n\r\n",
	} {
		for _, piece := range []int{1, 2, 64} {
			for _, threshold := range []int64{1, 1 << 10} {
				b := newBodyBuffer(Spool{Create: func() (*os.File, error) { return os.CreateTemp(t.TempDir(), "body") }, Threshold: threshold})
				for i := 0; i < len(in); i += piece {
					if err := b.write([]byte(in[i:min(len(in), i+piece)])); err != nil {
						t.Fatal(err)
					}
				}
				c := b.content()
				got, _ := io.ReadAll(io.NewSectionReader(c, 0, c.Size()))
				if string(got) != want {
					t.Errorf("%q in pieces of %d: %q, want %q", in, piece, got, want)
				}
				if b.spooled() != (threshold < int64(len(want))) {
					t.Errorf("%q, threshold %d: spooled %v", in, threshold, b.spooled())
				}
				b.close()
			}
		}
	}
	b := newBodyBuffer(Spool{Limit: 4})
	if err := b.write([]byte("abc\n")); err != errBodyTooLarge {
		t.Errorf("a body over the limit: %v", err)
	}
}

func TestParseReply(t *testing.T) {
	for _, tc := range []struct {
		act  gomilter.Action
		want Reply
	}{
		{gomilter.Action{Type: gomilter.ActionReject}, Reply{550, "5.7.1", "Command rejected"}},
		{gomilter.Action{Type: gomilter.ActionTempFail}, Reply{451, "4.7.1", "Service unavailable - try again later"}},
		{gomilter.Action{Type: gomilter.ActionRejectWithCode, SMTPCode: 554, SMTPReply: "554 5.7.1 Gtube pattern"}, Reply{554, "5.7.1", "Gtube pattern"}},
		{gomilter.Action{Type: gomilter.ActionRejectWithCode, SMTPCode: 550, SMTPReply: "550-5.7.1 first\r\n550 5.7.1 second"}, Reply{550, "5.7.1", "first second"}},
		// A status of the wrong class is text, and the class default is used.
		{gomilter.Action{Type: gomilter.ActionRejectWithCode, SMTPCode: 451, SMTPReply: "451 5.7.1 later"}, Reply{451, "4.7.1", "5.7.1 later"}},
		{gomilter.Action{Type: gomilter.ActionRejectWithCode, SMTPCode: 550, SMTPReply: "550 bad\x01text"}, Reply{550, "5.7.1", "bad?text"}},
		{gomilter.Action{Type: gomilter.ActionRejectWithCode, SMTPCode: 421, SMTPReply: "421"}, Reply{421, "4.7.1", "Service unavailable - try again later"}},
	} {
		if got := parseReply(&tc.act); *got != tc.want {
			t.Errorf("parseReply(%q) = %+v, want %+v", tc.act.SMTPReply, *got, tc.want)
		}
	}
}

func TestIsSpamFlag(t *testing.T) {
	for _, tc := range []struct {
		name, value string
		want        bool
	}{
		{"X-Spam", "Yes", true},
		{"x-spam", " yes ", true},
		{"X-Spam-Flag", "YES", true},
		{"X-Spam", "No", false},
		{"X-Spam", "yesterday", false},
		{"X-Spam-Status", "Yes, score=9", false},
		{"X-Spamd-Result", "yes", false},
	} {
		if got := isSpamFlag(tc.name, tc.value); got != tc.want {
			t.Errorf("isSpamFlag(%q, %q) = %v", tc.name, tc.value, got)
		}
	}
}

func TestParseAddress(t *testing.T) {
	for _, tc := range []struct {
		in, network, addr string
	}{
		{"inet:127.0.0.1:11332", "tcp", "127.0.0.1:11332"},
		{"inet:localhost:11332", "tcp", "localhost:11332"},
		{"inet6:[::1]:11332", "tcp6", "[::1]:11332"},
		{"127.0.0.1:8891", "tcp", "127.0.0.1:8891"},
		{"unix:/run/rspamd/milter.sock", "unix", "/run/rspamd/milter.sock"},
		{"unix:relative.sock", "", ""},
		{"inet:127.0.0.1", "", ""},
		{"inet::11332", "", ""},
		{"inet:127.0.0.1:0", "", ""},
		{"inet:127.0.0.1:99999", "", ""},
		{"nonsense", "", ""},
	} {
		n, a, err := ParseAddress(tc.in)
		if (err == nil) != (tc.network != "") || n != tc.network || a != tc.addr {
			t.Errorf("ParseAddress(%q) = %q, %q, %v; want %q, %q", tc.in, n, a, err, tc.network, tc.addr)
		}
	}
}
