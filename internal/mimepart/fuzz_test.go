package mimepart

import (
	"bytes"
	"reflect"
	"testing"
)

// lineSplit is Split written the slow, plain way: line by line, each line
// asked of Line. FuzzSplit holds Split's search for the delimiter's bytes
// to it.
func lineSplit(body []byte, d Delimiter, maxParts int) Multipart {
	m := Multipart{Preamble: Span{0, len(body)}, Epilogue: Span{len(body), len(body)}}
	start := -1
	for pos := 0; pos <= len(body); {
		line, after := body[pos:], len(body)+1
		if eol := bytes.IndexByte(line, '\n'); eol >= 0 {
			line, after = bytes.TrimSuffix(line[:eol], []byte("\r")), pos+eol+1
		}
		delim, isClose := d.Line(line)
		if !delim {
			pos = after
			continue
		}
		end := pos
		if end > 0 && body[end-1] == '\n' {
			end--
			if end > 0 && body[end-1] == '\r' {
				end--
			}
		}
		if start < 0 {
			m.Preamble.End = end
		} else {
			m.Parts = append(m.Parts, Span{start, max(end, start)})
			start = -1
		}
		if isClose {
			m.Closed, m.Epilogue.Start = true, min(after, len(body))
			return m
		}
		if after > len(body) || len(m.Parts) >= maxParts {
			return m
		}
		start, pos = after, after
	}
	if start >= 0 {
		m.Parts = append(m.Parts, Span{start, len(body)})
	}
	return m
}

// FuzzSplit: Split finds what a line-by-line walk finds, and its spans
// are in order, inside the body, and never overlap.
func FuzzSplit(f *testing.F) {
	f.Add("b", []byte("pre\r\n--b\r\nX: y\r\n\r\none\r\n--b\r\n--b\n\ntwo\n--bb\r\n--b-- \r\nepi"), 3)
	f.Add("", []byte("--\r\n----\r\n"), 10)
	f.Add("b", []byte("--b\r\r\n\r\n-\n--b\r--b\n--b"), 10)
	f.Add("ab", []byte("x--ab\r\n--a\r\n--ab--"), 1)
	f.Fuzz(func(t *testing.T, boundary string, body []byte, maxParts int) {
		maxParts = max(0, maxParts%50)
		d := NewDelimiter(boundary)
		got := Split(body, d, maxParts)
		if want := lineSplit(body, d, maxParts); !reflect.DeepEqual(got, want) {
			t.Fatalf("Split %+v\nlines %+v", got, want)
		}
		if len(got.Parts) > maxParts {
			t.Fatalf("%d parts, bound %d", len(got.Parts), maxParts)
		}
		prev := got.Preamble.End
		if got.Preamble.Start != 0 || prev > len(body) {
			t.Fatalf("preamble %+v", got.Preamble)
		}
		for _, p := range append(got.Parts, got.Epilogue) {
			if p.Start < prev || p.End < p.Start || p.End > len(body) {
				t.Fatalf("span %+v after %d, body %d: %+v", p, prev, len(body), got)
			}
			prev = p.End
		}
	})
}
