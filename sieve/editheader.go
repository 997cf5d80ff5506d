package sieve

import (
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"
	"unicode/utf8"
)

// editheader (RFC 5293): addheader and deleteheader change the header the
// rest of the script sees, the scripts after it in a sequence
// (RunOptions.Edit), and the copies stored or redirected: each Store and
// Redirect carries the header as it was when the script took the action
// (Action.Edit), as Pigeonhole stores the message as it was then.

var editheaderCommands = map[string]spec{
	"addheader": {ext: "editheader", pos: []valueKind{vString, vString}, tags: map[string]tagSpec{"last": {}}},
	"deleteheader": {ext: "editheader", pos: []valueKind{vString, vStrings}, optLast: true,
		tags: tags(matchTags, map[string]tagSpec{"index": {param: vNumber}, "last": {}})},
}

// maxEditedHeaderValue bounds one added value, as Pigeonhole's
// sieve_editheader_max_header_size (2048 by default): a longer constant
// is a compile error, a longer value made at run time a runtime error.
const maxEditedHeaderValue = 2048

// What the edits add stays within what ReadMessage lets a script see of
// a message's header (maxHeaderFields fields, maxHeaderBytes octets,
// counted with LF line ends): the edited header holds at most that many
// fields and octets more than the message's own fields the script saw
// (for a large header, those within the bounds; the fields past them are
// kept in the copies as they are, HeaderEdit.Pieces). An addheader past
// it is a runtime error (the message kept in INBOX with its own header).
// Pigeonhole has no such bound, only its CPU time: without it an
// addheader in a foreverypart loop (100,000 iterations of 2 KB values)
// grew the header to 200 MB, held in memory and written with every copy.
const (
	maxEditedFields = maxHeaderFields
	maxEditedBytes  = maxHeaderBytes
)

// headerField is one field of an edited header: its name and the whole
// field as it is written, folds included, without the final CRLF.
type headerField struct {
	name string
	raw  string
	// orig is the field's number among the message's fields (1 for the
	// first), 0 for a field addheader added
	orig int
	// bottom: added with :last, after every field of the message
	bottom bool
}

// HeaderEdit is what editheader made of a message's header: the fields a
// script sees in their order, each added one or one of the message's.
// Immutable: a later edit makes a new one.
type HeaderEdit struct {
	fields    []headerField
	sizeDelta int64 // what the edits added to the size (LF line ends)
	// the fields' size (LF line ends), and the bounds of fields and size:
	// maxEditedFields and maxEditedBytes past the message's own
	editedBytes, maxBytes int64
	maxFields             int
	// drops delete fields past what a script sees (unseen.go)
	drops []*unseenDrop
	// the run's state of Pigeonhole's parse (runState), for the next
	// script of a sequence
	parsed, modified, contentLengthDenied bool
}

// Header is the edited header block as a script sees it: CRLF line ends,
// the empty line last (the message's fields past what ReadMessage shows a
// script are not in it; they are in Pieces). nil for a nil edit.
func (e *HeaderEdit) Header() []byte {
	if e == nil {
		return nil
	}
	var b strings.Builder
	for _, f := range e.fields {
		b.WriteString(f.raw)
		b.WriteString("\r\n")
	}
	b.WriteString("\r\n")
	return []byte(b.String())
}

// Piece is a part of an edited message: Data to write, or, when Data is
// nil, the octets [Off, Off+Len) of the input ReadMessage read; when Drop
// is set, those octets are header fields some of which deleteheader
// deleted, left out as Section reads them.
type Piece struct {
	Data     []byte
	Off, Len int64
	Drop     *FieldDrops
}

