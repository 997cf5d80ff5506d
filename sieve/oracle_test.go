package sieve

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"
)

// oracleEnvelopes are the envelopes the corpus messages arrive with.
var oracleEnvelopes = map[string]Envelope{
	"plain.eml":    {From: "alice@example.com", To: "bob+lists@example.org"},
	"encoded.eml":  {From: "bounce-123@news.example.net", To: "carol@example.org"},
	"list.eml":     {From: "owner-dev@lists.example.com", To: "dave+dev@Example.ORG"},
	"multi.eml":    {From: "MAILER-DAEMON@mx.example.org", To: "erin@example.org"},
	"bigbody.eml":  {From: "frank@example.com", To: "frank@example.org"},
	"spammy.eml":   {From: "promo@shop.example", To: "bob@example.org"},
	"charsets.eml": {From: "joerg@example.de", To: "nihon@example.jp"},
	"tricky.eml":   {From: "jane+sieve@mail.example.com", To: "kim+Work@Example.org"},
	"mime.eml":     {From: "helene@example.fr", To: "gus@example.org"},
	"rspamd.eml":   {From: "bounce@offers.example", To: "ivy@example.org"},
	"html.eml":     {From: "news@letters.example", To: "jo@example.org"},
	"olddates.eml": {From: "legacy@old.example", To: "max@example.org"},
	"attach.eml":   {From: "olga@example.ru", To: "pat@example.org"},
}

// oracleExtensions are the extensions sieve-test may use: those we
// implement, so that a script requiring any other is refused by both.
// (ereject is not in Debian's Pigeonhole 2.3.19 even with -x: run_test.go
// covers it.)
var oracleExtensions = []string{"fileinto", "reject", "envelope", "encoded-character", "mailbox", "imap4flags", "copy",
	"variables", "relational", "subaddress", "comparator-i;ascii-numeric", "body", "date", "index", "regex",
	"include", "spamtest", "spamtestplus", "virustest", "editheader", "duplicate", "vacation", "vacation-seconds",
	"ihave", "environment", "mime", "foreverypart", "extracttext", "enotify"}

// oracleExtensionSet is oracleExtensions as our compile takes them.
func oracleExtensionSet() Extensions {
	x, err := ParseExtensions(strings.Join(oracleExtensions, " "))
	if err != nil {
		panic(err)
	}
	return x
}

func sieveTestPath(t *testing.T) string {
	p, err := exec.LookPath("sieve-test")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("sieve-test (Debian package dovecot-sieve) is missing; CI must have it")
		}
		t.Skip("sieve-test (Debian package dovecot-sieve) is not installed")
	}
	return p
}

// oracle runs Pigeonhole's sieve-test in a directory of its own.
type oracle struct {
	bin, dir, conf string
}

func newOracle(t *testing.T) *oracle {
	bin := sieveTestPath(t)
	// sieve-test drops privileges to mail_uid and saves compiled .svbin files
	// beside the scripts: a directory anyone may write, when we are root.
	dir, err := os.MkdirTemp("", "sieve-oracle")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	uid, gid := os.Getuid(), os.Getgid()
	if uid == 0 {
		uid, gid = 65534, 65534
	}
	conf := filepath.Join(dir, "dovecot.conf")
	writePublic(t, conf, fmt.Sprintf("mail_uid = %d\nmail_gid = %d\nfirst_valid_uid = 0\nfirst_valid_gid = 0\n"+
		"mail_location = maildir:%s/mail\npostmaster_address = postmaster@example.org\n"+
		"plugin {\n  sieve_max_redirects = 4\n  sieve_max_actions = 32\n"+
		"  sieve_spamtest_status_type = score\n  sieve_spamtest_status_header = %s\n  sieve_spamtest_max_header = %s\n"+
		"  sieve_virustest_status_type = text\n  sieve_virustest_status_header = X-Virus-Status\n"+
		"  sieve_virustest_text_value1 = Clean\n  sieve_virustest_text_value5 = Infected\n"+
		"  sieve = file:%s/personal\n  sieve_global = %s/global\n}\n",
		uid, gid, dir, rspamdStatusHeader, rspamdMaxHeader, dir, dir))
	// include's scripts, where the configuration points sieve and
	// sieve_global
	for _, loc := range []string{"personal", "global"} {
		if err := os.MkdirAll(filepath.Join(dir, loc), 0o777); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(filepath.Join(dir, loc), 0o777); err != nil {
			t.Fatal(err)
		}
		files, _ := filepath.Glob(filepath.Join("testdata/include", loc, "*.sieve"))
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			writePublic(t, filepath.Join(dir, loc, filepath.Base(f)), string(b))
		}
	}
	return &oracle{bin: bin, dir: dir, conf: conf}
}

