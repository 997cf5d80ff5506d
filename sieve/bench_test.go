package sieve

import (
	"fmt"
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
		if _, err := Compile(src, Limits{}); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkRun50Rules(b *testing.B) {
	s, err := Compile(fiftyRules(), Limits{})
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
