package sieve

import (
	"fmt"
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
	if t.Name == "date" {
		if h := n.pos[0].Strings[0]; !s.hasVariables(h) && !validFieldName(h) {
			return errAt(n.pos[0].Pos, "date: invalid header field name \"%s\"", h)
		}
	}
	// An unknown date part makes the test false and an invalid :zone is
	// ignored, at run time: Pigeonhole takes both at compile time.
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
	// The date after the last ';', as in a Received field (Pigeonhole does
	// this for any field).
	d := v
	if i := strings.LastIndexByte(v, ';'); i >= 0 {
		d = v[i+1:]
	}
	t, ok := parseDateValue(d)
	if r.dates == nil {
		r.dates = map[string]dateCacheEntry{}
	}
	if len(r.dates) < 64 {
		r.dates[v] = dateCacheEntry{t, ok}
	}
	return t, ok
}

// parseDateValue reads an RFC 5322 date (§3.3), the obsolete forms of
// §4.3 included as Pigeonhole takes them: comments, a missing or any day
// name, two- or three-digit years, a missing seconds field, zone names (UT,
// GMT, EST…, military letters), no zone at all (+0000), second 60 read as
// 59. The zone is the one written.
func parseDateValue(v string) (time.Time, bool) {
	// drop comments, not nested deeper than a few levels in practice
	var b strings.Builder
	depth := 0
	for i := 0; i < len(v); i++ {
		switch c := v[i]; {
		case c == '(':
			depth++
		case c == ')' && depth > 0:
			depth--
		case depth == 0:
			b.WriteByte(c)
		}
	}
	f := strings.Fields(strings.ReplaceAll(b.String(), ",", " , "))
	if len(f) > 0 && len(f[0]) > 0 && (f[0][0] < '0' || f[0][0] > '9') {
		f = f[1:] // day name
	}
	if len(f) > 0 && f[0] == "," {
		f = f[1:]
	}
	if len(f) < 4 {
		return time.Time{}, false
	}
	day, ok := smallNumber(f[0], 1, 2)
	if !ok || day < 1 || day > 31 {
		return time.Time{}, false
	}
	month := 0
	for i, m := range []string{"jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"} {
		if strings.EqualFold(f[1], m) {
			month = i + 1
		}
	}
	if month == 0 {
		return time.Time{}, false
	}
	year, ok := smallNumber(f[2], 2, 4)
	if !ok {
		return time.Time{}, false
	}
	switch {
	case len(f[2]) == 2 && year < 50:
		year += 2000
	case len(f[2]) <= 3:
		year += 1900
	}
	hms := strings.Split(f[3], ":")
	if len(hms) < 2 || len(hms) > 3 {
		return time.Time{}, false
	}
	var tm [3]int
	for i, p := range hms {
		n, ok := smallNumber(p, 1, 2)
		if !ok {
			return time.Time{}, false
		}
		tm[i] = n
	}
	if tm[0] > 23 || tm[1] > 59 || tm[2] > 60 {
		return time.Time{}, false
	}
	if tm[2] == 60 {
		tm[2] = 59
	}
	off := 0
	if len(f) > 4 {
		var ok bool
		if off, ok = zoneOffset(f[4]); !ok {
			return time.Time{}, false
		}
	}
	t := time.Date(year, time.Month(month), day, tm[0], tm[1], tm[2], 0, time.FixedZone("", off))
	if t.Day() != day {
		return time.Time{}, false // 31 Nov
	}
	return t, true
}

func smallNumber(s string, minLen, maxLen int) (int, bool) {
	if len(s) < minLen || len(s) > maxLen {
		return 0, false
	}
	n := 0
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
		n = n*10 + int(s[i]-'0')
	}
	return n, true
}

// obsoleteZones are RFC 5322 §4.3's zone names, in hours.
var obsoleteZones = map[string]int{"ut": 0, "gmt": 0, "z": 0, "est": -5, "edt": -4, "cst": -6, "cdt": -5,
	"mst": -7, "mdt": -6, "pst": -8, "pdt": -7}

// zoneOffset reads a zone: +hhmm/-hhmm or an obsolete name (RFC 5322
// §4.3); military letters other than Z carry no information (-0000).
func zoneOffset(z string) (int, bool) {
	if len(z) == 5 && (z[0] == '+' || z[0] == '-') {
		h, ok1 := smallNumber(z[1:3], 2, 2)
		m, ok2 := smallNumber(z[3:5], 2, 2)
		if !ok1 || !ok2 {
			return 0, false
		}
		off := (h*60 + m) * 60
		if z[0] == '-' {
			off = -off
		}
		return off, true
	}
	if h, ok := obsoleteZones[strings.ToLower(z)]; ok {
		return h * 3600, true
	}
	if len(z) == 1 && (z[0]|0x20) >= 'a' && (z[0]|0x20) <= 'z' && (z[0]|0x20) != 'j' {
		return 0, true
	}
	return 0, false
}
