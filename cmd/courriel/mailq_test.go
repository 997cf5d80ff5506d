package main

import (
	"strconv"
	"strings"
	"testing"
	"testing/synctest"
	"time"
)

// The mailq socket's listing is made at most once a second, whatever the
// number of users asking in a loop; a second later, a fresh one.
func TestSharedListing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var l sharedListing
		made := 0
		list := func() (string, error) { made++; return strconv.Itoa(made), nil }
		var got []string
		for range 5 {
			s, _ := l.get(list)
			got = append(got, s)
			time.Sleep(100 * time.Millisecond)
		}
		time.Sleep(time.Second)
		s, _ := l.get(list)
		got = append(got, s)
		if want := "1 1 1 1 1 2"; strings.Join(got, " ") != want {
			t.Errorf("listings %q, want %q", got, want)
		}
	})
}