// Pieces is the edited message as pieces of the message msg was read
// from (ReadMessage, ReadMessageAt): the fields added at the top, the
// message's header without the fields deleted (the fields past what a
// script sees kept as they are, or, when a deleteheader reached them, a
// Piece with Drop, which leaves out those it deleted), the fields added
// with :last, then the rest of the message from the empty line on. The
// message itself is never read here: a deliverer streams it
// (Piece.Section). An error when msg was not made by ReadMessage.
func (e *HeaderEdit) Pieces(msg *Message) ([]Piece, error) {
	l := msg.layout
	if l == nil {
		return nil, errors.New("sieve: the message's header layout is unknown")
	}
	if e == nil {
		return []Piece{{Off: 0, Len: l.total}}, nil
	}
	var out []Piece
	kept := make([]bool, len(l.spans))
	for _, f := range e.fields {
		switch {
		case f.orig > len(l.spans):
			return nil, errors.New("sieve: the edit is not of this message")
		case f.orig > 0:
			kept[f.orig-1] = true
		case !f.bottom:
			out = append(out, Piece{Data: []byte(f.raw + "\r\n")})
		}
	}
	// the header, the deleted fields cut out
	var at int64
	for i, sp := range l.spans {
		if kept[i] {
			continue
		}
		if sp.start > at {
			out = append(out, Piece{Off: at, Len: sp.start - at})
		}
		at = sp.end
	}
	var drop *FieldDrops
	if len(e.drops) > 0 && l.unseen < l.end {
		if l.unseen > at {
			out = append(out, Piece{Off: at, Len: l.unseen - at})
		}
		rules := newUnseenRules(e.drops)
		drop = &FieldDrops{rules: rules, names: rules.names()}
		out = append(out, Piece{Off: l.unseen, Len: l.end - l.unseen, Drop: drop})
	} else if l.end > at {
		out = append(out, Piece{Off: at, Len: l.end - at})
	}
	bottomAt := len(out)
	for _, f := range e.fields {
		if f.orig == 0 && f.bottom {
			out = append(out, Piece{Data: []byte(f.raw + "\r\n")})
		}
	}
	if drop != nil {
		// the unseen fields end the header: a line end after the last
		// one kept, when it has none, is the piece's
		drop.eol = l.noEOL && len(out) > bottomAt
	} else if l.noEOL && l.end > at && len(out) > bottomAt {
		// the header's last line had no line end: the added fields
		// start lines of their own
		out = append(out[:bottomAt+1], out[bottomAt:]...)
		out[bottomAt] = Piece{Data: []byte("\r\n")}
	}
	if l.total > l.end {
		out = append(out, Piece{Off: l.end, Len: l.total - l.end})
	}
	return out, nil
}

// lfSize is the field's size with LF line ends, its own included, as the
// size test counts.
func (f headerField) lfSize() int64 {
	return int64(len(f.raw) - strings.Count(f.raw, "\r\n") + 1)
}

// validFieldName is RFC 5322's field-name: printable ASCII but the colon.
func validFieldName(s string) bool {
	if s == "" || len(s) > 997 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 33 || s[i] > 126 || s[i] == ':' {
			return false
		}
	}
	return true
}

// mayAdd and mayDelete are Pigeonhole's protections: a script can neither
// forge nor hide the trace headers the server and other filters rely on.
func mayAdd(name string) bool {
	return !strings.EqualFold(name, "x-sieve-redirected-from")
}

func mayDelete(name string) bool {
	switch strings.ToLower(name) {
	case "received", "auto-submitted", "x-sieve-redirected-from":
		return false
	}
	return true
}

func (s *Script) checkEditheader(c *Command, n *node) *Error {
	// deleteheader :last without :index means nothing; Pigeonhole 2.3
	// takes it, so it is taken.
	if c.Name == "deleteheader" {
		if len(n.pos) == 1 {
			// the value patterns are optional: the arguments seen are
			// the field name alone
			n.pos = append(n.pos, Arg{Kind: ArgTag})
		}
		if err := s.checkMatch(n); err != nil {
			return err
		}
	}
	name := n.pos[0].Strings[0]
	if name != "" && !s.hasVariables(name) && !validFieldName(name) {
		return errAt(n.pos[0].Pos, "%s command: specified field name `%s' is invalid", c.Name, sanitize(name, 80))
	}
	if name != "" && !s.hasVariables(name) {
		// taken, and denied when it runs: Pigeonhole warns
		if c.Name == "addheader" && !mayAdd(name) {
			s.warn(n.pos[0].Pos, "addheader command: adding specified header field `%s' is forbidden; modification will be denied", sanitize(name, 80))
		}
		if c.Name == "deleteheader" && !mayDelete(name) {
			s.warn(n.pos[0].Pos, "deleteheader command: deleting specified header field `%s' is forbidden; modification will be denied", sanitize(name, 80))
		}
	}
	if c.Name == "addheader" {
		v := n.pos[1].Strings[0]
		if !s.hasVariables(v) {
			if strings.IndexByte(v, 0) >= 0 {
				return errAt(n.pos[1].Pos, "addheader command: specified value `%s' is invalid (contains NUL character)", sanitize(v, 80))
			}
			if len(v) > maxEditedHeaderValue {
				return errAt(n.pos[1].Pos, "addheader command: specified header value `%s' is too large (%d bytes)", sanitize(v, 80), len(v))
			}
		}
	}
	return nil
}

