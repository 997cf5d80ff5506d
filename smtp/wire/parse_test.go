package wire

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
)

func TestParseCommand(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ line, verb, arg string }{
		{"ehlo client.example", "EHLO", "client.example"},
		{"MAIL FROM:<a@b>  SIZE=10 ", "MAIL", "FROM:<a@b>  SIZE=10"},
		{"QUIT", "QUIT", ""},
		{"STARTTLS  ", "STARTTLS", ""},
		{"X-FOO bar", "X-FOO", "bar"},
	} {
		v, a, err := ParseCommand([]byte(tc.line))
		if err != nil || v != tc.verb || a != tc.arg {
			t.Errorf("%q: %q %q %v", tc.line, v, a, err)
		}
	}
	for _, bad := range []string{"", "  ", "MA\x00IL x", "MAIL:FROM", strings.Repeat("A", 17)} {
		if _, _, err := ParseCommand([]byte(bad)); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// TestParsePath: go-smtp v0.26.0's rules, which the policy relies on.
func TestParsePath(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in, addr, rest string
		ok             bool
	}{
		{"<a@b.example>", "a@b.example", "", true},
		{"<a@b.example> SIZE=1", "a@b.example", " SIZE=1", true},
		{"a@b.example", "a@b.example", "", true},
		{"<@relay.example,@r2:a@b.example>", "a@b.example", "", true},
		{`<"x@y"@z.example>`, `"x@y"@z.example`, "", true},
		{`<"a\"b"@z.example>`, `"a\"b"@z.example`, "", true},
		{`<"a\ b\\c"@z.example>`, `"a b\\c"@z.example`, "", true},  // canonical quoted-pairs
		{`<"john.doe"@z.example>`, "john.doe@z.example", "", true}, // a quoted dot-atom is the dot-atom
		{`<"a..b"@z.example>`, `"a..b"@z.example`, "", true},
		{`<""@z.example>`, "", "", false},
		{"<Postmaster>", "Postmaster", "", true},
		{"<postmaster> NOTIFY=NEVER", "postmaster", " NOTIFY=NEVER", true},
		{"<xomail>", "xomail", "", true}, // bare: qualified by the caller, as Postfix does
		{"<first.last> NOTIFY=NEVER", "first.last", " NOTIFY=NEVER", true},
		{"<.x>", "", "", false},
		{"<x y>", "", "", false},
		{"<bad address>", "", "", false},
		{"<a@>", "", "", false},
		{"<@b.example>", "", "", false},
		{"<a@b.example", "", "", false},
		{"<>", "", "", false},
		{`<"unclosed@b>`, "", "", false},
		// What broken clients wrap the path in, as Postfix takes it
		// (strict_rfc821_envelopes = no): the innermost address, read
		// strictly.
		{"< a@b.example >", "a@b.example", "", true},
		{"<a@b.example\t> NOTIFY=NEVER", "a@b.example", " NOTIFY=NEVER", true},
		{"<<a@b.example>>", "a@b.example", "", true},
		{"<<a@b.example> > SIZE=1", "a@b.example", " SIZE=1", true},
		{"<Joe Smith <a@b.example>>", "a@b.example", "", true},
		{`<"Smith, Joe" <a@b.example>> NOTIFY=NEVER`, "a@b.example", " NOTIFY=NEVER", true},
		{"< @r.example:a@b.example >", "a@b.example", "", true},
		{"<Joe <a@b.example>", "", "", false},    // the outer bracket never closes
		{"<Joe <a b@b.example>>", "", "", false}, // the address itself still strict
		{"<Joe <>>", "", "", false},
		{"< >", "", "", false},
		{"Joe <a@b.example>", "", "", false}, // no brackets around: as Postfix, refused
	} {
		addr, rest, err := ParseForwardPath(tc.in)
		if (err == nil) != tc.ok || addr != tc.addr || (tc.ok && rest != tc.rest) {
			t.Errorf("%q: %q %q %v", tc.in, addr, rest, err)
		}
		if strings.HasPrefix(tc.in, "<") && strings.Contains(tc.in, "@") {
			raddr, rrest, rerr := ParseReversePath(tc.in)
			if raddr != addr || rrest != rest || (rerr == nil) != (err == nil) {
				t.Errorf("ParseReversePath(%q) = %q %q %v, ParseForwardPath %q %q %v", tc.in, raddr, rrest, rerr, addr, rest, err)
			}
		}
	}
	if a, rest, err := ParseReversePath("<> BODY=8BITMIME"); a != "" || rest != " BODY=8BITMIME" || err != nil {
		t.Errorf("null reverse path: %q %q %v", a, rest, err)
	}
	if _, _, err := ParseReversePath("<postmaster>"); err == nil {
		t.Error("MAIL FROM:<postmaster> without a domain accepted")
	}
}

