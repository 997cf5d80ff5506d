package uidlist

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// KeywordsFileName is Dovecot's keyword table inside each maildir folder.
const KeywordsFileName = "dovecot-keywords"

// MaxKeywords is how many keywords fit in maildir file names: the letters
// a..z, index 0 being 'a'.
const MaxKeywords = 26

// Keywords maps a keyword's index (its letter minus 'a') to its name.
type Keywords [MaxKeywords]string

// ParseKeywords reads a dovecot-keywords file ("<index> <name>" per line).
// Lines with an index out of range or a malformed name are skipped, as
// Dovecot does.
func ParseKeywords(r io.Reader) (Keywords, error) {
	var k Keywords
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1024), maxLine)
	for sc.Scan() {
		idxStr, name, ok := strings.Cut(sc.Text(), " ")
		if !ok {
			continue
		}
		idx, err := strconv.Atoi(idxStr)
		if err != nil || idx < 0 || idx >= MaxKeywords || !ValidKeyword(name) {
			continue
		}
		k[idx] = name
	}
	if err := sc.Err(); err != nil {
		return k, fmt.Errorf("uidlist: read keywords: %w", err)
	}
	return k, nil
}

// ValidKeyword reports whether name is an IMAP flag-keyword atom (RFC 9051
// §9 flag-keyword = atom) that is safe in the file.
func ValidKeyword(name string) bool {
	if name == "" || len(name) > 128 {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`(){%*"\]`, c) >= 0 {
			return false
		}
	}
	return true
}

// Index returns the index of name (compared case-insensitively, RFC 9051
// §2.3.2 keywords are case-insensitive), or -1.
func (k *Keywords) Index(name string) int {
	for i, n := range k {
		if n != "" && strings.EqualFold(n, name) {
			return i
		}
	}
	return -1
}

// Add returns the index of name, adding it in the first free slot; -1 when
// all 26 slots are taken.
func (k *Keywords) Add(name string) (idx int, added bool) {
	if i := k.Index(name); i >= 0 {
		return i, false
	}
	for i, n := range k {
		if n == "" {
			k[i] = name
			return i, true
		}
	}
	return -1, false
}

// Marshal renders the table in Dovecot's format.
func (k *Keywords) Marshal() []byte {
	var b bytes.Buffer
	for i, n := range k {
		if n != "" {
			fmt.Fprintf(&b, "%d %s\n", i, n)
		}
	}
	return b.Bytes()
}