// sanitize is a value as Dovecot's str_sanitize shows it in a message:
// up to its first NUL, control characters and invalid UTF-8 as '?', cut
// to at most limit octets ending "..." when longer.
func sanitize(s string, limit int) string {
	if i := strings.IndexByte(s, 0); i >= 0 {
		s = s[:i]
	}
	cut := len(s) > limit
	var b strings.Builder
	for i := 0; i < len(s); {
		c, n := utf8.DecodeRuneInString(s[i:])
		if cut && b.Len()+n > limit-3 {
			b.WriteString("...")
			break
		}
		switch {
		case c == utf8.RuneError && n <= 1, c < 0x20:
			b.WriteByte('?')
		default:
			b.WriteString(s[i : i+n])
		}
		i += n
	}
	return b.String()
}

// headerValues are the unfolded values of a header field as the script
// sees it now: edited or the message's own.
func (r *runner) headerValues(name string) []string {
	if r.edited == nil {
		out := r.msg.values(name)
		for _, v := range out {
			r.budget.spend(decodeCost * len(v))
		}
		return out
	}
	r.budget.spend(len(r.edited))
	var out []string
	for _, f := range r.edited {
		if strings.EqualFold(f.name, name) {
			r.budget.spend(decodeCost * len(f.raw))
			out = append(out, fieldValue(f.raw))
		}
	}
	return out
}

func (r *runner) headerExists(name string) bool {
	return len(r.headerValues(name)) > 0
}

// fieldValue is the unfolded value of a raw field.
func fieldValue(raw string) string {
	v := raw
	if i := strings.IndexByte(v, ':'); i >= 0 {
		v = v[i+1:]
	}
	return strings.TrimLeft(unfold(v), " \t")
}

// startEdit makes the edited list the run may change: the message's
// header copied in once, a list a snapshot shares copied again.
func (r *runner) startEdit() {
	r.snap = nil
	if r.edited != nil {
		if r.editShared {
			r.edited = append(make([]headerField, 0, len(r.edited)+1), r.edited...)
			r.editShared = false
		}
		return
	}
	r.edited = []headerField{}
	fields := r.msg.Header.Fields()
	for fields.Next() {
		raw, err := fields.Raw()
		if err != nil {
			raw = []byte(fields.Key() + ": " + fields.Value())
		}
		s := strings.TrimRight(string(raw), "\r\n")
		// CRLF inside folds, whatever the message had
		s = strings.ReplaceAll(strings.ReplaceAll(s, "\r\n", "\n"), "\n", "\r\n")
		f := headerField{name: fields.Key(), raw: s, orig: len(r.edited) + 1}
		r.edited = append(r.edited, f)
		r.editedBytes += f.lfSize()
	}
	r.maxEditedFields = len(r.edited) + maxEditedFields
	r.maxEditedBytes = r.editedBytes + maxEditedBytes
}

// snapshot is the header as edited so far, for an action taken now and
// for the result; nil while unedited. Later edits do not change it.
func (r *runner) snapshot() *HeaderEdit {
	if r.edited == nil {
		return nil
	}
	if r.snap == nil {
		r.snap = &HeaderEdit{fields: r.edited, sizeDelta: r.sizeDelta, editedBytes: r.editedBytes,
			maxBytes: r.maxEditedBytes, maxFields: r.maxEditedFields, drops: r.drops,
			parsed: r.parsed, modified: r.modified, contentLengthDenied: r.contentLengthDenied}
		r.editShared = true
	}
	return r.snap
}

func (r *runner) addheader(c *Command, n *node) error {
	name := r.expand(n.pos[0].Strings[0])
	value := r.expand(n.pos[1].Strings[0])
	if name == "" {
		return nil // Pigeonhole does nothing, and says nothing
	}
	// Pigeonhole's checks, in its order, with its messages
	if !validFieldName(name) {
		return r.errorf(c.Pos, "addheader action: specified field name `%s' is invalid", sanitize(name, 80))
	}
	if !mayAdd(name) {
		return nil // Pigeonhole warns and goes on
	}
	if strings.IndexByte(value, 0) >= 0 {
		return r.errorf(c.Pos, "addheader action: specified value `%s' is invalid (contains NUL character)", sanitize(value, 80))
	}
	if len(value) > maxEditedHeaderValue {
		return r.errorf(c.Pos, "addheader action: specified header value `%s' is too large (%d bytes)", sanitize(value, 80), len(value))
	}
	r.startEdit()
	r.budget.spend(decodeCost * len(value))
	name = fieldNameCase(name)
	f := headerField{name: name, raw: formatField(name, value)}
	if len(r.edited) >= r.maxEditedFields || r.editedBytes+f.lfSize() > r.maxEditedBytes {
		return r.errorf(c.Pos, "addheader action: the fields added would exceed %d fields or %d bytes", maxEditedFields, maxEditedBytes)
	}
	r.sizeDelta += f.lfSize()
	r.editedBytes += f.lfSize()
	if _, last := n.tags["last"]; last {
		f.bottom = true
		r.edited = append(r.edited, f)
	} else {
		r.budget.spend(len(r.edited))
		r.edited = append(r.edited, headerField{})
		copy(r.edited[1:], r.edited)
		r.edited[0] = f
	}
	r.headers = nil
	r.modified = true
	return r.denyContentLength(c)
}

