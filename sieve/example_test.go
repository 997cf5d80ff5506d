package sieve_test

import (
	"fmt"
	"strings"

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
