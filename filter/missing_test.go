package filter

import (
	"bytes"
	"context"
	"os"
	"sort"
	"strings"
	"testing"
	"time"

	"courriel/delivery"
)

// folderFiles lists the copies in a folder of the maildir ("" the INBOX),
// new/ and cur/, as "new/" or "cur/" and the flags of the name's info.
func folderFiles(t *testing.T, maildir, folder string) []string {
	t.Helper()
	dir := maildir
	if folder != "" {
		dir += "." + folder + "/"
	}
	var out []string
	for _, sub := range []string{"new", "cur"} {
		es, err := os.ReadDir(dir + sub)
		if err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		for _, e := range es {
			_, info, _ := strings.Cut(e.Name(), ":2,")
			out = append(out, sub+"/"+info)
		}
	}
	sort.Strings(out)
	return out
}

// A fileinto to a folder that does not exist (no :create) keeps to the
// INBOX, into the one copy the INBOX gets (docs/flow.md: one copy per
// folder), its flags joined to the keep's: whatever the order, however
// many such folders, keyed or not, and on a retry after a crash (the
// earlier outcome lost), even when one of the folders was created
// meanwhile. Under the milter's junk verdict Junk stands in for the
// INBOX, the failed fileinto's keep included.
func TestFileintoMissingKeepsOnce(t *testing.T) {
	const req = `require ["fileinto", "imap4flags", "mailbox"];` + "\n"
	cases := []struct {
		name, script string
		junk         bool
		exists       []string            // folders there before the first try
		created      string              // a folder created before the retry
		want         map[string][]string // folder: files (folderFiles)
	}{
		{name: "fileinto missing, keep",
			script: `fileinto :flags "\\Seen" "Missing"; keep :flags "\\Flagged";`,
			want:   map[string][]string{"": {"cur/FS"}, "Missing": nil}},
		{name: "keep, fileinto missing",
			script: `keep :flags "\\Flagged"; fileinto :flags "\\Seen" "Missing";`,
			want:   map[string][]string{"": {"cur/FS"}}},
		{name: "fileinto missing, plain keep",
			script: `fileinto "Missing"; keep;`,
			want:   map[string][]string{"": {"new/"}}},
		{name: "two missing folders",
			script: `fileinto :flags "\\Seen" "Missing"; fileinto :flags "\\Answered" "Missing2";`,
			want:   map[string][]string{"": {"cur/RS"}}},
		{name: "two missing folders, one created before the retry",
			script:  `fileinto "Missing"; fileinto "Missing2";`,
			created: "Missing",
			want:    map[string][]string{"": {"new/"}, "Missing": {"new/"}}},
		{name: "missing folder created before the retry, keep",
			script:  `fileinto "Missing"; keep;`,
			created: "Missing",
			want:    map[string][]string{"": {"new/"}, "Missing": {"new/"}}},
		{name: "missing, existing, keep",
			script: `fileinto "Missing"; fileinto :flags "\\Seen" "There"; fileinto :create "Made"; keep;`,
			exists: []string{"There"},
			want:   map[string][]string{"": {"new/"}, "There": {"cur/S"}, "Made": {"new/"}}},
		{name: "fileinto INBOX and missing",
			script: `fileinto :flags "\\Flagged" "INBOX"; fileinto :flags "\\Seen" "Missing";`,
			want:   map[string][]string{"": {"cur/FS"}}},
		{name: "junk verdict: fileinto missing, keep",
			script: `fileinto "Missing"; keep;`, junk: true,
			want: map[string][]string{"": nil, "Junk": {"new/"}}},
		{name: "junk verdict: fileinto missing",
			script: `fileinto :flags "\\Seen" "Missing";`, junk: true,
			want: map[string][]string{"": nil, "Junk": {"cur/S"}}},
	}
	for _, tc := range cases {
		for _, key := range []string{"", "Q1-0"} {
			t.Run(tc.name+" key="+key, func(t *testing.T) {
				base := t.TempDir()
				home := base + "/u"
				md := home + "/mailbox/"
				os.MkdirAll(home, 0o755)
				os.WriteFile(home+"/.dovecot.sieve", []byte(req+tc.script), 0o644)
				for _, d := range tc.exists {
					for _, sub := range []string{"new", "cur", "tmp"} {
						os.MkdirAll(md+"."+d+"/"+sub, 0o700)
					}
				}
				store, err := delivery.NewStore(delivery.Options{Hostname: "h", AllowedBase: base})
				if err != nil {
					t.Fatal(err)
				}
				f, _ := New(Options{Store: store, Directory: fakeDir{"u@x.y": {Home: home}}})
				r := delivery.Recipient{Address: "u@x.y", Maildir: md, CopyKey: key}
				if tc.junk {
					r.Folder = "Junk"
				}
				attempts := 1
				if key != "" {
					attempts = 2 // the retry of a queued copy whose outcome was lost
				}
				for a := range attempts {
					if a > 0 && tc.created != "" {
						for _, sub := range []string{"new", "cur", "tmp"} {
							os.MkdirAll(md+"."+tc.created+"/"+sub, 0o700)
						}
					}
					m := &delivery.Message{ID: "m", From: "s@z.z", Body: bytes.NewReader([]byte("Subject: s\r\n\r\nb\r\n")),
						Arrived: time.Unix(1700000000, 0), Retry: a > 0}
					if errs := f.Deliver(context.Background(), m, []delivery.Recipient{r}); errs[0] != nil {
						t.Fatalf("attempt %d: %v", a, errs[0])
					}
				}
				if key == "" && tc.created != "" {
					return // no retry without a key
				}
				for folder, want := range tc.want {
					if got := folderFiles(t, md, folder); strings.Join(got, " ") != strings.Join(want, " ") {
						t.Errorf("folder %q holds %q, want %q", folder, got, want)
					}
				}
			})
		}
	}
}

// A single copy at DATA whose fileinto names a missing folder is stored
// once, in the INBOX, and the 250 follows it.
func TestFileintoMissingSingle(t *testing.T) {
	base := t.TempDir()
	home := base + "/u"
	md := home + "/mailbox/"
	os.MkdirAll(home, 0o755)
	os.WriteFile(home+"/.dovecot.sieve", []byte(`require "fileinto"; fileinto "Missing";`), 0o644)
	store, _ := delivery.NewStore(delivery.Options{Hostname: "h", AllowedBase: base})
	f, _ := New(Options{Store: store, Directory: fakeDir{"u@x.y": {Home: home}}})
	m := &delivery.Message{ID: "m", From: "s@z.z", Body: bytes.NewReader([]byte("Subject: s\r\n\r\nb\r\n")), Arrived: time.Now(), Single: true}
	if errs := f.Deliver(context.Background(), m, []delivery.Recipient{{Address: "u@x.y", Maildir: md}}); errs[0] != nil {
		t.Fatal(errs[0])
	}
	if got := folderFiles(t, md, ""); len(got) != 1 {
		t.Errorf("INBOX holds %q, want one copy", got)
	}
}
