package directory

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/go-ldap/ldap/v3"
)

// fakePages answers a paged search with the entries of pages[i] on its
// i-th call, and a cookie while more is true for that call; past pages,
// empty pages. It counts the calls.
type fakePages struct {
	pages [][]*ldap.Entry
	more  func(call int) bool
	calls int
}

func (f *fakePages) search(*ldap.SearchRequest) (*ldap.SearchResult, error) {
	call := f.calls
	f.calls++
	res := &ldap.SearchResult{}
	if call < len(f.pages) {
		res.Entries = f.pages[call]
	}
	p := ldap.NewControlPaging(pageSize)
	if f.more(call) {
		p.SetCookie([]byte("cookie"))
	}
	res.Controls = []ldap.Control{p}
	return res, nil
}

func entries(n int) []*ldap.Entry {
	out := make([]*ldap.Entry, n)
	for i := range out {
		out[i] = ldap.NewEntry(fmt.Sprintf("uid=e%d,dc=x", i), nil)
	}
	return out
}

func pagingDirectory(t *testing.T, sizeLimit int) *Directory {
	t.Helper()
	o := Options{URLs: []string{"ldap://127.0.0.1"}, BaseDN: "dc=x", SizeLimit: sizeLimit}
	o.setDefaults()
	if err := o.validate(); err != nil {
		t.Fatal(err)
	}
	return &Directory{opts: o}
}

// A server that keeps sending a cookie with empty pages is given up after
// maxEmptyPages + 1 of them, not followed forever; one that ends is read in
// full, whatever its page size, an empty last page included.
func TestPagedSearchPageCap(t *testing.T) {
	t.Parallel()
	d := pagingDirectory(t, 1000)
	forever := &fakePages{pages: [][]*ldap.Entry{entries(pageSize)}, more: func(int) bool { return true }}
	_, err := d.pagedSearch(context.Background(), forever.search, "ldap://127.0.0.1", "(uid=*)", nil)
	if want := 1 + maxEmptyPages + 1; !errors.Is(err, errTooManyPages) || forever.calls != want {
		t.Errorf("endless cookies: %d pages, %v; want %d pages, errTooManyPages", forever.calls, err, want)
	}
	if !transportError(err) {
		t.Error("errTooManyPages keeps the connection: the server's paging state would stay")
	}

	for _, tc := range []struct {
		name           string
		pages, perPage int
	}{
		{"SizeLimit entries in full pages", 10, pageSize},
		// A server whose page is below ours (Active Directory's
		// MaxPageSize, a proxy's) is read in full too.
		{"pages of 7", 142, 7},
		{"one entry a page", 1000, 1},
	} {
		f := &fakePages{more: func(call int) bool { return call < tc.pages }}
		for range tc.pages {
			f.pages = append(f.pages, entries(tc.perPage))
		}
		// Then the empty page some servers end with.
		res, err := d.pagedSearch(context.Background(), f.search, "ldap://127.0.0.1", "(uid=*)", nil)
		if want := tc.pages * tc.perPage; err != nil || len(res.Entries) != want || f.calls != tc.pages+1 {
			t.Errorf("%s: %d entries in %d pages, %v; want %d entries in %d pages", tc.name, len(res.Entries), f.calls, err, want, tc.pages+1)
		}
	}

	// Short pages past SizeLimit are sizeLimitExceeded, as full ones.
	over := &fakePages{more: func(int) bool { return true }}
	for range 200 {
		over.pages = append(over.pages, entries(7))
	}
	if _, err := d.pagedSearch(context.Background(), over.search, "ldap://127.0.0.1", "(uid=*)", nil); !ldap.IsErrorWithCode(err, ldap.LDAPResultSizeLimitExceeded) {
		t.Errorf("1,400 entries in pages of 7, SizeLimit 1000: %v; want sizeLimitExceeded", err)
	}
}

// The context is checked before every page: a RCPT whose deadline passed
// stops paging at once.
func TestPagedSearchContext(t *testing.T) {
	t.Parallel()
	d := pagingDirectory(t, 1000)
	ctx, cancel := context.WithCancel(context.Background())
	f := &fakePages{pages: [][]*ldap.Entry{entries(1), entries(1), entries(1), entries(1)}, more: func(call int) bool {
		if call == 2 {
			cancel()
		}
		return true
	}}
	_, err := d.pagedSearch(ctx, f.search, "ldap://127.0.0.1", "(uid=*)", nil)
	if !errors.Is(err, context.Canceled) || f.calls != 3 {
		t.Errorf("cancelled during page 3: %d pages, %v; want 3, context.Canceled", f.calls, err)
	}
}
