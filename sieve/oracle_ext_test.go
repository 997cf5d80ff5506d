package sieve

import (
	"os"
	"strings"
	"testing"
)

// environmentSnippets exercise the environment test (RFC 5183) against
// sieve-test, whose "name" and "version" are Pigeonhole's: its answers are
// mapped to ours before comparing.
var environmentSnippets = []string{
	`require ["environment", "variables", "fileinto"];
	if environment :matches "name" "*" { fileinto "n-${1}"; }
	if environment :matches "version" "*" { fileinto "v-${1}"; }
	if environment :matches "location" "*" { fileinto "l-${1}"; }
	if environment :matches "phase" "*" { fileinto "p-${1}"; }
	if environment :matches "domain" "*" { fileinto "d-${1}"; }
	if environment :matches "host" "*" { fileinto "h-${1}"; }
	if environment :matches "remote-ip" "*" { fileinto "ri-${1}"; }
	if environment :matches "remote-host" "*" { fileinto "rh-${1}"; }`,
	`require ["environment", "relational", "fileinto"]; if environment :count "eq" "remote-ip" "0" { fileinto "c0"; }
	if environment :count "eq" "host" "1" { fileinto "c1"; } if environment :is "x-nothing" "" { fileinto "empty"; }`,
	`require "environment"; if environment "host" ["a", "b"] { discard; }`,
	`require "environment"; if environment ["host"] "a" { discard; }`,
	`require "environment"; if environment :matches "HOST" "*" { discard; }`,
	`require "environment"; if environment :contains "location" "" { discard; }`,
	`require "environment"; if environment "location" { discard; }`,
	`require ["environment", "variables", "fileinto"]; set "x" "phase"; if environment :matches "${x}" "*" { fileinto "${1}"; }`,
	`if environment "location" "MS" { discard; }`,
	`require ["ihave", "fileinto"]; if ihave "environment" { if environment "location" "MS" { fileinto "ms"; } }`,
}

// TestOracleEnvironment compares the environment test with sieve-test's.
func TestOracleEnvironment(t *testing.T) {
	o := newOracle(t)
	raw, err := os.ReadFile("testdata/messages/tricky.eml")
	if err != nil {
		t.Fatal(err)
	}
	env := oracleEnvelopes["tricky.eml"]
	ours2theirs := strings.NewReplacer("n-Pigeonhole Sieve", "n-"+environmentName, "v-0.5.19", "v-"+oracleVersion)
	for _, src := range environmentSnippets {
		got, compileErr := ours(t, []byte(src), raw, env)
		want, out := o.run(t, "environment", []byte(src), raw, env)
		for i := range want {
			want[i] = ours2theirs.Replace(want[i])
		}
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("%q:\n ours:   %q (%v)\n theirs: %q\n sieve-test: %s", src, got, compileErr, want, out)
		}
	}
}

// TestEnvironmentDefaults: at delivery the location is MDA and the phase
// "during"; the name is courriel's; unknown items make the test false.
func TestEnvironmentDefaults(t *testing.T) {
	src := `require ["environment", "variables", "fileinto"];
	if environment :matches "location" "*" { fileinto "l-${1}"; }
	if environment :matches "phase" "*" { fileinto "p-${1}"; }
	if environment :matches "name" "*" { fileinto "n-${1}"; }
	if environment :matches "remote-ip" "*" { fileinto "ip-${1}"; }
	if environment :matches "remote-host" "*" { fileinto "rh-${1}"; }
	if environment :matches "host" "*" { fileinto "h-${1}"; }`
	res := compileRun(t, src, testMessage, RunOptions{})
	want := "store l-MDA|store p-during|store n-courriel"
	if got := strings.Join(canonicalResult(res), "|"); got != want {
		t.Errorf("zero options: got %q, want %q", got, want)
	}
	res = compileRun(t, src, testMessage, RunOptions{Environment: Environment{RemoteIP: "192.0.2.7", RemoteHost: "mail.example.net", Host: "mx.example.org"}})
	want = "store l-MDA|store p-during|store n-courriel|store ip-192.0.2.7|store rh-mail.example.net|store h-mx.example.org"
	if got := strings.Join(canonicalResult(res), "|"); got != want {
		t.Errorf("client known: got %q, want %q", got, want)
	}
}
