package sieve_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"courriel/sieve"
)

func ExampleScript_Run() {
	script, err := sieve.Compile([]byte(`require ["fileinto", "imap4flags", "variables"];
if header :matches "List-Id" "*<*.lists.example.com>" {
	fileinto :flags "\\Seen" "Lists.${2}";
	stop;
}
`), sieve.Limits{})
	if err != nil {
		fmt.Println(err)
		return
	}
	msg, err := sieve.ReadMessage(strings.NewReader("List-Id: Developers <dev.lists.example.com>\r\nSubject: hi\r\n\r\nbody\r\n"))
	if err != nil {
		fmt.Println(err)
		return
	}
	res := script.Run(msg, sieve.Envelope{From: "owner-dev@lists.example.com", To: "bob@example.org"})
	for _, a := range res.Actions {
		fmt.Println(a.Kind == sieve.Store, a.Folder, a.Flags, a.Inbox())
	}
	_, err = sieve.Compile([]byte("if true { keep;\n"), sieve.Limits{})
	fmt.Println(err)
	// Output:
	// true Lists.dev [\Seen] false
	// line 2, column 1: expected '}' or a command, found end of script
}

// The deliverer's side of the extensions: a clock, a duplicate store whose
// marks are committed only once the message is stored, and the vacation
// reply and edited header the result carries. editheader is one of
// Pigeonhole's extra extensions, enabled as its sieve_extensions setting
// would.
func ExampleScript_RunWith() {
	exts, warnings := sieve.ParseExtensions("+editheader")
	for _, w := range warnings {
		fmt.Println(w) // a name it does not know, ignored: none here
	}
	script, err := sieve.CompileWith([]byte(`require ["duplicate", "vacation", "editheader", "fileinto"];
if duplicate { discard; stop; }
addheader "X-Filtered" "yes";
vacation :days 3 :subject "Away" "Back on Monday.";
`), sieve.CompileOptions{Extensions: exts})
	if err != nil {
		fmt.Println(err)
		return
	}
	dir, _ := os.MkdirTemp("", "example")
	defer os.RemoveAll(dir)
	dups := &sieve.DuplicateFile{Path: filepath.Join(dir, ".courriel.duplicates")}
	now := time.Date(2026, 12, 7, 9, 0, 0, 0, time.UTC)
	raw := "Message-ID: <1@example.com>\r\nSubject: hi\r\n\r\nbody\r\n"
	for i := 0; i < 2; i++ {
		msg, _ := sieve.ReadMessage(strings.NewReader(raw))
		res := script.RunWith(msg, sieve.Envelope{From: "alice@example.com", To: "bob@example.org"},
			sieve.RunOptions{Now: now, Duplicates: dups})
		for _, a := range res.Actions {
			switch a.Kind {
			case sieve.Vacation:
				fmt.Println("vacation", a.Vacation.Subject, a.Vacation.Period)
			case sieve.Store:
				fmt.Printf("store %s with %q\n", a.Folder, strings.SplitN(string(res.Edit.Header()), "\r\n", 2)[0])
			case sieve.Discard:
				fmt.Println("discard")
			}
		}
		// ... the message is stored and fsynced, then:
		if err := dups.Commit(res.DuplicateMarks, now); err != nil {
			fmt.Println(err)
		}
	}
	// Output:
	// vacation Away 72h0m0s
	// store INBOX with "X-Filtered: yes"
	// discard
}
