// Parsing a SEARCH program (RFC 9051 §6.4.4), and the search keys of SORT and THREAD.

package imap

import (
	"strings"
	"time"
	"unicode/utf8"

	"courriel/imap/wire"
)

// searchKey is one node of a parsed SEARCH program (RFC 9051 §6.4.4).
type searchKey struct {
	op    string // upper-case key name; "AND" for a parenthesised list
	set   wire.NumSet
	flag  string
	n     int64
	date  time.Time
	field string
	value string
	kids  []*searchKey
	mod   uint64 // MODSEQ
	fold  []byte // BODY and TEXT: value case-folded, at its first use (searchtext.go)
	// BODY and TEXT: 1 + the index of fold in the program's textKeys;
	// texts, on the program's root, are its BODY and TEXT strings
	// (searchtext.go), both set at its first evaluation.
	needle int
	texts  *textKeys
}

type searchArgs struct {
	esearch                          bool // RETURN given
	retMin, retMax, retAll, retCount bool
	retSave                          bool
	retUpdate, retPartial            bool   // RFC 5267 (context.go)
	partLo, partHi                   uint32 // PARTIAL's window
	root                             *searchKey
	modseq                           uint64 // MODSEQ of the response (RFC 7162 §3.1.5); 0: none
}

func (s *session) parseSearch() (*searchArgs, error) {
	a := &searchArgs{}
	if err := s.r.SP(); err != nil {
		return nil, err
	}
	root := &searchKey{op: "AND"}
	first := true
	for {
		if !first {
			if eol, err := s.r.AtEOL(); err != nil {
				return nil, err
			} else if eol {
				break
			}
			if err := s.r.SP(); err != nil {
				return nil, err
			}
		}
		c, err := s.r.Peek()
		if err != nil {
			return nil, err
		}
		if c == 'R' || c == 'r' || c == 'C' || c == 'c' {
			// RETURN (...) and CHARSET x come before the keys.
			if first || len(root.kids) == 0 {
				word, err := s.r.Token(func(c byte) bool { return wire.IsAtomChar(c) }, "search key")
				if err != nil {
					return nil, err
				}
				switch strings.ToUpper(word) {
				case "RETURN":
					if err := s.r.SP(); err != nil {
						return nil, err
					}
					if err := s.parseReturn(a, true); err != nil {
						return nil, err
					}
					first = false
					continue
				case "CHARSET":
					if err := s.r.SP(); err != nil {
						return nil, err
					}
					if err := s.readSearchCharset(); err != nil {
						return nil, err
					}
					first = false
					continue
				default:
					k, err := s.parseKeyNamed(word)
					if err != nil {
						return nil, err
					}
					root.kids = append(root.kids, k)
					first = false
					continue
				}
			}
		}
		k, err := s.parseKey()
		if err != nil {
			return nil, err
		}
		root.kids = append(root.kids, k)
		first = false
	}
	if err := s.r.CRLF(); err != nil {
		return nil, err
	}
	if len(root.kids) == 0 {
		return nil, bad("", "Missing search keys")
	}
	if a.esearch && a.impliesAll() {
		a.retAll = true // RFC 4731: RETURN () means ALL
	}
	if err := a.checkUpdate(); err != nil {
		return nil, err
	}
	a.root = root
	return a, nil
}

func (s *session) parseKey() (*searchKey, error) {
	c, err := s.r.Peek()
	if err != nil {
		return nil, err
	}
	switch {
	case c == '(':
		k := &searchKey{op: "AND"}
		err := s.r.List(false, func() error {
			kk, err := s.parseKey()
			k.kids = append(k.kids, kk)
			return err
		})
		return k, err
	case c == '*' || c == '$' || (c >= '0' && c <= '9'):
		set, err := s.r.SeqSet()
		return &searchKey{op: "SEQ", set: set}, err
	}
	word, err := s.r.Token(func(c byte) bool { return wire.IsAtomChar(c) }, "search key")
	if err != nil {
		return nil, err
	}
	return s.parseKeyNamed(word)
}

