package sieve

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestParseValues(t *testing.T) {
	src := "# comment\r\nset /* c */ \"a\\\\b\\\"c\\d\" [\"x\", \"y\"] 10K 2m 1G 7 :Tag text: # c\r\n" +
		"line\r\n..dot\r\n.x\r\n.\r\n;"
	cmds, err := Parse([]byte(src), Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if len(cmds) != 1 || cmds[0].Name != "set" {
		t.Fatalf("commands: %+v", cmds)
	}
	a := cmds[0].Args
	want := []Arg{
		{Kind: ArgStrings, Strings: []string{`a\b"cd`}},
		{Kind: ArgStrings, Strings: []string{"x", "y"}, List: true},
		{Kind: ArgNumber, Number: 10 << 10},
		{Kind: ArgNumber, Number: 2 << 20},
		{Kind: ArgNumber, Number: 1 << 30},
		{Kind: ArgNumber, Number: 7},
		{Kind: ArgTag, Tag: "tag"},
		{Kind: ArgStrings, Strings: []string{"line\r\n.dot\r\n.x\r\n"}},
	}
	if len(a) != len(want) {
		t.Fatalf("got %d arguments, want %d: %+v", len(a), len(want), a)
	}
	for i := range want {
		g, w := a[i], want[i]
		if g.Kind != w.Kind || g.Number != w.Number || g.Tag != w.Tag || g.List != w.List ||
			strings.Join(g.Strings, "|") != strings.Join(w.Strings, "|") {
			t.Errorf("argument %d: got %+v, want %+v", i, g, w)
		}
	}
	if p := a[1].Pos; p.Line != 2 || p.Column != 25 {
		t.Errorf("list at %d:%d, want 2:25", p.Line, p.Column)
	}
}

// TestCompileErrors checks the place and reason of each error, as
// ManageSieve's CHECKSCRIPT will show them.
func TestCompileErrors(t *testing.T) {
	tests := []struct {
		src          string
		line, column int
		reason       string
	}{
		{"keep", 1, 5, "expected ';' or '{' after command keep, found end of script"},
		{"keep;\n  \"x\";", 2, 3, "expected a command, found string"},
		{"if true { keep;", 1, 16, "expected '}' or a command"},
		{"/* open", 1, 1, "unterminated comment"},
		{"redirect \"a@b\n", 1, 10, "unterminated string"},
		{"set text: x\n", 1, 11, "text: must be followed by the end of the line"},
		{"keep;\nset text:\nabc\n", 2, 5, "unterminated text: string"},
		{"if size :over 17179869184G { keep; }", 1, 15, "number too large"},
		{"if size :over 18446744073709551616 { keep; }", 1, 15, "number too large"},
		{"if abcdefghijabcdefghijabcdefghijabc { keep; }", 1, 4, "identifier longer than 32 characters"},
		{"if true :abcdefghijabcdefghijabcdefghijabc { keep; }", 1, 9, "identifier longer than 32 characters"},
		{"if size :over 10X { keep; }", 1, 17, "after a number"},
		{"keep;\n: x;", 2, 1, "a tag needs a name"},
		{"keep @;", 1, 6, "unexpected character '@'"},
		{"require \"x-frop\";", 1, 9, "unknown Sieve capability `x-frop'"},
		{"keep;\nrequire \"fileinto\";", 2, 1, "require must come before"},
		{"fileinto \"x\";", 1, 1, `needs require "fileinto"`},
		{"frobnicate;", 1, 1, "unknown command frobnicate"},
		{"if frob { keep; }", 1, 4, "unknown test frob"},
		{"exists \"x\";", 1, 1, "exists is a test, not a command"},
		{"if keep { stop; }", 1, 4, "keep is a command, not a test"},
		{"else { keep; }", 1, 1, "else must follow if or elsif"},
		{"if true; ", 1, 1, "if needs a block"},
		{"keep { }", 1, 1, "keep takes no block"},
		{"if header :is :contains \"a\" \"b\" { }", 1, 15, "exclude each other"},
		{"if header :over \"a\" \"b\" { }", 1, 11, "unknown tag :over for test header"},
		{"if header \"a\" { }", 1, 4, "needs 2 arguments, found 1"},
		{"if size 10 { }", 1, 4, "size needs :over or :under"},
		{"redirect [\"a@b.c\", \"d@e.f\"];", 1, 10, "must be a string"},
		{"redirect \"no at sign\";", 1, 10, "redirect address"},
		{"if header :comparator \"i;nope\" \"a\" \"b\" { }", 1, 23, `unknown comparator "i;nope"`},
		{"if header :comparator \"i;ascii-numeric\" \"a\" \"b\" { }", 1, 23, "needs require \"comparator-i;ascii-numeric\""},
		{"require \"relational\";\nif header :value \"gx\" \"a\" \"b\" { }", 2, 18, "invalid relational operator"},
		{"require \"copy\";\nkeep :copy;", 2, 6, "unknown tag :copy for command keep"},
		{"redirect :copy \"a@b.c\";", 1, 10, `tag :copy of command redirect needs require "copy"`},
		{"require \"variables\";\nset \"1a\" \"x\";", 2, 5, "invalid variable name"},
		{"require \"envelope\";\nif envelope \"x-frob\" \"x\" { }", 2, 13, "envelope part \"x-frob\" is not supported"},
		{"if address \"subject\" \"x\" { }", 1, 12, "header \"subject\" is not allowed for the address test"},
		{"if not (true, false) { }", 1, 4, "not needs one test, not a test list"},
		{"if allof true { }", 1, 4, "allof needs a test list"},
		{"if (true) { }", 1, 1, "if needs one test, not a test list"},
		{"if allof() { }", 1, 10, "expected a test, found ')'"},
		{"require \"imap4flags\";\nsetflag \"v\" \"x\";", 2, 1, `needs require "variables"`},
	}
	for _, tc := range tests {
		_, err := compileAll([]byte(tc.src), Limits{})
		var se *Error
		if !errors.As(err, &se) {
			t.Errorf("%q: got %v, want an *Error", tc.src, err)
			continue
		}
		if se.Line != tc.line || se.Column != tc.column || !strings.Contains(se.Reason, tc.reason) {
			t.Errorf("%q: got %d:%d %q, want %d:%d containing %q", tc.src, se.Line, se.Column, se.Reason, tc.line, tc.column, tc.reason)
		}
	}
}

func TestLimits(t *testing.T) {
	lim := Limits{MaxScriptSize: 100, MaxNesting: 3, MaxStringLength: 10}
	tests := []struct {
		src    string
		reason string
	}{
		{"keep;" + strings.Repeat(" ", 100), "script larger than 100 bytes"},
		{"if true { if true { if true { if true { keep; } } } }", "blocks nested deeper than 3"},
		{"if not not not true { keep; }", "tests nested deeper than 3"},
		{"if anyof(anyof(anyof(true))) { keep; }", "tests nested deeper than 3"},
		{"redirect \"0123456789a\";", "string longer than 10 bytes"},
		{"redirect text:\n0123456789\n.\n;", "string longer than 10 bytes"},
	}
	for _, tc := range tests {
		_, err := compileAll([]byte(tc.src), lim)
		if err == nil || !strings.Contains(err.Error(), tc.reason) {
			t.Errorf("%q: got %v, want %q", tc.src, err, tc.reason)
		}
	}
	for _, ok := range []string{"if true { if true { if true { keep; } } }", "if not not true { keep; }",
		"if anyof(anyof(true)) { if true { if true { keep; } } }",
		"if size :under 18446744073709551615 { keep; }", "if size :under 16G { keep; }"} {
		if _, err := compileAll([]byte(ok), lim); err != nil {
			t.Errorf("%q, within the limits: %v", ok, err)
		}
	}
}

func FuzzCompile(f *testing.F) {
	for _, s := range []string{
		"require [\"fileinto\", \"variables\"]; if header :matches \"subject\" \"*x?\" { fileinto \"${1}\"; }",
		"set text:\n.a\n.\n;", "/* x */ # y\nkeep;", "if allof(not true, anyof(false)) { stop; } else { discard; }",
		"require [\"imap4flags\",\"relational\",\"comparator-i;ascii-numeric\"]; if header :count \"gt\" :comparator \"i;ascii-numeric\" \"x\" \"1\" { addflag \"a\"; }",
		"require [\"editheader\", \"index\", \"variables\"]; addheader :last \"X-A\" \"${1}\"; deleteheader :index 1 :last :matches \"subject\" \"*\";",
		"require [\"regex\", \"date\", \"variables\"]; if date :zone \"+0100\" :regex \"date\" \"iso8601\" \"^(.*)T\" { set \"d\" \"${1}\"; }",
		"require [\"body\", \"vacation-seconds\", \"duplicate\"]; if body :content \"text\" :contains \"x\" { vacation :seconds 5 :handle \"h\" \"away\"; } if duplicate :last { stop; }",
		"require [\"include\", \"variables\", \"spamtestplus\", \"virustest\"]; global \"g\"; include :once :optional \"a\"; if spamtest :percent \"0\" { return; }",
		"require [\"ihave\", \"environment\"]; if ihave \"x\" { x :y; } elsif environment :matches \"host\" \"*\" { error \"e\"; }",
		"require [\"foreverypart\", \"mime\", \"extracttext\", \"variables\"]; foreverypart :name \"l\" { extracttext :first 3 \"t\"; if header :mime :anychild :param \"name\" \"content-type\" \"x\" { break :name \"l\"; } }",
		"require [\"enotify\", \"variables\"]; set :encodeurl \"u\" \"a b\"; if valid_notify_method \"mailto:a@b.c\" { notify :importance \"1\" :message \"m\" \"mailto:a@b.c?subject=${u}&cc=d@e.f\"; }",
	} {
		f.Add([]byte(s))
	}
	msg, err := ReadMessage(strings.NewReader("From: a@b.c\r\nTo: d@e.f\r\nSubject: hello world\r\n\r\nbody\r\n"))
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, src []byte) {
		var all []*Error
		s, err := CompileWith(src, CompileOptions{Extensions: AllExtensions(), Limits: Limits{MaxNesting: 16}, Include: mapLoader{"a": "keep;", "global/b": "discard;"},
			Errors: func(e *Error) { all = append(all, e) }, MaxErrors: 10})
		if err != nil {
			var se *Error
			if !errors.As(err, &se) {
				t.Fatalf("error %v is not an *Error", err)
			}
			if len(all) == 0 || all[0] != se || len(all) > 10 {
				t.Fatalf("error %v, errors reported %v", se, all)
			}
			for _, se := range all {
				if se.Line < 1 || se.Column < 1 || se.Line > strings.Count(string(src), "\n")+1 {
					t.Fatalf("error outside the source: %v", se)
				}
			}
			return
		}
		if len(all) > 0 {
			t.Fatalf("compiled, with errors %v", all)
		}
		res := s.RunWith(msg, Envelope{From: "a@b.c", To: "d@e.f"}, RunOptions{Now: time.Unix(1<<31, 0)})
		if res.Err != nil && (len(res.Actions) != 1 || res.Actions[0].Folder != "INBOX") {
			t.Fatalf("failed run without a keep into INBOX: %+v", res)
		}
		if h := res.Edit.Header(); h != nil {
			if _, err := ReadMessage(bytes.NewReader(append(h, "body\r\n"...))); err != nil || !bytes.HasSuffix(h, []byte("\r\n\r\n")) {
				t.Fatalf("edited header %q does not parse: %v", h, err)
			}
		}
		// Mail is dropped only by an explicit discard.
		delivered, discarded := false, false
		for _, a := range res.Actions {
			delivered = delivered || a.Kind == Store || a.Kind == Redirect
			discarded = discarded || a.Kind == Discard
		}
		if !delivered && !discarded {
			t.Fatalf("neither delivered nor discarded: %+v", res.Actions)
		}
	})
}

