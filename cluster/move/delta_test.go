package move

import (
	"io/fs"
	"strings"
	"testing"
	"time"
)

// delta turns what the receiving side holds into the home as it is now:
// the ops it sends and the entries it sends whole.
func TestDelta(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
	d := func(rel string) *entry { return &entry{rel: rel, mode: fs.ModeDir} }
	f := func(rel string, size int64) *entry { return &entry{rel: rel, size: size, mtime: t0} }
	stale := func(e *entry) *entry { e.stale = true; return e }
	link := func(target string) *entry { return &entry{rel: activeLink, mode: fs.ModeSymlink, link: target} }
	later := func(e *entry) *entry { e.mtime = e.mtime.Add(time.Second); return e }
	base := func() []*entry {
		return []*entry{d("m"), d("m/cur"), d("m/new"), d("m/.W"), d("m/.W/cur"), d("m/.W/new")}
	}
	with := func(es ...*entry) []*entry { return append(base(), es...) }
	for _, tc := range []struct {
		name     string
		old, cur []*entry
		ops      string
		sent     string // rels, space-separated
	}{
		{"nothing changed", with(f("m/cur/1.M1:2,S", 5)), with(f("m/cur/1.M1:2,S", 5)), "", ""},
		{"metadata always again", with(f("m/dovecot-uidlist", 9), link("sieve/a")), with(f("m/dovecot-uidlist", 9), link("sieve/a")),
			"D\tm/dovecot-uidlist\nD\t.dovecot.sieve\n", "m/dovecot-uidlist .dovecot.sieve"},
		{"flags", with(f("m/cur/1.M1:2,S", 5)), with(f("m/cur/1.M1:2,SF", 5)), "R\tm/cur/1.M1:2,S\tm/cur/1.M1:2,SF\n", ""},
		{"new to cur", with(f("m/new/1.M1", 5)), with(f("m/cur/1.M1:2,", 5)), "R\tm/new/1.M1\tm/cur/1.M1:2,\n", ""},
		{"delivered", with(), with(f("m/new/2.M2", 5)), "", "m/new/2.M2"},
		{"expunged", with(f("m/cur/1.M1:2,S", 5)), with(), "D\tm/cur/1.M1:2,S\n", ""},
		{"across folders", with(f("m/cur/1.M1:2,S", 5)), with(f("m/.W/cur/1.M1:2,S", 5)), "D\tm/cur/1.M1:2,S\n", "m/.W/cur/1.M1:2,S"},
		{"same name, other size", with(f("m/cur/1.M1:2,S", 5)), with(f("m/cur/1.M1:2,S", 6)), "D\tm/cur/1.M1:2,S\n", "m/cur/1.M1:2,S"},
		{"same name, other mtime", with(f("m/cur/1.M1:2,S", 5)), with(later(f("m/cur/1.M1:2,S", 5))), "D\tm/cur/1.M1:2,S\n", "m/cur/1.M1:2,S"},
		{"renamed, other size", with(f("m/cur/1.M1:2,S", 5)), with(f("m/cur/1.M1:2,SF", 6)), "D\tm/cur/1.M1:2,S\n", "m/cur/1.M1:2,SF"},
		{"sent stale, still there", with(stale(f("m/cur/1.M1:2,S", 5))), with(f("m/cur/1.M1:2,S", 5)), "D\tm/cur/1.M1:2,S\n", "m/cur/1.M1:2,S"},
		{"sent stale, renamed since", with(stale(f("m/cur/1.M1:2,S", 5))), with(f("m/cur/1.M1:2,SF", 5)), "D\tm/cur/1.M1:2,S\n", "m/cur/1.M1:2,SF"},
		{"two names of one message", with(f("m/new/1.M1", 5)), with(f("m/cur/1.M1:2,S", 5), f("m/cur/1.M1:2,F", 5)),
			"D\tm/new/1.M1\n", "m/cur/1.M1:2,S m/cur/1.M1:2,F"},
		{"folder gone", with(f("m/.W/cur/1.M1:2,S", 5), f("m/.W/dovecot-uidlist", 3)),
			[]*entry{d("m"), d("m/cur"), d("m/new")}, "D\tm/.W\n", ""},
		{"folder renamed", with(f("m/.W/cur/1.M1:2,S", 5)),
			[]*entry{d("m"), d("m/cur"), d("m/new"), d("m/.X"), d("m/.X/cur"), f("m/.X/cur/1.M1:2,S", 5)},
			"D\tm/.W\n", "m/.X m/.X/cur m/.X/cur/1.M1:2,S"},
		{"into a new directory", []*entry{d("m"), d("m/new"), f("m/new/1.M1", 5)}, []*entry{d("m"), d("m/new"), d("m/cur"), f("m/cur/1.M1:2,S", 5)},
			"D\tm/new/1.M1\n", "m/cur m/cur/1.M1:2,S"},
		{"directory became a file", with(f("m/.W/cur/1.M1", 5)), []*entry{d("m"), d("m/cur"), d("m/new"), f("m/.W", 1)},
			"D\tm/.W\n", "m/.W"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := delta(tc.old, tc.cur)
			if string(got.ops) != tc.ops {
				t.Errorf("ops %q, want %q", got.ops, tc.ops)
			}
			var sent []string
			for _, e := range got.entries {
				sent = append(sent, e.rel)
			}
			if strings.Join(sent, " ") != tc.sent {
				t.Errorf("sent %q, want %q", strings.Join(sent, " "), tc.sent)
			}
		})
	}
}
