package imap

import (
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestAppendDateOutOfRange: an APPEND date more than two hours in the
// future is the time of the APPEND, as Dovecot 2.3 takes it
// (INTERNALDATE_MAX_FUTURE_SECS): "31-Dec-9999" was read back as
// 30-Mar-1816, and spam dated in the year 2200 sorted first. So is one
// before what Unix nanoseconds hold (the file's mtime as os.Chtimes sets
// it, the index: 1678; Dovecot keeps 1600, which no ext4 mtime holds
// either). Other dates are kept, 1900 and the next hour included, also
// once the folder is read again.
func TestAppendDateOutOfRange(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	hourAhead := time.Now().Add(time.Hour).UTC().Format("02-Jan-2006 15:04:05 -0700")
	dates := []struct{ in, want string }{ // want "": the time of the APPEND
		{"31-Dec-9999 23:59:59 +0000", ""},
		{"01-Jan-3000 00:00:00 +0000", ""},
		{"01-Jan-0001 00:00:00 +0000", ""},
		{"01-Jan-1600 00:00:00 +0000", ""},
		{"01-Jan-1900 00:00:00 +0000", "01-Jan-1900 00:00:00 +0000"},
		{"31-Dec-2200 23:59:59 +0000", ""},
		{time.Now().Add(3 * time.Hour).UTC().Format("02-Jan-2006 15:04:05 -0700"), ""},
		{hourAhead, hourAhead},
	}
	r := loggedIn(t, e)
	start := time.Now().Add(-time.Second)
	for i, d := range dates {
		r.send(fmt.Sprintf("a%d APPEND INBOX \"%s\" {3+}\r\nabc\r\n", i, d.in))
		if got := last(r.until(fmt.Sprintf("a%d", i))); !strings.HasPrefix(got, fmt.Sprintf("a%d OK", i)) {
			t.Fatalf("APPEND %s: %q", d.in, got)
		}
	}
	end := time.Now().Add(time.Second)
	check := func(when string) {
		r.cmd("s", "EXAMINE INBOX")
		re := regexp.MustCompile(`^\* (\d+) FETCH \(INTERNALDATE "([^"]+)"\)$`)
		got := r.cmd("f", "FETCH 1:* (INTERNALDATE)")
		if len(got) != len(dates)+1 {
			t.Fatalf("%s: FETCH: %q", when, got)
		}
		for i, d := range dates {
			m := re.FindStringSubmatch(got[i])
			if m == nil {
				t.Fatalf("%s: %q", when, got[i])
			}
			if d.want != "" {
				if m[2] != d.want {
					t.Errorf("%s: %s read back as %s", when, d.in, m[2])
				}
				continue
			}
			at, err := time.Parse("02-Jan-2006 15:04:05 -0700", m[2])
			if err != nil || at.Before(start.Truncate(time.Second)) || at.After(end) {
				t.Errorf("%s: %s read back as %s, want the APPEND's time", when, d.in, m[2])
			}
		}
	}
	check("appended")
	r.cmd("z", "LOGOUT")
	e.restart()
	r = loggedIn(t, e)
	check("after a restart")
}
