package sieve

import (
	"strings"
	"testing"
)

// quotedMessage has address fields whose local parts are quoted, some
// of them needlessly.
const quotedMessage = "From: \"Jo\" <\"john doe+ext\"@Example.COM>\r\n" +
	"To: \"a\\\"b\"@x.y, \"plain\"@x.y, \"a.b\"@x.y, \"a..b\"@x.y, \".ab\"@x.y, \"a\\\\b\"@x.y, \"a@b\"@x.y\r\n" +
	"Subject: quoted\r\n\r\nbody\r\n"

// quotedScript files the message into a folder per address part of the
// envelope and of the header fields, named after the value seen.
const quotedScript = `require ["envelope", "variables", "fileinto", "subaddress"];
if envelope :all :matches "from" "*" { fileinto "ef-all:${1}"; }
if envelope :localpart :matches "from" "*" { fileinto "ef-local:${1}"; }
if envelope :domain :matches "from" "*" { fileinto "ef-domain:${1}"; }
if envelope :user :matches "from" "*" { fileinto "ef-user:${1}"; }
if envelope :detail :matches "from" "*" { fileinto "ef-detail:${1}"; }
if envelope :all :matches "to" "*" { fileinto "et-all:${1}"; }
if envelope :localpart :matches "to" "*" { fileinto "et-local:${1}"; }
if envelope :domain :matches "to" "*" { fileinto "et-domain:${1}"; }
if address :all :matches "from" "*" { fileinto "hf-all:${1}"; }
if address :localpart :matches "from" "*" { fileinto "hf-local:${1}"; }
if address :domain :matches "from" "*" { fileinto "hf-domain:${1}"; }
if address :user :matches "from" "*" { fileinto "hf-user:${1}"; }
if address :detail :matches "from" "*" { fileinto "hf-detail:${1}"; }
if address :all :is "to" "\"a\\\"b\"@x.y" { fileinto "ht-all-escaped"; }
if address :localpart :is "to" "a\"b" { fileinto "ht-local-escaped"; }
if address :all :is "to" "plain@x.y" { fileinto "ht-all-plain"; }
if address :all :is "to" "\"plain\"@x.y" { fileinto "ht-all-plain-quoted"; }
if address :all :is "to" "a.b@x.y" { fileinto "ht-all-dots"; }
if address :all :is "to" "\"a..b\"@x.y" { fileinto "ht-all-two-dots"; }
if address :all :is "to" "\".ab\"@x.y" { fileinto "ht-all-leading-dot"; }
if address :all :is "to" "\"a\\\\b\"@x.y" { fileinto "ht-all-backslash"; }
if address :localpart :is "to" "a\\b" { fileinto "ht-local-backslash"; }
if address :all :is "to" "\"a@b\"@x.y" { fileinto "ht-all-at"; }
if address :localpart :is "to" "a@b" { fileinto "ht-local-at"; }
if address :domain :is "to" "b@x.y" { fileinto "ht-domain-wrong"; }
`

// quotedEnvelopes are envelopes whose addresses SMTP gave in their
// external form: local parts quoted where they must be, and needlessly.
var quotedEnvelopes = []Envelope{
	{From: `"john doe+ext"@Example.COM`, To: `"jane q"@x.y`},
	{From: `"plain+d"@x.y`, To: `"a@b"@x.y`},
	{From: `"a\"b"@x.y`, To: `"a\\b"@[192.0.2.1]`},
	{From: `"a."@x.y`, To: `a.b@x.y`},
	{From: `"a..b"@x.y`, To: `""@x.y`},
}

