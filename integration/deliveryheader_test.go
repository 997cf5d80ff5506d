package integration

import (
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"courriel/internal/testenv"
)

// TestDeliveryHeaderAsPostfix delivers one message through Postfix in the
// seed's setup (virtual(8) into the maildir) and through courriel, on the
// same slapd, and compares the fields the final delivery adds above the
// message, the oracle being Postfix's stored copy: Return-Path,
// X-Original-To (the address the message was sent to, which users' mail
// filters sort by) and Delivered-To, in that order, with the same values.
func TestDeliveryHeaderAsPostfix(t *testing.T) {
	vmail := testenv.PublicTempDir(t)
	s := startServer(t, withVmailIn(vmail))
	pf := testenv.StartPostfix(t, s.slapd)
	const body = "From: bench@example.net\r\nTo: test0@hosted-domain.com\r\nSubject: header\r\n\r\nhello\r\n"
	newFiles := func(seen []string) []string {
		var out []string
		for _, f := range s.maildirFiles(t, "xomail", "new") {
			if !slices.Contains(seen, f) {
				out = append(out, f)
			}
		}
		return out
	}
	// The first few lines each server writes before the message's own.
	deliver := func(addr string, seen []string) (added []string, files []string) {
		t.Helper()
		if err := sendBench(addr, body, nil); err != nil {
			t.Fatalf("%s: %v", addr, err)
		}
		var fresh []string
		for range 400 { // Postfix delivers after its 250
			if fresh = newFiles(seen); len(fresh) > 0 {
				break
			}
			time.Sleep(25 * time.Millisecond)
		}
		if len(fresh) != 1 {
			t.Fatalf("%s: %d new files", addr, len(fresh))
		}
		data, err := os.ReadFile(fresh[0])
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range strings.Split(string(data), "\n") {
			if strings.HasPrefix(l, "Received:") {
				break
			}
			added = append(added, l)
		}
		return added, append(seen, fresh[0])
	}
	theirs, seen := deliver(pf.Addr, nil)
	ours, _ := deliver(s.SMTP, seen)
	want := []string{"Return-Path: <bench@example.net>", "X-Original-To: test0@hosted-domain.com", "Delivered-To: xomail@xoyize.xyz"}
	if !slices.Equal(theirs, want) {
		t.Fatalf("Postfix (the oracle) added %q, this test expects %q", theirs, want)
	}
	if !slices.Equal(ours, theirs) {
		t.Errorf("courriel added %q, Postfix %q", ours, theirs)
	}
}