// run gives sieve-test's actions in canonicalResult's form, and its output.
func (o *oracle) run(t *testing.T, name string, script, message []byte, env Envelope) ([]string, string) {
	t.Helper()
	scriptPath := filepath.Join(o.dir, name+".sieve")
	writePublic(t, scriptPath, string(script))
	msgPath := filepath.Join(o.dir, name+".eml")
	writePublic(t, msgPath, string(message))
	cmd := exec.Command(o.bin, "-c", o.conf, "-x", strings.Join(oracleExtensions, " "),
		"-f", env.From, "-a", env.To, "-r", env.To, scriptPath, msgPath)
	// date and currentdate without :zone use the local zone: UTC in both
	cmd.Env = append(os.Environ(), "TZ=UTC")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	runErr := cmd.Run()
	return parseSieveTest(stdout.String(), stderr.String(), runErr), stdout.String() + stderr.String()
}

// ours gives our actions in canonicalResult's form, and the compile error.
func ours(t *testing.T, script, message []byte, env Envelope) ([]string, error) {
	t.Helper()
	s, err := CompileWith(script, CompileOptions{Extensions: oracleExtensionSet(), Include: oracleIncludes})
	if err != nil {
		return []string{"refused"}, err
	}
	msg, err := ReadMessage(bytes.NewReader(message))
	if err != nil {
		t.Fatal(err)
	}
	return canonicalResult(s.RunWith(msg, env, oracleRunOptions())), nil
}

// oracleIncludes are the scripts include finds, in the oracle's
// directories too.
var oracleIncludes = DirLoader{Personal: "testdata/include/personal", Global: "testdata/include/global"}

// oracleRunOptions are the run options matching the oracle's
// configuration: UTC, rspamd's header for spamtest, X-Virus-Status for
// virustest.
func oracleRunOptions() RunOptions {
	return RunOptions{Location: time.UTC, SpamTest: &SpamTestConfig{
		Spam:  DefaultSpamTest().Spam,
		Virus: SpamStatus{StatusType: "text", StatusHeader: "X-Virus-Status", TextValues: []string{"", "Clean", "", "", "", "Infected"}},
	}, Environment: oracleEnvironment()}
}

// oracleVersion is the version our runs in the oracle tests give; "name"
// and "version" are courriel's, and TestOracleEnvironment maps
// Pigeonhole's to them.
const oracleVersion = "9.8.7"

// oracleEnvironment is what sieve-test's environment test knows: it runs
// as a mail store ("MS") after delivery ("post"), on this host, whose
// domain Pigeonhole takes after the first dot (the whole name without
// one); no client.
func oracleEnvironment() Environment {
	host, _ := os.Hostname()
	domain := host
	if _, d, ok := strings.Cut(host, "."); ok {
		domain = d
	}
	return Environment{Location: "MS", Phase: "post", Host: host, Domain: domain, Version: oracleVersion}
}

// TestOracleCorpus runs every script of testdata/corpus on every message of
// testdata/messages through Run and through Pigeonhole's sieve-test, and
// compares the actions; a script one refuses the other must refuse.
func TestOracleCorpus(t *testing.T) {
	o := newOracle(t)
	scripts, _ := filepath.Glob("testdata/corpus/*.sieve")
	messages, _ := filepath.Glob("testdata/messages/*.eml")
	if len(scripts) < 30 || len(messages) < 4 {
		t.Fatalf("corpus too small: %d scripts, %d messages", len(scripts), len(messages))
	}
	agree := 0
	for _, sp := range scripts {
		src, err := os.ReadFile(sp)
		if err != nil {
			t.Fatal(err)
		}
		allAgree := true
		for _, mp := range messages {
			env, ok := oracleEnvelopes[filepath.Base(mp)]
			if !ok {
				t.Fatalf("no envelope for %s", mp)
			}
			raw, err := os.ReadFile(mp)
			if err != nil {
				t.Fatal(err)
			}
			got, compileErr := ours(t, src, raw, env)
			want, out := o.run(t, "corpus", src, raw, env)
			if strings.Join(got, "\n") != strings.Join(want, "\n") {
				allAgree = false
				t.Errorf("%s on %s:\n ours:   %q (%v)\n theirs: %q\n sieve-test: %s",
					filepath.Base(sp), filepath.Base(mp), got, compileErr, want, out)
			}
		}
		if allAgree {
			agree++
		}
	}
	t.Logf("%d of %d corpus scripts agree with sieve-test on all %d messages", agree, len(scripts), len(messages))
}