// The address parts of quoted local parts are Pigeonhole's: :localpart
// (and :user, :detail) the local part unquoted, :all the address with
// its local part quoted only where it must be (Dovecot's
// smtp_address_encode), for the envelope as for header fields.
func TestQuotedLocalParts(t *testing.T) {
	s, err := compileAll([]byte(quotedScript), Limits{})
	if err != nil {
		t.Fatal(err)
	}
	msg, err := ReadMessage(strings.NewReader(quotedMessage))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		env  Envelope
		want []string
	}{
		{quotedEnvelopes[0], []string{
			`ef-all:"john doe+ext"@Example.COM`, "ef-local:john doe+ext", "ef-domain:Example.COM", "ef-user:john doe", "ef-detail:ext",
			`et-all:"jane q"@x.y`, "et-local:jane q", "et-domain:x.y"}},
		{quotedEnvelopes[1], []string{
			"ef-all:plain+d@x.y", "ef-local:plain+d", "ef-domain:x.y", "ef-user:plain", "ef-detail:d",
			`et-all:"a@b"@x.y`, "et-local:a@b", "et-domain:x.y"}},
		{quotedEnvelopes[2], []string{
			`ef-all:"a\"b"@x.y`, `ef-local:a"b`, "ef-domain:x.y", `ef-user:a"b`,
			`et-all:"a\\b"@[192.0.2.1]`, `et-local:a\b`, "et-domain:[192.0.2.1]"}},
		{quotedEnvelopes[3], []string{
			`ef-all:"a."@x.y`, "ef-local:a.", "ef-domain:x.y", "ef-user:a.",
			"et-all:a.b@x.y", "et-local:a.b", "et-domain:x.y"}},
		{quotedEnvelopes[4], []string{
			`ef-all:"a..b"@x.y`, "ef-local:a..b", "ef-domain:x.y", "ef-user:a..b",
			`et-all:""@x.y`, "et-local:", "et-domain:x.y"}},
		{Envelope{From: "", To: "postmaster"}, []string{
			"ef-all:", "ef-local:", "ef-domain:", "ef-user:", "ef-detail:",
			"et-all:postmaster", "et-local:postmaster"}},
	} {
		res := s.Run(msg, tc.env)
		if res.Err != nil {
			t.Fatalf("%+v: %v", tc.env, res.Err)
		}
		want := append(tc.want, `hf-all:"john doe+ext"@Example.COM`, "hf-local:john doe+ext", "hf-domain:Example.COM",
			"hf-user:john doe", "hf-detail:ext", "ht-all-escaped", "ht-local-escaped", "ht-all-plain", "ht-all-dots",
			"ht-all-two-dots", "ht-all-leading-dot", "ht-all-backslash", "ht-local-backslash", "ht-all-at", "ht-local-at")
		var got []string
		for _, a := range res.Actions {
			if a.Kind == Store {
				got = append(got, a.Folder)
			}
		}
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("envelope %+v:\n got  %q\n want %q", tc.env, got, want)
		}
	}
}

// TestOracleQuotedLocalParts compares the same with sieve-test's, which
// takes the envelope's addresses in their SMTP form too.
func TestOracleQuotedLocalParts(t *testing.T) {
	o := newOracle(t)
	for _, env := range quotedEnvelopes {
		got, compileErr := ours(t, []byte(quotedScript), []byte(quotedMessage), env)
		want, out := o.run(t, "quoted", []byte(quotedScript), []byte(quotedMessage), env)
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("envelope %+v:\n ours:   %q (%v)\n theirs: %q\n sieve-test: %s", env, got, compileErr, want, out)
		}
	}
}

// A redirect to a quoted local part goes to the address in SMTP's form,
// quoted where it must be, as Pigeonhole's; the same address quoted
// needlessly is the same redirect.
func TestRedirectQuotedLocalPart(t *testing.T) {
	const src = `redirect "\"john doe\"@X.y"; redirect "\"plain\"@x.y"; redirect "plain@x.y"; redirect "Jo <\"a\\\"b\"@x.y>";`
	res := runScript(t, src, Envelope{From: "a@b.c", To: "u@x.y"})
	var got []string
	for _, a := range res.Actions {
		if a.Kind == Redirect {
			got = append(got, a.Address)
		}
	}
	if want := []string{`"john doe"@x.y`, "plain@x.y", `"a\"b"@x.y`}; strings.Join(got, "|") != strings.Join(want, "|") || res.Err != nil {
		t.Errorf("redirects %q (%v), want %q", got, res.Err, want)
	}
	o := newOracle(t)
	ours, compileErr := ours(t, []byte(src), []byte(quotedMessage), quotedEnvelopes[0])
	theirs, out := o.run(t, "redirect", []byte(src), []byte(quotedMessage), quotedEnvelopes[0])
	if strings.Join(ours, "\n") != strings.Join(theirs, "\n") {
		t.Errorf("ours:   %q (%v)\n theirs: %q\n sieve-test: %s", ours, compileErr, theirs, out)
	}
}