func (s *session) parseKeyNamed(word string) (*searchKey, error) {
	op := strings.ToUpper(word)
	k := &searchKey{op: op}
	str := func() (string, error) {
		if err := s.r.SP(); err != nil {
			return "", err
		}
		return s.r.AString()
	}
	// text is a string the message is searched for, in UTF-8 once read
	// in the search's charset. Bytes that are not UTF-8 where UTF-8 (or
	// US-ASCII, part of it) was said are a malformed key, answered BAD as
	// Dovecot does, rather than a search that can only find nothing.
	text := func() (string, error) {
		v, err := str()
		if err != nil {
			return "", err
		}
		if s.searchCS != "" {
			return toUTF8(s.searchCS, v)
		}
		if !utf8.ValidString(v) {
			return "", bad("", "Invalid search key: "+op+" string is not UTF-8")
		}
		return v, nil
	}
	switch op {
	case "ALL", "ANSWERED", "DELETED", "DRAFT", "FLAGGED", "NEW", "OLD", "RECENT", "SEEN",
		"UNANSWERED", "UNDELETED", "UNDRAFT", "UNFLAGGED", "UNSEEN":
		return k, nil
	case "BCC", "CC", "FROM", "TO", "SUBJECT", "BODY", "TEXT":
		v, err := text()
		k.value = v
		return k, err
	case "KEYWORD", "UNKEYWORD":
		if err := s.r.SP(); err != nil {
			return nil, err
		}
		f, err := s.parseFlag()
		k.flag = f
		return k, err
	case "HEADER":
		f, err := text()
		if err != nil {
			return nil, err
		}
		v, err := text()
		k.field, k.value = f, v
		return k, err
	case "BEFORE", "ON", "SINCE", "SENTBEFORE", "SENTON", "SENTSINCE":
		v, err := str()
		if err != nil {
			return nil, err
		}
		k.date, err = parseDate(v)
		return k, err
	case "LARGER", "SMALLER":
		if err := s.r.SP(); err != nil {
			return nil, err
		}
		n, err := s.r.Number64()
		k.n = int64(n)
		return k, err
	case "OLDER", "YOUNGER":
		// RFC 5032: an interval in seconds before the server's now, taken
		// once per command as Dovecot does, so that every message of one
		// search is measured against the same instant.
		if err := s.r.SP(); err != nil {
			return nil, err
		}
		n, err := s.r.Number()
		if err == nil && n == 0 {
			err = bad("", op+" needs a non-zero interval")
		}
		k.date = time.Now().Add(-time.Duration(n) * time.Second)
		return k, err
	case "UID":
		if err := s.r.SP(); err != nil {
			return nil, err
		}
		set, err := s.r.SeqSet()
		k.set = set
		return k, err
	case "MODSEQ":
		return k, s.parseSearchModSeq(k)
	case "NOT":
		if err := s.r.Enter(); err != nil {
			return nil, err
		}
		defer s.r.Leave()
		if err := s.r.SP(); err != nil {
			return nil, err
		}
		kk, err := s.parseKey()
		k.kids = []*searchKey{kk}
		return k, err
	case "OR":
		if err := s.r.Enter(); err != nil {
			return nil, err
		}
		defer s.r.Leave()
		for range 2 {
			if err := s.r.SP(); err != nil {
				return nil, err
			}
			kk, err := s.parseKey()
			if err != nil {
				return nil, err
			}
			k.kids = append(k.kids, kk)
		}
		return k, nil
	}
	return nil, bad("", "Unknown search key "+sanitize(word))
}

// charsetSearch reads " charset search-keys" of SORT and THREAD, where
// no RETURN may follow the charset.
func (s *session) charsetSearch() (*searchKey, error) {
	if err := s.r.SP(); err != nil {
		return nil, err
	}
	s.searchCS = ""
	if err := s.readSearchCharset(); err != nil {
		return nil, err
	}
	a, err := s.parseSearch()
	if err != nil {
		return nil, err
	}
	if a.esearch {
		return nil, bad("", "RETURN is not allowed after the charset")
	}
	return a.root, nil
}
