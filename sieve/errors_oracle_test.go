package sieve

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"testing"
)

// multiErrorScripts have several errors, which the checks or the parser
// find: each is reported, in Pigeonhole's order.
var multiErrorScripts = []string{
	"foo;\nbar;\nfoo;\nkeep;\n",
	"require \"fileinto\";\nfileinto 1;\nredirect;\nif header :is \"a\" { frob; }\nelsif true { keep; }\n",
	"require \"nope\";\nrequire \"fileinto\";\nfileinto \"x\";\nvacation \"x\";\n",
	"if true { foo; }\nelse { bar; }\nelse { keep; }\n",
	"if anyof(foo, header :is \"a\", exists :nope \"b\") { keep; }\nfoo;\nif bar { keep; }\n",
	"require [\"nope\", \"fileinto\"];\nfileinto \"x\";\ndiscard 1;\nstop 2;\n",
	"keep;\nrequire \"fileinto\";\nfileinto :copy \"x\";\n",
	"if header :contains \"a\" \"b\" { foo 1; redirect; }\nelsif exists 1 { keep :flags 2; }\nelse { nosuch; }\n",
	"foo; foo; foo; foo; foo;\nbar 1;\nkeep 1;\ndiscard 2;\nstop 3;\nredirect;\nredirect 4;\nfileinto \"a\";\nkeep 5;\n",
	// Parse errors: the parser skips to the end of the command (or
	// block) and goes on; the checks do not run.
	"if true { keep }\nif true { stop }\nkeep;\n",
	"keep,\nfoo;\nkeep ]\n",
	"keep \"a\" \"b\" (;\nif exists \"x\" { keep }\nfoo;\nstop )\n",
	"if anyof(true false) { keep; }\nif allof(true, { keep; }\nkeep [\"a\" \"b\"];\nredirect \"x\" )\n",
	"if true { if true { keep } stop; }\nkeep ,;\nfoo \"a\" [\"b\" 1];\nkeep (true);\nkeep [];\n",
	"keep;\nfoo ( exists [\"a\", ], true ;\nstop;\n",
}

// sievecErrors compiles src with Pigeonhole's sievec and returns the
// lines of its errors, in order ("validation failed" left out).
func sievecErrors(t *testing.T, sievec, dir, src string) []int {
	t.Helper()
	path := filepath.Join(dir, "e.sieve")
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	out, _ := exec.Command(sievec, "-c", filepath.Join(dir, "dovecot.conf"), path, path+".svbin").CombinedOutput()
	var lines []int
	for _, m := range regexp.MustCompile(`(?m)^e: line (\d+): error: `).FindAllSubmatch(out, -1) {
		n, _ := strconv.Atoi(string(m[1]))
		lines = append(lines, n)
	}
	return lines
}

func sievecPath(t *testing.T) string {
	t.Helper()
	sievec, err := exec.LookPath("sievec")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("sievec (Debian package dovecot-sieve) is missing; CI must have it")
		}
		t.Skip("sievec (Debian package dovecot-sieve) is not installed")
	}
	return sievec
}

// TestCompileErrorsOracle: a script with several errors has each one
// reported (CompileOptions.Errors), on the lines Pigeonhole's sievec
// reports them, in its order; the error CompileWith returns is the
// first; MaxErrors stops the count.
func TestCompileErrorsOracle(t *testing.T) {
	sievec := sievecPath(t)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "dovecot.conf"), []byte("mail_location = maildir:"+dir+"/mail\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for i, src := range multiErrorScripts {
		theirs := sievecErrors(t, sievec, dir, src)
		if len(theirs) < 2 {
			t.Fatalf("script %d: sievec reports %v: not a script with several errors", i, theirs)
		}
		var all []*Error
		_, err := CompileWith([]byte(src), CompileOptions{Errors: func(e *Error) { all = append(all, e) }})
		var ours []int
		for _, e := range all {
			ours = append(ours, e.Line)
		}
		if !slices.Equal(ours, theirs) {
			t.Errorf("script %d %q:\n ours   %v %q\n sievec %v", i, src, ours, all, theirs)
			continue
		}
		if err == nil || err != error(all[0]) {
			t.Errorf("script %d: CompileWith's error %v, not the first reported (%v)", i, err, all[0])
		}
		for max := 1; max < len(theirs); max++ {
			var some []int
			CompileWith([]byte(src), CompileOptions{MaxErrors: max, Errors: func(e *Error) { some = append(some, e.Line) }})
			if !slices.Equal(some, theirs[:max]) {
				t.Errorf("script %d, MaxErrors %d: %v, want %v", i, max, some, theirs[:max])
			}
		}
	}
}
