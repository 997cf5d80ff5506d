package sieve

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fiftyRules is the benchmark script: 50 rules filing by list,
// sender and subject.
func fiftyRules() []byte {
	var b strings.Builder
	b.WriteString(`require ["fileinto", "imap4flags", "variables", "envelope", "subaddress"];` + "\n")
	for i := 0; i < 50; i++ {
		switch i % 5 {
		case 0:
			fmt.Fprintf(&b, "if header :contains \"list-id\" \"list%d.example.com\" { fileinto \"Lists.l%d\"; stop; }\n", i, i)
		case 1:
			fmt.Fprintf(&b, "if address :is :domain \"from\" \"sender%d.example\" { addflag \"$s%d\"; }\n", i, i)
		case 2:
			fmt.Fprintf(&b, "if header :matches \"subject\" \"*[ticket-%d]*\" { fileinto \"Tickets.${2}\"; }\n", i)
		case 3:
			fmt.Fprintf(&b, "if envelope :detail \"to\" \"tag%d\" { fileinto \"Tag%d\"; }\n", i, i)
		case 4:
			fmt.Fprintf(&b, "if allof (exists \"x-spam-flag\", header :is \"x-spam-flag\" \"YES%d\") { fileinto \"Junk\"; }\n", i)
		}
	}
	return []byte(b.String())
}

func BenchmarkCompile50Rules(b *testing.B) {
	src := fiftyRules()
	b.SetBytes(int64(len(src)))
	for b.Loop() {
		if _, err := compileAll(src, Limits{}); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkRun50Rules(b *testing.B) {
	s, err := compileAll(fiftyRules(), Limits{})
	if err != nil {
		b.Fatal(err)
	}
	msg, err := ReadMessage(strings.NewReader("From: Someone <a@sender9.example>\r\nTo: bob@example.org\r\n" +
		"List-Id: Nothing <x.example.com>\r\nSubject: =?utf-8?q?r=C3=A9union?= about nothing\r\n\r\nbody\r\n"))
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if res := s.Run(msg, Envelope{From: "a@sender9.example", To: "bob+x@example.org"}); res.Err != nil {
			b.Fatal(res.Err)
		}
	}
}

// fiftyExtRules is a 50-rule script using the extensions of issue 17:
// body, date, index, regex, include, spamtest, editheader, duplicate and
// vacation.
func fiftyExtRules() []byte {
	var b strings.Builder
	b.WriteString(`require ["fileinto", "imap4flags", "variables", "body", "date", "index", "regex", "include", "spamtestplus",` +
		` "virustest", "editheader", "duplicate", "vacation", "relational", "comparator-i;ascii-numeric"];` + "\n")
	b.WriteString("include :global \"spam\";\n")
	for i := 1; i < 50; i++ {
		switch i % 10 {
		case 0:
			fmt.Fprintf(&b, "if body :content \"text\" :contains \"invoice %d\" { fileinto \"Invoices.%d\"; }\n", i, i)
		case 1:
			fmt.Fprintf(&b, "if header :regex \"subject\" \"^\\\\[ticket-%d\\\\] (.*)$\" { fileinto \"Tickets.${1}\"; }\n", i)
		case 2:
			fmt.Fprintf(&b, "if date :value \"lt\" \"date\" \"date\" \"2020-01-%02d\" { addflag \"$old%d\"; }\n", i%28+1, i)
		case 3:
			fmt.Fprintf(&b, "if header :index 1 :last :contains \"received\" \"relay%d.example\" { fileinto \"Relayed\"; }\n", i)
		case 4:
			fmt.Fprintf(&b, "if spamtest :percent :value \"ge\" :comparator \"i;ascii-numeric\" \"%d\" { fileinto \"Junk\"; stop; }\n", 50+i)
		case 5:
			fmt.Fprintf(&b, "if address :regex :domain \"from\" \"^sender%d\\\\.(com|net)$\" { addheader \"X-Sorted\" \"%d\"; }\n", i, i)
		case 6:
			fmt.Fprintf(&b, "if duplicate :header \"message-id\" :handle \"rule%d\" { discard; stop; }\n", i)
		case 7:
			fmt.Fprintf(&b, "if currentdate :value \"ge\" \"date\" \"2099-01-%02d\" { vacation :days 3 \"away %d\"; }\n", i%28+1, i)
		case 8:
			fmt.Fprintf(&b, "if body :raw :contains \"unsubscribe-%d\" { deleteheader :index 1 \"x-list-tag\"; }\n", i)
		case 9:
			fmt.Fprintf(&b, "if virustest :value \"ge\" :comparator \"i;ascii-numeric\" \"%d\" { fileinto \"Virus\"; }\n", 2+i%4)
		}
	}
	return []byte(b.String())
}

var benchIncludes = mapLoader{"global/spam": `require ["fileinto", "spamtest", "relational", "comparator-i;ascii-numeric"];` +
	` if spamtest :value "ge" :comparator "i;ascii-numeric" "9" { fileinto "Junk"; stop; }`}

func BenchmarkCompile50RulesExtensions(b *testing.B) {
	src := fiftyExtRules()
	b.SetBytes(int64(len(src)))
	for b.Loop() {
		if _, err := CompileWith(src, CompileOptions{Extensions: AllExtensions(), Include: benchIncludes}); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkRun50RulesExtensions(b *testing.B) {
	s, err := CompileWith(fiftyExtRules(), CompileOptions{Extensions: AllExtensions(), Include: benchIncludes})
	if err != nil {
		b.Fatal(err)
	}
	raw, err := os.ReadFile("testdata/messages/mime.eml")
	if err != nil {
		b.Fatal(err)
	}
	msg, err := ReadMessage(bytes.NewReader(raw))
	if err != nil {
		b.Fatal(err)
	}
	store := &DuplicateFile{Path: filepath.Join(b.TempDir(), "dups")}
	opts := RunOptions{Duplicates: store, SpamTest: DefaultSpamTest()}
	for b.Loop() {
		if res := s.RunWith(msg, Envelope{From: "a@sender9.example", To: "bob+x@example.org"}, opts); res.Err != nil {
			b.Fatal(res.Err)
		}
	}
}

// qaLoopScript is the QA round's script: for every part, extracttext and
// a body :raw test, which read the whole message each time.
const qaLoopScript = `require ["foreverypart", "mime", "extracttext", "variables", "body"];
foreverypart { extracttext "x"; if body :raw :contains "qqq" { keep; } }`

// siblingParts is a message of n sibling text/plain parts.
func siblingParts(n int) string {
	var b strings.Builder
	b.WriteString("From: a@example.com\r\nSubject: parts\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n")
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, "--b\r\nContent-Type: text/plain\r\n\r\npart %d\r\n", i)
	}
	b.WriteString("--b--\r\n")
	return b.String()
}

// BenchmarkForeverypartBodyRaw is the QA case with 4,000 parts: its cost
// grew with parts × size before the body test's values were cached per
// run (HACKING.md has the figures).
func BenchmarkForeverypartBodyRaw(b *testing.B) {
	s, err := compileAll([]byte(qaLoopScript), Limits{})
	if err != nil {
		b.Fatal(err)
	}
	msg, err := ReadMessage(strings.NewReader(siblingParts(4000)))
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(msg.Body)))
	for b.Loop() {
		if res := s.Run(msg, Envelope{From: "a@example.com", To: "b@example.org"}); res.Err != nil {
			b.Fatal(res.Err)
		}
	}
}