// FuzzRunMessage runs a script using every test on hostile messages.
func FuzzRunMessage(f *testing.F) {
	for _, s := range []string{testMessage, "Subject: =?utf-8?q?caf=C3=A9?=\r\nTo: undisclosed:;\r\n\r\n",
		"From: \"a\\\" <b@c>, =?x?b?%%?=\n\tfolded\nX: \xff\xfe\n\nbody"} {
		f.Add([]byte(s), "a@b.c", "d+e@f.g")
	}
	script, err := compileAll([]byte(`require ["envelope", "subaddress", "variables", "relational", "fileinto", "imap4flags"];
if anyof (address :matches :user ["from", "to", "cc"] "*?*", header :contains "subject" "é",
          envelope :detail :matches "to" "*", header :count "gt" "x" "1", exists "date") {
	fileinto "${1}.${2}";
}
if size :over 100 { addflag "big"; }
if address :domain :value "ge" "to" "m" { redirect "x@example.com"; }`), Limits{})
	if err != nil {
		f.Fatal(err)
	}
	extScript, err := compileAll([]byte(`require ["body", "date", "index", "regex", "editheader", "spamtestplus", "virustest", "duplicate", "variables", "fileinto", "relational", "comparator-i;ascii-numeric"];
if body :content ["text", "multipart", "message/rfc822", ""] :contains "x" { fileinto "c"; }
if body :text :matches "*a*" { fileinto "t"; }
if body :raw :regex "(a+)+b" { fileinto "r"; }
if date :index 1 :last :originalzone :matches "date" "iso8601" "*" { fileinto "d-${1}"; }
if header :regex ["subject", "from"] "^(.*)(é|x)" { addheader :last "X-Seen" "${1}${2}"; }
deleteheader :index 2 :matches "received" "*";
if spamtest :percent :value "ge" :comparator "i;ascii-numeric" "50" { fileinto "Junk"; }
if virustest :value "ge" :comparator "i;ascii-numeric" "3" { fileinto "Virus"; }
if duplicate :header "message-id" { discard; }`), Limits{})
	if err != nil {
		f.Fatal(err)
	}
	f.Add([]byte("Content-Type: multipart/mixed; boundary=b\r\n\r\npre\r\n--b\r\nContent-Type: text/html\r\nContent-Transfer-Encoding: base64\r\n\r\nPGI+eDwvYj4=\r\n--b\r\nContent-Type: message/rfc822\r\n\r\nSubject: x\r\n\r\ninner\r\n--b--\r\nepi\r\n"), "a@b.c", "d@e.f")
	mimeScript, err := compileAll([]byte(`require ["foreverypart", "mime", "extracttext", "variables", "fileinto", "imap4flags"];
foreverypart { foreverypart { if header :mime :anychild :param ["filename", "name"] :matches ["content-disposition", "content-type"] "*.exe" { fileinto "x"; } }
	extracttext :first 100 "t"; if string :contains "${t}" "a" { addflag "a"; }
	if address :mime :anychild :domain "from" "b" { break; } }`), Limits{})
	if err != nil {
		f.Fatal(err)
	}
	f.Add([]byte("X-Spamd-Result: default: True [99.5 / 15.00]\r\nDate: Fri, 31 Dec 9999 23:59:60 +9999\r\n\r\n"), "", "x")
	f.Add([]byte(" first: folded\r\nno colon\r\n\tfolded\r\n: no name\r\nX Y: z\r\nX-\xc3\xa9: v\r\nSubject: s\r\n\r\n"), "a@b.c", "d@e.f")
	f.Fuzz(func(t *testing.T, raw []byte, from, to string) {
		// any header reads, its fields placed (a line the parser
		// cannot read is left out of what a script sees: namedField)
		msg, err := ReadMessage(bytes.NewReader(raw))
		if err != nil || msg.layout == nil {
			t.Fatalf("ReadMessage: %v, layout %v", err, msg != nil && msg.layout != nil)
		}
		res := script.Run(msg, Envelope{From: from, To: to})
		if len(res.Actions) == 0 {
			t.Fatal("no action")
		}
		res = extScript.RunWith(msg, Envelope{From: from, To: to}, RunOptions{Now: time.Unix(1<<31, 0)})
		// a runtime error (a NUL taken into addheader's value) keeps
		if len(res.Actions) == 0 || res.Err != nil && !res.Actions[0].Inbox() {
			t.Fatalf("extensions script: %+v", res)
		}
		if res = mimeScript.Run(msg, Envelope{From: from, To: to}); len(res.Actions) == 0 {
			t.Fatalf("mime script: %+v", res)
		}
	})
}
