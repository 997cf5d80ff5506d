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

// A server that keeps sending a cookie, with empty pages, is given up
// after SizeLimit/pageSize + 2 pages, not followed forever; one that ends
// is read in full, an empty last page included.
func TestPagedSearchPageCap(t *testing.T) {
	t.Parallel()
	d := pagingDirectory(t, 1000)
	forever := &fakePages{more: func(int) bool { return true }}
	_, err := d.pagedSearch(context.Background(), forever.search, "(uid=*)", nil)
	if !errors.Is(err, errTooManyPages) || forever.calls != 12 {
		t.Errorf("endless cookies: %d pages, %v; want 12 pages, errTooManyPages", forever.calls, err)
	}
	if !transportError(err) {
		t.Error("errTooManyPages keeps the connection: the server's paging state would stay")
	}

	// SizeLimit entries in full pages, then the empty page some servers
	// end with: within the bound.
	full := &fakePages{more: func(call int) bool { return call < 10 }}
	for range 10 {
		full.pages = append(full.pages, entries(pageSize))
	}
	res, err := d.pagedSearch(context.Background(), full.search, "(uid=*)", nil)
	if err != nil || len(res.Entries) != 1000 || full.calls != 11 {
		t.Errorf("1000 entries in 10 pages and an empty one: %d entries in %d pages, %v", len(res.Entries), full.calls, err)
	}
}

// The context is checked before every page: a RCPT whose deadline passed
// stops paging at once.
func TestPagedSearchContext(t *testing.T) {
	t.Parallel()
	d := pagingDirectory(t, 1000)
	ctx, cancel := context.WithCancel(context.Background())
	f := &fakePages{more: func(call int) bool {
		if call == 2 {
			cancel()
		}
		return true
	}}
	_, err := d.pagedSearch(ctx, f.search, "(uid=*)", nil)
	if !errors.Is(err, context.Canceled) || f.calls != 3 {
		t.Errorf("cancelled during page 3: %d pages, %v; want 3, context.Canceled", f.calls, err)
	}
}