// TestOracleSize: size :over and :under at the exact size of each message,
// so that our count of its octets is Pigeonhole's. sieve-test counts the file
// as it is, and Dovecot's LDA gets LF line ends from Postfix: sieve-test
// reads the LF form, ours both forms.
func TestOracleSize(t *testing.T) {
	o := newOracle(t)
	messages, _ := filepath.Glob("testdata/messages/*.eml")
	for _, mp := range messages {
		raw, err := os.ReadFile(mp)
		if err != nil {
			t.Fatal(err)
		}
		crlf := bytes.ReplaceAll(raw, []byte("\n"), []byte("\r\n"))
		for _, m := range [][]byte{raw, crlf} {
			msg, err := ReadMessage(bytes.NewReader(m))
			if err != nil {
				t.Fatal(err)
			}
			n := msg.Size
			script := []byte(fmt.Sprintf("require \"fileinto\";\n"+
				"if size :over %d { fileinto \"over-1\"; }\nif size :over %d { fileinto \"over\"; }\n"+
				"if size :under %d { fileinto \"under+1\"; }\nif size :under %d { fileinto \"under\"; }\n",
				n-1, n, n+1, n))
			env := oracleEnvelopes[filepath.Base(mp)]
			got, _ := ours(t, script, m, env)
			want, out := o.run(t, "size", script, raw, env)
			if strings.Join(got, "\n") != strings.Join(want, "\n") {
				t.Errorf("%s (%d octets by our count): ours %q, theirs %q\n%s", filepath.Base(mp), n, got, want, out)
			}
		}
	}
}

// TestOracleSizeEdited: the size test after editheader counts the edited
// header, as Pigeonhole does: every threshold around the message's size.
func TestOracleSizeEdited(t *testing.T) {
	o := newOracle(t)
	messages, _ := filepath.Glob("testdata/messages/*.eml")
	for _, mp := range messages {
		raw, err := os.ReadFile(mp)
		if err != nil {
			t.Fatal(err)
		}
		msg, err := ReadMessage(bytes.NewReader(raw))
		if err != nil {
			t.Fatal(err)
		}
		var b strings.Builder
		b.WriteString(`require ["editheader", "fileinto"]; addheader "X-A" "12345"; deleteheader "subject"; addheader :last "X-B" "` +
			strings.Repeat("word ", 30) + `end";` + "\n")
		// one store: the largest threshold passed, to the octet
		for n := msg.Size + 220; n >= msg.Size-60; n-- {
			if n < msg.Size+220 {
				b.WriteString("els")
			}
			fmt.Fprintf(&b, "if size :over %d { fileinto \"o%d\"; }\n", n, n)
		}
		env := oracleEnvelopes[filepath.Base(mp)]
		got, _ := ours(t, []byte(b.String()), raw, env)
		want, out := o.run(t, "sizeedit", []byte(b.String()), raw, env)
		if strings.Join(got, "\n") != strings.Join(want, "\n") || len(got) != 1 || !strings.HasPrefix(got[0], "store o") {
			t.Errorf("%s: ours %q, theirs %q\n%s", filepath.Base(mp), got, want, out)
		}
	}
}