// fieldNameCase is the name an added field is written with, as
// Pigeonhole's rfc2822_header_field_name_sanitize writes it: lower case
// but the first letter and those after a '-' ("X-Foo-Bar" of
// "x-foo-BAR"). Names are case-insensitive: only the copies show it.
func fieldNameCase(name string) string {
	b := []byte(strings.ToLower(name))
	for i := range b {
		if i == 0 || b[i-1] == '-' {
			if 'a' <= b[i] && b[i] <= 'z' {
				b[i] -= 'a' - 'A'
			}
		}
	}
	return string(b)
}

// formatField writes a field from a UTF-8 value as Pigeonhole does
// (headerencode.go): encoded, folded at 80 columns (which the size test
// sees), a line break in the value a fold; CRLF line ends, without the
// last one.
func formatField(name, value string) string {
	var b strings.Builder
	encodeHeaderValue(&b, value)
	return foldField(name, b.String())
}

// denyContentLength drops the message's Content-Length fields once a
// deleteheader reached the header and an edit changed it, as Pigeonhole
// does: its deleteheader parses the header (edit_mail_headers_parse),
// which denies the existence of any Content-Length field, "non-standard
// and it can wreak havoc when the message is modified"; the parsed header
// is what later tests see and what is stored and redirected once an edit
// changed it. Only the message's own fields: one added by addheader stays.
func (r *runner) denyContentLength(c *Command) error {
	if !r.parsed || !r.modified || r.contentLengthDenied {
		return nil
	}
	r.contentLengthDenied = true
	r.startEdit()
	kept := r.edited[:0:0]
	for _, f := range r.edited {
		if f.orig > 0 && strings.EqualFold(f.name, "content-length") {
			r.sizeDelta -= f.lfSize()
			r.editedBytes -= f.lfSize()
			continue
		}
		kept = append(kept, f)
	}
	r.edited = kept
	r.headers = nil
	// those past what a script sees
	found := false
	err := r.eachUnseen("content-length", false, func(f *unseenField) bool {
		r.sizeDelta -= f.lfSize
		found = true
		return true
	})
	if err != nil {
		return r.errorf(c.Pos, "%s action: reading the message: %v", c.Name, err)
	}
	if found {
		r.drops = append(r.drops[:len(r.drops):len(r.drops)], &unseenDrop{name: "content-length", at: -1})
	}
	return nil
}

func (r *runner) deleteheader(c *Command, n *node) error {
	name := r.expand(n.pos[0].Strings[0])
	if name == "" {
		// Pigeonhole takes the empty name as valid: it parses the
		// header (denyContentLength), and deletes nothing
		r.parsed = true
		return r.denyContentLength(c)
	}
	if !validFieldName(name) {
		return r.errorf(c.Pos, "deleteheader action: specified field name `%s' is invalid", sanitize(name, 80))
	}
	if !mayDelete(name) {
		return nil // Pigeonhole warns and goes on
	}
	r.parsed = true
	if err := r.denyContentLength(c); err != nil {
		return err
	}
	if err := r.deleteFields(c, n, name); err != nil {
		return err
	}
	return r.denyContentLength(c)
}