func TestParseParams(t *testing.T) {
	t.Parallel()
	p, err := ParseParams(" size=10  SMTPUTF8 body=8BITMIME")
	if err != nil || len(p) != 3 || p[0] != (Param{"SIZE", "10"}) || p[1] != (Param{"SMTPUTF8", ""}) || p[2] != (Param{"BODY", "8BITMIME"}) {
		t.Fatalf("%+v %v", p, err)
	}
	for _, bad := range []string{"SIZE=1", " A=b=c", " =x", " SIZE=", strings.Repeat(" K", 17)} {
		if _, err := ParseParams(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	if v, err := DecodeXtext("a+2Bb+3D"); v != "a+b=" || err != nil {
		t.Errorf("xtext: %q %v", v, err)
	}
	for _, bad := range []string{"+", "+2", "+2g", "a+zz", "a+2b", "a=b", "a\x7fb", "caf\xc3\xa9"} {
		if _, err := DecodeXtext(bad); err == nil {
			t.Errorf("xtext %q accepted", bad)
		}
	}
}

func TestWriter(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	w := NewWriter(&out)
	w.Reply(250, Enhanced{2, 1, 5}, "Ok")
	w.Reply(451, Enhanced{}, "later")
	w.Plain(354, "go")
	w.Plain(250, "mx.test", "PIPELINING", "SIZE 10")
	w.Reply(550, Enhanced{5, 7, 1}, "a\r\nb")
	w.Plain(334, "")
	if out.Len() != 0 {
		t.Fatal("written before Flush")
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	want := "250 2.1.5 Ok\r\n451 4.0.0 later\r\n354 go\r\n250-mx.test\r\n250-PIPELINING\r\n250 SIZE 10\r\n" +
		"550-a?\r\n550 5.7.1 b\r\n334 \r\n"
	if out.String() != want {
		t.Fatalf("got %q\nwant %q", out.String(), want)
	}
}

// FuzzCommandReader: any bytes from a client, read as commands and parsed
// as the server does, never panic, never give a line over the limit, never
// grow the buffer past it, and a DATA message in the middle never loses
// its place in the stream.
func FuzzCommandReader(f *testing.F) {
	for _, s := range []string{
		"EHLO x\r\nMAIL FROM:<a@b> SIZE=10\r\nRCPT TO:<@r:c@d>\r\nDATA\r\n..x\r\n.\r\nQUIT\r\n",
		"RCPT TO:<\"a\\\"@b\"@c>\r\nMAIL FROM:<> AUTH=a+2Bb@c\r\n",
		"DATA\r\n\r\n.\rx\n.\n\r\n.\r\nNOOP\n",
		strings.Repeat("x", 300) + "\r\nNOOP\r\n",
	} {
		f.Add([]byte(s), uint8(7))
	}
	f.Fuzz(func(t *testing.T, in []byte, seg uint8) {
		const limit = 256
		r := NewReader(&segments{data: in, sizes: []int{1 + int(seg)}}, limit, nil)
		for range 1000 {
			line, err := r.ReadLine()
			if err != nil {
				if !errors.Is(err, ErrLineTooLong) && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
					t.Fatalf("unexpected error %v", err)
				}
				break
			}
			if len(line) > limit {
				t.Fatalf("line of %d octets", len(line))
			}
			verb, arg, err := ParseCommand(line)
			if err != nil {
				continue
			}
			switch verb {
			case "MAIL", "RCPT":
				if rest, ok := CutPrefixFold(arg, verb[:2]); ok {
					_, rest, err := ParseForwardPath(strings.TrimLeft(rest, "OM:TO"))
					if err == nil {
						if ps, err := ParseParams(rest); err == nil {
							for _, p := range ps {
								DecodeXtext(p.Value)
							}
						}
					}
				}
			case "DATA":
				if _, err := io.Copy(io.Discard, r.DataReader()); err != nil {
					return
				}
			}
			if cap(r.buf) > 40<<10 { // io.Copy reads 32 KiB at a time: what follows a message is put back
				t.Fatalf("buffer grew to %d", cap(r.buf))
			}
		}
	})
}
