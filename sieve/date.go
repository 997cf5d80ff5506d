package sieve

import (
	"fmt"
	"net/mail"
	"strings"
	"time"
)

// date and index (RFC 5260): the date test reads a date header field, the
// currentdate test the time of the run (RunOptions.Now), both as date-parts
// in a zone; index picks one occurrence of a header field for header,
// address and date.

var indexTags = map[string]tagSpec{"index": {param: vNumber, ext: "index"}, "last": {ext: "index"}}

var dateTests = map[string]spec{
	"date": {ext: "date", pos: []valueKind{vString, vString, vStrings},
		tags: tags(matchTags, indexTags, map[string]tagSpec{
			"zone": {param: vString, group: "zone"}, "originalzone": {group: "zone"}})},
	"currentdate": {ext: "date", pos: []valueKind{vString, vStrings},
		tags: tags(matchTags, map[string]tagSpec{"zone": {param: vString}})},
}

var dateParts = map[string]bool{
	"year": true, "month": true, "day": true, "date": true, "julian": true, "hour": true, "minute": true,
	"second": true, "time": true, "iso8601": true, "std11": true, "zone": true, "weekday": true,
}

// checkIndex: :last means nothing without :index.
func (s *Script) checkIndex(t *Test, n *node) *Error {
	switch t.Name {
	case "header", "address", "date":
	default:
		return nil // duplicate's :last is its own
	}
	if _, ok := n.tags["last"]; ok {
		if _, ok := n.tags["index"]; !ok {
			return errAt(t.Pos, "tag :last needs :index")
		}
	}
	if a, ok := n.tags["index"]; ok && a.Number == 0 {
		return errAt(a.Pos, ":index 0 is invalid: fields count from 1")
	}
	return nil
}

// pickIndex keeps the one occurrence :index (and :last) names, or none.
func pickIndex[T any](n *node, list []T) []T {
	a, ok := n.tags["index"]
	if !ok {
		return list
	}
	if a.Number == 0 || a.Number > uint64(len(list)) {
		return nil
	}
	k := int(a.Number)
	if _, last := n.tags["last"]; last {
		k = len(list) + 1 - k
	}
	return list[k-1 : k]
}

func (s *Script) checkDate(t *Test, n *node) *Error {
	partArg := n.pos[0]
	if t.Name == "date" {
		partArg = n.pos[1]
		if h := n.pos[0].Strings[0]; !s.hasVariables(h) && !validFieldName(h) {
			return errAt(n.pos[0].Pos, "date: invalid header field name \"%s\"", h)
		}
	}
	// An unknown date part makes the test false and an invalid :zone is
	// ignored, at run time: Pigeonhole takes both at compile time.
	_ = partArg
	return nil
}

// parseZone reads "+hhmm" or "-hhmm".
func parseZone(z string) (*time.Location, bool) {
	if len(z) != 5 || (z[0] != '+' && z[0] != '-') {
		return nil, false
	}
	for i := 1; i < 5; i++ {
		if z[i] < '0' || z[i] > '9' {
			return nil, false
		}
	}
	// Pigeonhole takes any four digits: +0160 is +0200, +2400 a day.
	h := int(z[1]-'0')*10 + int(z[2]-'0')
	m := int(z[3]-'0')*10 + int(z[4]-'0')
	off := (h*60 + m) * 60
	if z[0] == '-' {
		off = -off
	}
	return time.FixedZone(z, off), true
}

// datePart formats one part of t in its own zone.
func datePart(t time.Time, part string) string {
	switch part {
	case "year":
		return fmt.Sprintf("%04d", t.Year())
	case "month":
		return fmt.Sprintf("%02d", int(t.Month()))
	case "day":
		return fmt.Sprintf("%02d", t.Day())
	case "date":
		return fmt.Sprintf("%04d-%02d-%02d", t.Year(), int(t.Month()), t.Day())
	case "julian":
		day := time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
		mjd0 := time.Date(1858, time.November, 17, 0, 0, 0, 0, time.UTC)
		return fmt.Sprint(int64(day.Sub(mjd0).Hours()) / 24)
	case "hour":
		return fmt.Sprintf("%02d", t.Hour())
	case "minute":
		return fmt.Sprintf("%02d", t.Minute())
	case "second":
		return fmt.Sprintf("%02d", t.Second())
	case "time":
		return t.Format("15:04:05")
	case "iso8601":
		return t.Format("2006-01-02T15:04:05Z07:00") // Pigeonhole writes Z for +00:00
	case "std11":
		return t.Format("Mon, 02 Jan 2006 15:04:05 -0700")
	case "zone":
		return t.Format("-0700")
	case "weekday":
		return fmt.Sprint(int(t.Weekday()))
	}
	return ""
}

// dateTest runs date and currentdate.
func (r *runner) dateTest(t *Test, n *node) (bool, error) {
	var times []time.Time
	var part string
	keys := r.strs(n.pos[len(n.pos)-1])
	if t.Name == "currentdate" {
		part = r.expand(n.pos[0].Strings[0])
		times = []time.Time{r.now}
	} else {
		part = r.expand(n.pos[1].Strings[0])
		fields := r.headerValues(r.expand(n.pos[0].Strings[0]))
		if _, ok := n.tags["index"]; !ok && len(fields) > 1 {
			// Pigeonhole reads the first field only: a date is one date
			fields = fields[:1]
		}
		for _, v := range pickIndex(n, fields) {
			if d, ok := r.parseDate(v); ok {
				times = append(times, d)
			}
		}
	}
	part = strings.ToLower(part)
	if !dateParts[part] {
		return false, nil
	}
	loc := r.opts.Location
	_, original := n.tags["originalzone"]
	if a, ok := n.tags["zone"]; ok {
		if z, ok := parseZone(r.expand(a.Strings[0])); ok {
			loc = z
		}
	}
	var values []string
	for _, d := range times {
		if !original {
			d = d.In(loc)
		}
		values = append(values, datePart(d, part))
	}
	return r.matchValues(n, values, keys), nil
}

type dateCacheEntry struct {
	t  time.Time
	ok bool
}

// parseDate is parseDateValue, once per value and run: rules often read
// the same Date field.
func (r *runner) parseDate(v string) (time.Time, bool) {
	if e, ok := r.dates[v]; ok {
		return e.t, e.ok
	}
	t, ok := parseDateValue(v)
	if r.dates == nil {
		r.dates = map[string]dateCacheEntry{}
	}
	if len(r.dates) < 64 {
		r.dates[v] = dateCacheEntry{t, ok}
	}
	return t, ok
}

// parseDateValue reads an RFC 5322 date, comments and obsolete forms
// included; the zone is the one written.
func parseDateValue(v string) (time.Time, bool) {
	v = strings.TrimSpace(v)
	if i := strings.IndexByte(v, '('); i > 0 {
		v = strings.TrimSpace(v[:i])
	}
	d, err := mail.ParseDate(v)
	if err != nil {
		return time.Time{}, false
	}
	return d, true
}
