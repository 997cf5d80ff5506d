package imap

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	goimap "github.com/emersion/go-imap/v2"
)

// naiveCRLF is the obvious definition appendCRLF must match.
func naiveCRLF(b []byte) []byte {
	var out []byte
	for i, c := range b {
		if c == '\n' && (i == 0 || b[i-1] != '\r') {
			out = append(out, '\r')
		}
		out = append(out, c)
	}
	return out
}

func TestToCRLF(t *testing.T) {
	t.Parallel()
	tests := []string{"", "a", "\n", "\r\n", "\n\n", "\r\r\n", "a\nb\r\nc\n", "a\r\nb\r\n", "\n\r\n\n", "x\r", "\rx\n"}
	r := rand.New(rand.NewPCG(3, 4))
	for i := 0; i < 500; i++ {
		b := make([]byte, r.IntN(40))
		for j := range b {
			b[j] = "ab\r\n"[r.IntN(4)]
		}
		tests = append(tests, string(b))
	}
	for _, in := range tests {
		want := naiveCRLF([]byte(in))
		if got := toCRLF([]byte(in)); !bytes.Equal(got, want) {
			t.Errorf("toCRLF(%q) = %q, want %q", in, got, want)
		}
		// Appending to a non-empty destination keeps its prefix.
		got, changed := appendCRLF([]byte("pre"), []byte(in))
		if changed == bytes.Equal(want, []byte(in)) {
			t.Errorf("appendCRLF(pre, %q): changed = %v", in, changed)
		}
		if !changed {
			if string(got) != "pre" {
				t.Errorf("appendCRLF(pre, %q) = %q, want unchanged dst", in, got)
			}
		} else if string(got) != "pre"+string(want) {
			t.Errorf("appendCRLF(pre, %q) = %q", in, got)
		}
	}
}

// TestFetchStoredForms serves messages stored with LF, with CRLF and mixed
// endings byte-exact in CRLF form, with a matching RFC822.SIZE, and their
// ENVELOPE from the header alone.
func TestFetchStoredForms(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	bodies := []string{
		"Subject: lf\nFrom: a@example.org\n\nline one\nline two\n",
		"Subject: crlf\r\nFrom: a@example.org\r\n\r\nline one\r\nline two\r\n",
		"Subject: mixed\r\nFrom: a@example.org\n\r\nline one\nline two\r\n",
		"Subject: no body",
	}
	for i, b := range bodies {
		e.deliver(fmt.Sprintf("100%d.M1P1.test", i), b)
	}
	c := e.login(nil)
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	msgs, err := c.Fetch(goimap.SeqSetNum(1, 2, 3, 4), &goimap.FetchOptions{
		Envelope: true, RFC822Size: true,
		BodySection: []*goimap.FetchItemBodySection{{Peek: true}},
	}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != len(bodies) {
		t.Fatalf("%d messages, want %d", len(msgs), len(bodies))
	}
	for i, m := range msgs {
		want := string(naiveCRLF([]byte(bodies[i])))
		got := string(m.FindBodySection(&goimap.FetchItemBodySection{Peek: true}))
		if got != want {
			t.Errorf("message %d: BODY[] = %q, want %q", i+1, got, want)
		}
		if m.RFC822Size != int64(len(want)) {
			t.Errorf("message %d: RFC822.SIZE = %d, want %d", i+1, m.RFC822Size, len(want))
		}
		if wantSubj := []string{"lf", "crlf", "mixed", "no body"}[i]; m.Envelope == nil || m.Envelope.Subject != wantSubj {
			t.Errorf("message %d: envelope %+v, want subject %q", i+1, m.Envelope, wantSubj)
		}
	}
}

// A message larger than the scratch buffers is streamed from its file:
// the literal is the CRLF form, exactly RFC822.SIZE long.
func TestFetchStreamsLargeMessage(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	body := "From: a@example.org\nSubject: big\n\n" + strings.Repeat("0123456789 stored with LF\n", 40000)
	writeMaildirMsg(t, e.maildir, "new", "1.M1P1.big", body)
	c := e.login(nil)
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	msgs, err := c.Fetch(goimap.SeqSetNum(1), &goimap.FetchOptions{
		RFC822Size: true, BodySection: []*goimap.FetchItemBodySection{{Peek: true}},
	}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	want := strings.ReplaceAll(body, "\n", "\r\n")
	got := msgs[0].FindBodySection(&goimap.FetchItemBodySection{Peek: true})
	if string(got) != want || msgs[0].RFC822Size != int64(len(want)) {
		t.Errorf("BODY[] of %d bytes (RFC822.SIZE %d), want the %d-byte CRLF form", len(got), msgs[0].RFC822Size, len(want))
	}
}

// toCRLF turns every bare LF into CRLF.
func toCRLF(b []byte) []byte {
	if out, changed := appendCRLF(nil, b); changed {
		return out
	}
	return b
}