func writePublic(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// canonicalResult is a Result in the form parseSieveTest gives
// sieve-test's output.
func canonicalResult(res Result) []string {
	if res.Err != nil {
		return []string{"error"}
	}
	var out []string
	for _, a := range res.Actions {
		if a.Kind == Store && a.Implicit {
			continue // after the duplicate marks, as sieve-test lists them
		}
		switch a.Kind {
		case Store:
			line := strings.TrimSpace("store " + a.Folder)
			if len(a.Flags) > 0 {
				line += " flags=" + canonicalFlags(a.Flags)
			}
			if a.Create {
				line += " create"
			}
			out = append(out, line)
		case Redirect:
			out = append(out, "redirect "+a.Address)
		case Discard:
			out = append(out, "discard")
		case Vacation:
			firstLine := func(s string) string {
				s, _, _ = strings.Cut(s, "\n")
				return strings.TrimRight(s, "\r")
			}
			v := *a.Vacation
			v.Subject, v.Handle = firstLine(v.Subject), firstLine(v.Handle)
			// sieve-test's listing ends a value at its first line break
			line := fmt.Sprintf("vacation seconds=%d", int64(v.Period/time.Second))
			if v.Subject != "" {
				line += " subject=" + v.Subject
			}
			if v.From != "" {
				line += " from=" + v.From
			}
			out = append(out, line+" handle="+v.Handle+" reason="+strings.TrimSpace(strings.ReplaceAll(v.Reason, "\r\n", "\n")))
		case Notify:
			out = append(out, canonicalNotify(a.Notify))
		case Reject:
			// sieve-test prints control characters as '?'
			out = append(out, strings.TrimSpace("reject "+strings.Map(func(r rune) rune {
				if r < ' ' {
					return '?'
				}
				return r
			}, a.Reason)))
		}
	}
	for _, m := range res.DuplicateMarks {
		line := "track duplicate"
		if m.last {
			line = "track last duplicate"
		}
		if m.handle != nil {
			line = strings.TrimSpace(line + " with handle: " + *m.handle)
		}
		out = append(out, line)
	}
	for _, a := range res.Actions {
		if a.Kind == Store && a.Implicit {
			line := strings.TrimSpace("implicit store " + a.Folder)
			if len(a.Flags) > 0 {
				line += " flags=" + canonicalFlags(a.Flags)
			}
			out = append(out, line)
		}
	}
	return out
}

// canonicalNotify is a notification as sieve-test lists it: importance,
// subject (:message, else the URI's), :from, recipients, header fields
// and body.
func canonicalNotify(n *Notification) string {
	line := fmt.Sprintf("notify importance=%d", n.Importance)
	if n.HasMessage {
		line += " subject=" + n.Message
	} else if n.HasSubject {
		line += " subject=" + n.Subject
	}
	if n.From != "" {
		line += " from=" + n.From
	}
	var rcpts []string
	for _, r := range n.To {
		rcpts = append(rcpts, "To: "+r)
	}
	for _, r := range n.Cc {
		rcpts = append(rcpts, "Cc: "+r)
	}
	if len(rcpts) == 0 {
		rcpts = []string{"NONE"}
	}
	line += " rcpt=" + strings.Join(rcpts, ",")
	if len(n.Headers) > 0 {
		var hs []string
		for _, h := range n.Headers {
			hs = append(hs, h.Name+": "+h.Value)
		}
		line += " headers=" + strings.Join(hs, ";")
	}
	if n.HasBody {
		line += " body=" + n.Body
	}
	return line
}

// notifyListing reads a "send notification" entry of sieve-test's report
// into canonicalNotify's form.
type notifyListing struct {
	fields         map[string]string
	rcpts, headers []string
	section        string // "recipients", "headers" or "body"
	body           []string
}

func (l *notifyListing) String() string {
	line := "notify importance=" + l.fields["importance"]
	if v, ok := l.fields["subject"]; ok {
		line += " subject=" + v
	}
	if v, ok := l.fields["from"]; ok {
		line += " from=" + v
	}
	line += " rcpt=" + strings.Join(l.rcpts, ",")
	if len(l.headers) > 0 {
		line += " headers=" + strings.Join(l.headers, ";")
	}
	if l.body != nil {
		line += " body=" + strings.Join(l.body, "\n")
	}
	return line
}

// read takes one line of the entry; false when the entry has ended.
func (l *notifyListing) read(line string) bool {
	t := strings.TrimSpace(line)
	if l.section == "body" {
		switch {
		case t == "--" && l.body == nil:
			l.body = []string{}
		case t == "--":
			l.section = ""
		default:
			l.body = append(l.body, strings.TrimRight(line, "\r"))
		}
		return true
	}
	switch {
	case t == "":
		return false
	case strings.HasPrefix(t, "=> "):
		k, v, _ := strings.Cut(strings.TrimPrefix(t, "=> "), ":")
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		switch k {
		case "recipients", "headers", "body":
			l.section = k
		default:
			l.fields[k] = v
		}
	case l.section == "recipients" && strings.HasPrefix(t, "+ "):
		l.rcpts = append(l.rcpts, strings.TrimPrefix(t, "+ "))
	case l.section == "recipients" && strings.HasPrefix(t, "NONE"):
		l.rcpts = append(l.rcpts, "NONE")
	case l.section == "headers" && strings.HasPrefix(t, "+ "):
		l.headers = append(l.headers, strings.TrimPrefix(t, "+ "))
	}
	return true
}

func canonicalFlags(flags []string) string {
	f := make([]string, len(flags))
	for i, s := range flags {
		f[i] = strings.ToLower(s)
	}
	sort.Strings(f)
	// A set, as IMAP stores it: sieve-test lists :flags ["a", "A"] twice.
	return strings.Join(slices.Compact(f), ",")
}

// parseSieveTest reads sieve-test's report: "Performed actions:" and
// "Implicit keep:" sections of " * action" lines with "+ detail" lines.
func parseSieveTest(stdout, stderr string, runErr error) []string {
	if strings.Contains(stderr, "failed to compile") {
		return []string{"refused"}
	}
	if strings.Contains(stdout+stderr, "final result: failed") {
		return []string{"error"}
	}
	if runErr != nil {
		return []string{"sieve-test failed: " + runErr.Error()}
	}
	var out []string
	prefix := ""
	var flags string
	var create bool
	flush := func() {
		if len(out) == 0 || !strings.Contains(out[len(out)-1], "store ") {
			return
		}
		if flags != "" {
			out[len(out)-1] += " flags=" + canonicalFlags(strings.Fields(flags))
		}
		if create {
			out[len(out)-1] += " create"
		}
	}
	var vac map[string]string // the vacation action being read
	var reason []string
	inReason := false
	var ntf *notifyListing // the notification being read
	for _, line := range strings.Split(stdout, "\n") {
		l := strings.TrimSpace(line)
		if ntf != nil {
			if ntf.read(line) {
				continue
			}
			out = append(out, ntf.String())
			ntf = nil
		}
		if inReason {
			if l == "END MESSAGE" {
				inReason = false
				v := "vacation seconds=" + vac["seconds"]
				for _, k := range []string{"subject", "from"} {
					// an empty :subject or :from is the default, as Result has it
					if x, ok := vac[k]; ok && x != "" {
						v += " " + k + "=" + x
					}
				}
				out = append(out, v+" handle="+vac["handle"]+" reason="+strings.TrimSpace(strings.Join(reason, "\n")))
				vac, reason = nil, nil
				continue
			}
			reason = append(reason, strings.TrimRight(line, "\r"))
			continue
		}
		if vac != nil && strings.HasPrefix(l, "=> ") {
			k, v, _ := strings.Cut(strings.TrimPrefix(l, "=> "), ":")
			vac[strings.TrimSpace(k)] = strings.TrimSpace(v)
			continue
		}
		if vac != nil && l == "START MESSAGE" {
			inReason = true
			continue
		}
		switch {
		case strings.HasPrefix(l, "* send notification with method "):
			flush()
			flags, create = "", false
			ntf = &notifyListing{fields: map[string]string{}}
		case l == "* send vacation message:":
			flush()
			flags, create = "", false
			vac = map[string]string{}
		case l == "Performed actions:":
			prefix = ""
		case l == "Implicit keep:":
			flush()
			flags, create = "", false
			prefix = "implicit "
		case strings.HasPrefix(l, "* "):
			flush()
			flags, create = "", false
			a := strings.TrimPrefix(l, "* ")
			switch {
			case strings.HasPrefix(a, "store message in folder:"):
				out = append(out, strings.TrimSpace(prefix+"store "+strings.TrimSpace(strings.TrimPrefix(a, "store message in folder:"))))
			case strings.HasPrefix(a, "reject message with reason:"):
				out = append(out, strings.TrimSpace("reject "+strings.TrimSpace(strings.TrimPrefix(a, "reject message with reason:"))))
			case strings.HasPrefix(a, "redirect message to: "):
				out = append(out, "redirect "+strings.Trim(strings.TrimPrefix(a, "redirect message to: "), "<>"))
			default:
				out = append(out, a)
			}
		case strings.HasPrefix(l, "+ add IMAP flags: "):
			flags = strings.TrimPrefix(l, "+ add IMAP flags: ")
		case l == "+ create mailbox if it does not exist":
			create = true
		}
	}
	flush()
	// Duplicate tracking is listed in the order the tests ran, among the
	// actions: Result keeps the marks apart, so they go after the explicit
	// actions in both forms.
	var tracks, rest []string
	for _, a := range out {
		if strings.HasPrefix(a, "track ") {
			tracks = append(tracks, a)
		} else {
			rest = append(rest, a)
		}
	}
	split := len(rest)
	for i, a := range rest {
		if strings.HasPrefix(a, "implicit ") {
			split = i
			break
		}
	}
	out = append(append(append([]string{}, rest[:split]...), tracks...), rest[split:]...)
	// sieve-test lists the implicit keep beside an explicit store into
	// the same folder (fileinto :copy "INBOX"), though executed (-e) it
	// stores one message: Result has the one store.
	var dedup []string
	for _, a := range out {
		if strings.HasPrefix(a, "implicit store ") && slices.Contains(out, strings.TrimPrefix(a, "implicit ")) {
			continue
		}
		dedup = append(dedup, a)
	}
	return dedup
}
