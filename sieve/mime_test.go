package sieve

import (
	"fmt"
	"strings"
	"testing"
)

// TestMIMEBounds: hostile messages cannot make foreverypart, :anychild or
// extracttext cost without bound.
func TestMIMEBounds(t *testing.T) {
	flat := func(n int) string {
		var b strings.Builder
		b.WriteString("Content-Type: multipart/mixed; boundary=b\r\n\r\n")
		for i := 0; i < n; i++ {
			fmt.Fprintf(&b, "--b\r\nContent-Type: text/plain\r\n\r\npart %d\r\n", i)
		}
		b.WriteString("--b--\r\n")
		return b.String()
	}
	// deep: levels of multiparts, each with leaves beside the next level;
	// no boundary is a prefix of another ("l1." and "l10."), which would
	// make the outer one's delimiter match the inner one's lines (RFC 2046
	// §5.1.1, internal/mimepart).
	deep := func(levels, leaves int) string {
		var b strings.Builder
		for l := 0; l < levels; l++ {
			fmt.Fprintf(&b, "Content-Type: multipart/mixed; boundary=l%d.\r\n\r\n", l)
			for i := 0; i < leaves; i++ {
				fmt.Fprintf(&b, "--l%d.\r\nContent-Type: text/plain\r\n\r\nleaf\r\n", l)
			}
			fmt.Fprintf(&b, "--l%d.\r\n", l)
		}
		b.WriteString("Content-Type: text/plain\r\n\r\nbottom\r\n")
		for l := levels - 1; l >= 0; l-- {
			fmt.Fprintf(&b, "--l%d.--\r\n", l)
		}
		return b.String()
	}
	// flatThenExe: n empty parts, then an attachment a rule looks for.
	flatThenExe := func(n int) string {
		m := flat(n)
		return strings.TrimSuffix(m, "--b--\r\n") + "--b\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment; filename=\"evil.exe\"\r\n\r\nMZ\r\n--b--\r\n"
	}
	exe := `require ["foreverypart", "mime", "fileinto"]; foreverypart { if header :mime :param "filename" :matches "Content-Disposition" "*.exe" { fileinto "exe"; break; } }`
	count := `require ["foreverypart", "variables", "fileinto"]; set "n" ""; foreverypart { set "n" "${n}x"; } set :length "n" "${n}"; fileinto "${n}";`
	tests := []struct{ name, src, msg, want, errWant string }{
		{"parts are at most maxMIMEParts", exe, flatThenExe(maxMIMEParts + 10), "implicit store INBOX", ""},
		{"every part up to maxMIMEParts is seen, as by Pigeonhole", exe, flatThenExe(maxMIMEParts - 10), "store exe", ""},
		{"nesting is at most maxMIMEDepth", count, deep(maxMIMEDepth+50, 0), fmt.Sprintf("store %d", maxMIMEDepth+1), ""},
		{"a part 20 levels down is seen", count, deep(20, 0), "store 21", ""},
		{"a part's children are its own", `require ["foreverypart", "mime", "variables", "fileinto"]; set "n" "";
			foreverypart { if header :mime :anychild "content-type" "multipart/mixed; boundary=l2." { set "n" "${n}x"; } } set :length "n" "${n}"; fileinto "${n}";`,
			deep(3, 1), "store 3", ""},
		{"loop iterations are bounded",
			`require ["foreverypart"]; foreverypart { foreverypart { foreverypart { foreverypart { keep; } } } }`,
			deep(16, 31), "error", "foreverypart iterations"},
		{"extracttext keeps maxVariableSize octets",
			`require ["foreverypart", "extracttext", "variables", "fileinto"]; foreverypart { extracttext :length "t"; fileinto "${t}"; }`,
			"Subject: x\r\n\r\n" + strings.Repeat("long line of text\r\n", 1000), fmt.Sprintf("store %d", maxVariableSize), ""},
	}
	for _, tc := range tests {
		res := compileRun(t, tc.src, tc.msg, RunOptions{})
		got := strings.Join(canonicalResult(res), "|")
		if tc.errWant != "" {
			if res.Err == nil || !strings.Contains(res.Err.Error(), tc.errWant) {
				t.Errorf("%s: error %v, want one with %q", tc.name, res.Err, tc.errWant)
			}
			continue
		}
		if got != tc.want {
			t.Errorf("%s: got %q (%v), want %q", tc.name, got, res.Err, tc.want)
		}
	}
}

// TestHTML2Text: extracttext's HTML text is Dovecot's: a tag is a space
// unless one is already there.
func TestHTML2Text(t *testing.T) {
	tests := []struct{ in, want string }{
		{"<html><body><p>Voir <b>pi&egrave;ces</b> jointes.</p></body></html>", "Voir pièces  jointes. "},
		{"a<!-- x <b> -->b<script>var x = '<p>';</script>c<style>p{}</style>d", "ab c d"},
		{"<p>one</p>\n<p>two &amp; three</p>", "one \ntwo & three "},
		{"a<SCRIPT>x</ScRiPt>b", "a b"},
	}
	for _, tc := range tests {
		if got := string(html2text([]byte(tc.in))); got != tc.want {
			t.Errorf("%q: got %q, want %q", tc.in, got, tc.want)
		}
	}
}
