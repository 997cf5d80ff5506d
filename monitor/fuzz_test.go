package monitor

import (
	"encoding/xml"
	"log/slog"
	"strings"
	"testing"
)

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// FuzzAddressDomain checks that whatever addressDomain accepts is a plain
// lower-case domain taken from the input, and that the document built for it
// is well-formed XML naming exactly that domain.
func FuzzAddressDomain(f *testing.F) {
	for _, s := range []string{
		"fred@example.com", "Fred.Bloggs+tag@Example.COM", "<script>@example.com",
		`"q"@example.com`, "a@b@example.com", "a@192.0.2.1", "a@[::1]", "a@xn--bcher-kva.example",
		"a\r\n@example.com", "a@exämple.com", "a@example.com.", "", "@", strings.Repeat("a", 300),
	} {
		f.Add(s)
	}
	a := &autoconfig{hostname: "mail.example.net", services: Services{IMAPS: 993, Submission: 587}, log: discardLogger()}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := addressDomain(s)
		if err != nil {
			if d != "" {
				t.Fatalf("error with a domain %q", d)
			}
			return
		}
		if !validDomain(d) || !strings.HasSuffix(strings.ToLower(s), "@"+d) {
			t.Fatalf("addressDomain(%q) = %q", s, d)
		}
		if strings.Trim(d, "abcdefghijklmnopqrstuvwxyz0123456789.-") != "" {
			t.Fatalf("domain %q has characters outside LDH", d)
		}
		body, err := a.document(d)
		if err != nil {
			t.Fatal(err)
		}
		var got gotConfig
		if err := xml.Unmarshal(body, &got); err != nil || got.Provider.ID != d {
			t.Fatalf("document for %q: id %q, err %v", d, got.Provider.ID, err)
		}
	})
}