// deleteFields is deleteheader's deletion of the fields named name.
func (r *runner) deleteFields(c *Command, n *node, name string) error {
	var patterns []string
	if n.pos[1].Kind != ArgTag {
		patterns = r.strs(n.pos[1])
	}
	r.startEdit()
	// the fields of that name: those the script sees above the fields
	// past the window (the message's own and those added at the top),
	// then those past it (unseen.go), then those added with :last
	var top, bottom []int // positions in r.edited
	for i, f := range r.edited {
		if strings.EqualFold(f.name, name) {
			if f.bottom {
				bottom = append(bottom, i)
			} else {
				top = append(top, i)
			}
		}
	}
	lower := strings.ToLower(name)
	drop := map[int]bool{}
	m := r.newMatcher(n)
	// matches says whether a value matches the patterns; as in
	// Pigeonhole, :matches sets the match variables, the last field
	// matched winning
	matches := func(value func() string) bool {
		if patterns == nil {
			return true
		}
		for _, p := range patterns {
			if ok, caps := m.match(value(), p); ok {
				if caps != nil && r.s.required["variables"] {
					r.match = caps
				}
				return true
			}
		}
		return false
	}
	visible := func(i int) {
		if matches(func() string {
			r.budget.spend(decodeCost * len(r.edited[i].raw))
			return decodeHeader(fieldValue(r.edited[i].raw))
		}) {
			drop[i] = true
		}
	}
	var rule *unseenDrop // the rule over the unseen fields, when it deletes one
	unseen := func(f *unseenField, at int64) {
		hit := false
		if f.long && patterns != nil {
			// too long to be held: deleted unmatched (unseen.go)
			hit = true
			r.note(fmt.Sprintf("line %d: deleteheader: a %s field past what the script sees is longer than %d octets: deleted without its value matched",
				c.Pos.Line, sanitize(name, 80), maxUnseenValue))
		} else {
			hit = matches(func() string { return f.value(&r.budget) })
		}
		if hit {
			if rule == nil {
				rule = &unseenDrop{name: lower, at: at, patterns: patterns, m: m}
			}
			r.sizeDelta -= f.lfSize
		}
	}
	if a, ok := n.tags["index"]; ok {
		_, last := n.tags["last"]
		v, u, b := uint64(len(top)), uint64(0), uint64(len(bottom))
		if last || a.Number > v {
			// how many past the window: a pass counting them
			err := r.eachUnseen(lower, false, func(*unseenField) bool { u++; return true })
			if err != nil {
				return r.errorf(c.Pos, "deleteheader action: reading the message: %v", err)
			}
		}
		k := a.Number
		if last && k <= v+u+b {
			k = v + u + b + 1 - k
		}
		if patterns == nil && a.Number >= 1 && v+u+b > 0 && lower != "content-length" {
			// Pigeonhole changes the header when it has a field of the
			// name, even when :index is past them; not for
			// Content-Length, which its parse denied (a deleteheader
			// of it finds none)
			r.modified = true
		}
		switch {
		case k < 1 || k > v+u+b:
			return nil
		case k <= v:
			visible(top[k-1])
		case k > v+u:
			visible(bottom[k-v-u-1])
		default:
			nth := k - v
			err := r.eachUnseen(lower, patterns != nil, func(f *unseenField) bool {
				if nth--; nth > 0 {
					return true
				}
				unseen(f, f.start)
				return false
			})
			if err != nil {
				return r.errorf(c.Pos, "deleteheader action: reading the message: %v", err)
			}
		}
	} else {
		for _, i := range top {
			visible(i)
		}
		err := r.eachUnseen(lower, patterns != nil, func(f *unseenField) bool {
			unseen(f, -1)
			return true
		})
		if err != nil {
			return r.errorf(c.Pos, "deleteheader action: reading the message: %v", err)
		}
		for _, i := range bottom {
			visible(i)
		}
	}
	if rule != nil {
		if m.typ == "regex" {
			rule.res = map[string]*regexp.Regexp{}
			for _, p := range patterns {
				rule.res[p] = m.re(p)
			}
		}
		rule.m.work, rule.m.re = nil, nil
		r.drops = append(r.drops[:len(r.drops):len(r.drops)], rule)
		r.modified = true
	}
	if len(drop) == 0 {
		return nil
	}
	kept := r.edited[:0:0]
	for i, f := range r.edited {
		if !drop[i] {
			kept = append(kept, f)
		} else {
			r.sizeDelta -= f.lfSize()
			r.editedBytes -= f.lfSize()
		}
	}
	r.edited = kept
	r.headers = nil
	r.modified = true
	return nil
}

// eachUnseen calls fn for each field named lower (in lower case) past
// what the script sees that the run's deleteheader rules have not
// deleted, in order, until fn returns false: a pass over them (unseen.go),
// charged to the run's budget. With value, fn may read the field's value.
// Nothing without the message's source (ReadMessageAt).
func (r *runner) eachUnseen(lower string, value bool, fn func(f *unseenField) bool) error {
	l := r.msg.layout
	if r.msg.src == nil || l == nil || l.unseen >= l.end {
		return nil
	}
	rules := newUnseenRules(r.drops)
	// only the fields of that name matter: the rules' on others do not
	sc := newFieldScanner(r.msg.src, l.unseen, l.end-l.unseen,
		map[string]scanName{lower: {lower, value || rules.wantsValue(lower)}}, &r.budget)
	for r.budget.err == nil { // once spent, the run fails at its next step
		f, err := sc.next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if f.lower != lower || rules.drops(f, &r.budget) {
			continue
		}
		if !fn(f) {
			return nil
		}
	}
	return nil
}
