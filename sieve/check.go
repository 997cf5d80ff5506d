package sieve

import (
	"fmt"
	"regexp"
	"sort"
	"strings"
	"unicode/utf8"
)

type valueKind int

const (
	vNone    valueKind = iota
	vString            // exactly one string, not written as a list
	vStrings           // a string or a string list
	vNumber
)

func (v valueKind) String() string {
	switch v {
	case vString:
		return "a string"
	case vStrings:
		return "a string list"
	case vNumber:
		return "a number"
	}
	return "nothing"
}

type tagSpec struct {
	param valueKind
	group string // tags of one group exclude each other
	ext   string // extension the tag needs
	again bool   // may be given twice (Pigeonhole takes include :once :once)
}

type testArity int

const (
	noTests testArity = iota
	oneTest
	testList
)

type spec struct {
	ext      string
	tags     map[string]tagSpec
	pos      []valueKind
	optFirst bool // the first positional argument may be left out
	optLast  bool // the last positional argument may be left out
	tests    testArity
	block    bool
}

var (
	comparatorTag = tagSpec{param: vString, group: "comparator"}
	matchTags     = map[string]tagSpec{
		"is": {group: "match"}, "contains": {group: "match"}, "matches": {group: "match"},
		"regex": {group: "match", ext: "regex"},
		"value": {param: vString, group: "match", ext: "relational"},
		"count": {param: vString, group: "match", ext: "relational"},
	}
	addressPartTags = map[string]tagSpec{
		"all": {group: "address-part"}, "localpart": {group: "address-part"}, "domain": {group: "address-part"},
		"user": {group: "address-part", ext: "subaddress"}, "detail": {group: "address-part", ext: "subaddress"},
	}
)

func tags(sets ...map[string]tagSpec) map[string]tagSpec {
	m := map[string]tagSpec{"comparator": comparatorTag}
	for _, s := range sets {
		for k, v := range s {
			m[k] = v
		}
	}
	return m
}

var commandSpecs = map[string]spec{
	"require":  {pos: []valueKind{vStrings}},
	"if":       {tests: oneTest, block: true},
	"elsif":    {tests: oneTest, block: true},
	"else":     {block: true},
	"stop":     {},
	"keep":     {tags: map[string]tagSpec{"flags": {param: vStrings, ext: "imap4flags"}}},
	"discard":  {},
	"reject":   {ext: "reject", pos: []valueKind{vString}},
	"ereject":  {ext: "ereject", pos: []valueKind{vString}},
	"redirect": {pos: []valueKind{vString}, tags: map[string]tagSpec{"copy": {ext: "copy"}}},
	"fileinto": {ext: "fileinto", pos: []valueKind{vString}, tags: map[string]tagSpec{
		"copy": {ext: "copy"}, "flags": {param: vStrings, ext: "imap4flags"}, "create": {ext: "mailbox"}}},
	"setflag":    {ext: "imap4flags", pos: []valueKind{vString, vStrings}, optFirst: true},
	"addflag":    {ext: "imap4flags", pos: []valueKind{vString, vStrings}, optFirst: true},
	"removeflag": {ext: "imap4flags", pos: []valueKind{vString, vStrings}, optFirst: true},
	"set": {ext: "variables", pos: []valueKind{vString, vString}, tags: map[string]tagSpec{
		"lower": {group: "case"}, "upper": {group: "case"},
		"lowerfirst": {group: "first"}, "upperfirst": {group: "first"},
		"quotewildcard": {}, "length": {}, "encodeurl": {ext: "enotify"}}},
}

var testSpecs = map[string]spec{
	"address":  {pos: []valueKind{vStrings, vStrings}, tags: tags(matchTags, addressPartTags, indexTags, mimeTags)},
	"envelope": {ext: "envelope", pos: []valueKind{vStrings, vStrings}, tags: tags(matchTags, addressPartTags)},
	"header":   {pos: []valueKind{vStrings, vStrings}, tags: tags(matchTags, indexTags, mimeTags, mimeOptionTags)},
	"exists":   {pos: []valueKind{vStrings}, tags: mimeTags},
	"size":     {pos: []valueKind{vNumber}, tags: map[string]tagSpec{"over": {group: "size"}, "under": {group: "size"}}},
	"allof":    {tests: testList},
	"anyof":    {tests: testList},
	"not":      {tests: oneTest},
	"true":     {},
	"false":    {},
	"hasflag":  {ext: "imap4flags", pos: []valueKind{vStrings, vStrings}, optFirst: true, tags: tags(matchTags)},
	"string":   {ext: "variables", pos: []valueKind{vStrings, vStrings}, tags: tags(matchTags)},
}

// extensionCommands and extensionTests are the commands and tests of the
// extensions kept in files of their own.
var (
	extensionCommands = []map[string]spec{vacationCommands, editheaderCommands, includeCommands, ihaveCommands, mimeCommands, enotifyCommands}
	extensionTests    = []map[string]spec{bodyTests, dateTests, spamTests, duplicateTests, ihaveTests, environmentTests, enotifyTests}
)

func commandSpec(name string) (spec, bool) {
	if sp, ok := commandSpecs[name]; ok {
		return sp, true
	}
	for _, m := range extensionCommands {
		if sp, ok := m[name]; ok {
			return sp, true
		}
	}
	return spec{}, false
}

func testSpec(name string) (spec, bool) {
	if sp, ok := testSpecs[name]; ok {
		return sp, true
	}
	for _, m := range extensionTests {
		if sp, ok := m[name]; ok {
			return sp, true
		}
	}
	return spec{}, false
}

// hasExt says whether the script required ext: "" is no extension, "a|b"
// either.
func (s *Script) hasExt(ext string) bool {
	if ext == "" {
		return true
	}
	for _, e := range strings.Split(ext, "|") {
		if s.required[e] {
			return true
		}
	}
	return false
}

// node is what the checker resolved of a command's or test's arguments.
type node struct {
	tags    map[string]Arg // by tag name; the Arg is the tag's parameter, if any
	pos     []Arg
	regexps map[string]*regexp.Regexp // :regex keys without variables, compiled once
	include *Script                   // include: the script, nil when :optional and missing
	handle  string                    // vacation: the handle when not given
	// ihaveMissing: an ihave naming an extension we lack, false at
	// compile time
	ihaveMissing bool
}

// Script is a checked script, ready to Run any number of times, also
// concurrently.
type Script struct {
	cmds     []*Command
	nodes    map[any]*node
	required map[string]bool
	limits   Limits
	name     includeKey      // how include named it; zero for the main script
	globals  map[string]bool // variables declared global (include), lower case
	locals   map[string]bool // variables used before any global declaration of them
	comp     *compilation    // while compiling
	global   bool            // a global script (CompileOptions.Global)
	loops    []string        // while compiling: the names of the enclosing foreverypart loops
	depth    int             // include nesting
	// while compiling: the warnings (and errors) of the script, in the
	// order found, and the warnings of those it includes
	warnings, incWarnings []diagnostic
	// while compiling: the errors recorded (fail), how many, and the
	// names of the commands and tests found unknown
	recorded map[*Error]bool
	nerrors  int
	unknown  map[string]bool
}

// diagnostic is a warning or (err set) an error of a compile, in the
// order found.
type diagnostic struct {
	w   Warning
	err *Error
}

// fail records a check's error, once, as Pigeonhole's validator reports
// it and goes on with the next command or test while more errors are
// allowed (CompileOptions.MaxErrors); a quiet one (an unknown name
// reported before) fails the script without a word.
func (s *Script) fail(e *Error) {
	if e == nil || s.recorded[e] || e.quiet {
		return
	}
	if s.recorded == nil {
		s.recorded = map[*Error]bool{}
	}
	s.recorded[e] = true
	if s.moreErrors() {
		s.warnings = append(s.warnings, diagnostic{err: e})
	}
	s.nerrors++
}

// moreErrors is Pigeonhole's sieve_errors_more_allowed: fewer errors than
// CompileOptions.MaxErrors (0: no bound) so far.
func (s *Script) moreErrors() bool {
	max := s.comp.opts.MaxErrors
	return max <= 0 || s.nerrors < max
}

// firstError is the first error the compile recorded, else e.
func (s *Script) firstError(e *Error) *Error {
	for _, d := range s.warnings {
		if d.err != nil {
			return d.err
		}
	}
	return e
}

// unknownName is the error of a command or test name the script may not
// use: reported at its first occurrence only, as Pigeonhole's "unknown
// command 'x' (only reported once at first occurrence)"; quiet after.
func (s *Script) unknownName(name string, e *Error) *Error {
	if s.unknown[name] {
		e.quiet = true
		return e
	}
	if s.unknown == nil {
		s.unknown = map[string]bool{}
	}
	s.unknown[name] = true
	return e
}

// compile parses and checks one script of a compilation: the main one or
// one it includes.
//
// Its warnings are returned in Pigeonhole's order, which checks a script
// whole before it compiles those it includes: the script's own (the
// parser's, then the checks'), then those of its included scripts, in
// the order they are included; a script refused has the warnings found
// before the error.
//
// With the warnings are the errors of a script refused, all those the
// checks found up to CompileOptions.MaxErrors, in the order found: the
// checks go on past a command in error to the next one (and into its
// block), and past a test in error to the next of its list, as
// Pigeonhole's validator does; the error returned is the first. The
// parser stops at its first error. Only the warnings of the included
// scripts are returned: an included script's errors are its includer's
// one error.
func (c *compilation) compile(src []byte, key includeKey, global bool, depth int) (*Script, []diagnostic, error) {
	s := &Script{nodes: map[any]*node{}, required: map[string]bool{}, limits: c.limits,
		name: key, comp: c, depth: depth, global: global}
	cmds, hashEOF, errs := parseAll(src, c.limits, c.opts.MaxErrors)
	if hashEOF != nil {
		s.warn(*hashEOF, "no newline (CRLF) at end of hash comment at end of file")
	}
	if len(errs) > 0 {
		for _, e := range errs {
			s.fail(e)
		}
		return nil, s.warnings, errs[0]
	}
	s.cmds = cmds
	cerr := s.checkBlock(cmds, true)
	s.fail(cerr)
	warnings := append(s.warnings, s.incWarnings...)
	cerr = s.firstError(cerr)
	s.comp, s.warnings, s.incWarnings = nil, nil, nil
	if cerr != nil {
		return nil, warnings, cerr
	}
	return s, warnings, nil
}

// warn records a warning in this script, as Pigeonhole words it.
func (s *Script) warn(p Pos, format string, args ...any) {
	s.warnings = append(s.warnings, diagnostic{w: Warning{Script: s.name.name, Line: p.Line, Column: p.Column, Reason: fmt.Sprintf(format, args...)}})
}

// enabled says whether the script may require extension e: a global
// script those of CompileOptions.Extensions and GlobalExtensions, a
// personal one those not marked global.
func (s *Script) enabled(e string) bool {
	o := s.comp.opts
	if s.global {
		return o.Extensions.ForGlobal(o.GlobalExtensions).Enabled(e)
	}
	return o.Extensions.ForPersonal(o.GlobalExtensions).Enabled(e)
}

func errAt(p Pos, format string, args ...any) *Error {
	return &Error{Line: p.Line, Column: p.Column, Reason: fmt.Sprintf(format, args...)}
}

// checkBlock checks a block's commands and returns the first error. A
// command in error is recorded (fail) and the checks go on, while more
// errors are allowed, with its block (unless the command is unknown) and
// the next command, as Pigeonhole's validator.
func (s *Script) checkBlock(cmds []*Command, top bool) *Error {
	requireAllowed := top
	prev := ""
	decided := false // an if or elsif of this chain is true at compile time
	var first *Error
	for _, c := range cmds {
		if first != nil && !s.moreErrors() {
			break
		}
		if err := s.checkOne(c, &requireAllowed, &prev, &decided); err != nil {
			s.fail(err)
			if first == nil {
				first = err
			}
		}
	}
	return first
}

// checkOne checks a command of a block (checkBlock's state: whether
// require may still come, the previous command's name, whether the if
// chain is decided at compile time) and returns its first error, or its
// block's.
func (s *Script) checkOne(c *Command, requireAllowed *bool, prev *string, decided *bool) *Error {
	sp, ok := commandSpec(c.Name)
	if !ok {
		*prev = c.Name
		if _, isTest := testSpec(c.Name); isTest {
			return errAt(c.Pos, "%s is a test, not a command", c.Name)
		}
		return s.unknownName(c.Name, errAt(c.Pos, "unknown command %s", c.Name))
	}
	var n *node
	err := func() *Error {
		if c.Name == "require" {
			if !*requireAllowed {
				return errAt(c.Pos, "require must come before any other command, at the top of the script")
			}
		} else {
			*requireAllowed = false
		}
		if (c.Name == "elsif" || c.Name == "else") && *prev != "if" && *prev != "elsif" {
			return errAt(c.Pos, "%s must follow if or elsif", c.Name)
		}
		if !s.hasExt(sp.ext) {
			return s.unknownName(c.Name, errAt(c.Pos, "command %s needs require \"%s\"", c.Name, sp.ext))
		}
		var err *Error
		if n, err = s.checkArgs(c.Name, "command", c.Pos, sp, c.Args); err != nil {
			return err
		}
		s.nodes[c] = n
		if err := s.checkTests(c.Name, c.Pos, sp.tests, c.Tests, c.TestList); err != nil {
			return err
		}
		if sp.block != c.HasBlock {
			if sp.block {
				return errAt(c.Pos, "%s needs a block { ... }", c.Name)
			}
			return errAt(c.Pos, "%s takes no block; end it with ';'", c.Name)
		}
		return nil
	}()
	*prev = c.Name
	if err != nil && (!s.hasExt(sp.ext) || err.quiet) {
		return err // an unknown command: its block is not looked at
	}
	if err != nil {
		s.fail(err)
		if !s.moreErrors() {
			return err
		}
	}
	if c.Name == "if" {
		*decided = false
	}
	// As Pigeonhole, a block that can never run is not checked: that
	// is how ihave lets a script use extensions it may lack.
	skip := false
	switch c.Name {
	case "if", "elsif", "else":
		skip = *decided
		if c.Name != "else" && !*decided && err == nil {
			if v, ok := s.constantTest(c.Tests[0]); ok {
				skip, *decided = !v, v
			}
		}
	}
	if c.Name == "foreverypart" {
		name := ""
		if err == nil {
			if err = s.checkLoopCommand(c, n); err != nil {
				s.fail(err)
				if !s.moreErrors() {
					return err
				}
			} else if a, ok := n.tags["name"]; ok {
				name = a.Strings[0]
			}
		}
		s.loops = append(s.loops, name)
	}
	var berr *Error
	if !skip {
		berr = s.checkBlock(c.Block, false)
	}
	if c.Name == "foreverypart" {
		s.loops = s.loops[:len(s.loops)-1]
	}
	if err != nil {
		return err
	}
	if berr != nil {
		return berr
	}
	return s.checkCommand(c, n)
}

func (s *Script) checkTests(name string, p Pos, arity testArity, tests []*Test, list bool) *Error {
	switch arity {
	case noTests:
		if tests != nil || list {
			return errAt(p, "%s takes no test", name)
		}
	case oneTest:
		if len(tests) != 1 || list {
			return errAt(p, "%s needs one test, not a test list", name)
		}
	case testList:
		if !list {
			return errAt(p, "%s needs a test list ( ... )", name)
		}
	}
	// A test in error is recorded and the next of the list checked,
	// while more errors are allowed, as Pigeonhole's validator.
	var first *Error
	for _, t := range tests {
		if first != nil && !s.moreErrors() {
			break
		}
		if err := s.checkOneTest(t); err != nil {
			s.fail(err)
			if first == nil {
				first = err
			}
		}
	}
	return first
}

func (s *Script) checkOneTest(t *Test) *Error {
	sp, ok := testSpec(t.Name)
	if !ok {
		if _, isCmd := commandSpec(t.Name); isCmd {
			return errAt(t.Pos, "%s is a command, not a test", t.Name)
		}
		return s.unknownName(t.Name, errAt(t.Pos, "unknown test %s", t.Name))
	}
	if !s.hasExt(sp.ext) {
		return s.unknownName(t.Name, errAt(t.Pos, "test %s needs require \"%s\"", t.Name, sp.ext))
	}
	n, err := s.checkArgs(t.Name, "test", t.Pos, sp, t.Args)
	if err != nil {
		return err
	}
	s.nodes[t] = n
	if err := s.checkTests(t.Name, t.Pos, sp.tests, t.Tests, t.TestList); err != nil {
		return err
	}
	return s.checkTest(t, n)
}

func kindOf(a Arg) valueKind {
	switch a.Kind {
	case ArgNumber:
		return vNumber
	case ArgStrings:
		if a.List {
			return vStrings
		}
		return vString
	}
	return vNone
}

func fits(want valueKind, a Arg) bool {
	got := kindOf(a)
	return got == want || (want == vStrings && got == vString)
}

func (s *Script) checkArgs(name, what string, p Pos, sp spec, args []Arg) (*node, *Error) {
	if s.required["encoded-character"] {
		for i := range args {
			for j, str := range args[i].Strings {
				d, err := decodeEncodedCharacters(str)
				if err != nil {
					return nil, errAt(args[i].Pos, "%v", err)
				}
				args[i].Strings[j] = d
			}
		}
	}
	if s.required["variables"] && s.required["include"] {
		for _, a := range args {
			for _, str := range a.Strings {
				s.noteLocalUses(str)
			}
		}
	}
	n := &node{tags: map[string]Arg{}}
	groups := map[string]string{}
	i := 0
	for ; i < len(args) && args[i].Kind == ArgTag; i++ {
		a := args[i]
		ts, ok := sp.tags[a.Tag]
		if !ok || !s.hasExt(ts.ext) {
			if ok {
				return nil, errAt(a.Pos, "tag :%s of %s %s needs require \"%s\"", a.Tag, what, name, ts.ext)
			}
			return nil, errAt(a.Pos, "unknown tag :%s for %s %s", a.Tag, what, name)
		}
		if _, dup := n.tags[a.Tag]; dup && !ts.again {
			return nil, errAt(a.Pos, "tag :%s given twice", a.Tag)
		}
		if ts.group != "" {
			if other, dup := groups[ts.group]; dup {
				return nil, errAt(a.Pos, "tags :%s and :%s of %s %s exclude each other", other, a.Tag, what, name)
			}
			groups[ts.group] = a.Tag
		}
		var param Arg
		if ts.param != vNone {
			if i+1 >= len(args) || !fits(ts.param, args[i+1]) {
				return nil, errAt(a.Pos, "tag :%s needs %s after it", a.Tag, ts.param)
			}
			i++
			param = args[i]
		}
		n.tags[a.Tag] = param
	}
	rest := args[i:]
	want := sp.pos
	if sp.optFirst && len(rest) < len(want) {
		want = want[1:]
	}
	if sp.optLast && len(rest) == len(want)-1 {
		want = want[:len(want)-1]
	}
	for j, a := range rest {
		if a.Kind == ArgTag {
			return nil, errAt(a.Pos, "tag :%s must come before the positional arguments of %s", a.Tag, name)
		}
		if j >= len(want) {
			return nil, errAt(a.Pos, "too many arguments for %s %s", what, name)
		}
		if !fits(want[j], a) {
			return nil, errAt(a.Pos, "argument %d of %s %s must be %s", j+1, what, name, want[j])
		}
	}
	if len(rest) < len(want) {
		return nil, errAt(p, "%s %s needs %d arguments, found %d", what, name, len(want), len(rest))
	}
	if sp.optFirst && len(want) < len(sp.pos) {
		n.pos = append([]Arg{{Kind: ArgTag}}, rest...) // Kind ArgTag marks the argument left out
	} else {
		n.pos = rest
	}
	if name == "size" && len(n.tags) == 0 {
		return nil, errAt(p, "size needs :over or :under")
	}
	return n, nil
}

func (s *Script) checkCommand(c *Command, n *node) *Error {
	switch c.Name {
	case "require":
		// Each capability refused is an error, the others are loaded,
		// as Pigeonhole's cmd_require_validate.
		var first *Error
		for _, e := range n.pos[0].Strings {
			if !s.enabled(e) {
				// Pigeonhole's words: a script refused here is one it
				// refuses too, for the same reason.
				var err *Error
				if s.comp.opts.Extensions.ForGlobal(s.comp.opts.GlobalExtensions).Enabled(e) {
					err = errAt(n.pos[0].Pos, "require command: failed to load Sieve capability `%s': its use is restricted to global scripts", e)
				} else {
					err = errAt(n.pos[0].Pos, "require command: unknown Sieve capability `%s'", e)
				}
				s.fail(err)
				if first == nil {
					first = err
				}
				continue
			}
			s.require(e)
		}
		if first != nil {
			return first
		}
	case "set":
		name := n.pos[0].Strings[0]
		if l := strings.ToLower(name); strings.HasPrefix(l, "global.") && s.required["include"] {
			name = name[len("global."):]
		}
		if !validIdentifier(name) {
			return errAt(n.pos[0].Pos, "invalid variable name \"%s\"", name)
		}
		if s.required["include"] && name == n.pos[0].Strings[0] {
			s.noteLocal(name)
		}
	case "setflag", "addflag", "removeflag":
		if n.pos[0].Kind != ArgTag {
			if !s.required["variables"] {
				return errAt(c.Pos, "%s with a variable name needs require \"variables\"", c.Name)
			}
			if name := n.pos[0].Strings[0]; !validIdentifier(name) {
				return errAt(n.pos[0].Pos, "invalid variable name \"%s\"", name)
			}
		}
	case "vacation":
		return s.checkVacation(c, n)
	case "addheader", "deleteheader":
		return s.checkEditheader(c, n)
	case "include", "global", "return":
		return s.checkInclude(c, n)
	case "break", "extracttext":
		return s.checkLoopCommand(c, n)
	case "notify":
		return s.checkNotify(c, n)
	case "fileinto":
		if f := n.pos[0].Strings[0]; !s.hasVariables(f) && !utf8.ValidString(f) {
			return errAt(n.pos[0].Pos, "folder name is not UTF-8")
		}
	case "redirect":
		if a := n.pos[0].Strings[0]; !s.hasVariables(a) {
			if _, err := parseRedirectAddress(a); err != nil {
				return errAt(n.pos[0].Pos, "redirect address \"%s\" is invalid: %v", a, err)
			}
		}
	}
	return nil
}

// require makes a known extension available to the rest of the script.
func (s *Script) require(e string) {
	s.required[e] = true
	// Pigeonhole's implied extensions: the larger one brings the smaller.
	switch e {
	case "spamtestplus":
		s.required["spamtest"] = true
	case "vacation-seconds":
		s.required["vacation"] = true
	}
}

func (s *Script) hasVariables(v string) bool {
	return s.required["variables"] && strings.Contains(v, "${")
}

func (s *Script) checkTest(t *Test, n *node) *Error {
	if err := s.checkMatch(n); err != nil {
		return err
	}
	if err := s.checkIndex(t, n); err != nil {
		return err
	}
	if err := checkMIMETags(t.Name, t.Pos, n); err != nil {
		return err
	}
	switch t.Name {
	case "body":
		return s.checkBody(t, n)
	case "date", "currentdate":
		return s.checkDate(t, n)
	case "duplicate":
		return s.checkDuplicate(t, n)
	case "envelope":
		for _, part := range n.pos[0].Strings {
			if s.hasVariables(part) {
				continue
			}
			if p := strings.ToLower(part); p != "from" && p != "to" && p != "auth" {
				return errAt(n.pos[0].Pos, "envelope part \"%s\" is not supported (from, to or auth)", part)
			}
		}
	case "address":
		for _, h := range n.pos[0].Strings {
			if !s.hasVariables(h) && !addressHeaders[strings.ToLower(h)] {
				return errAt(n.pos[0].Pos, "header \"%s\" is not allowed for the address test", h)
			}
		}
	case "ihave":
		s.checkIhave(n)
	case "hasflag":
		if n.pos[0].Kind != ArgTag && !s.required["variables"] {
			return errAt(t.Pos, "hasflag with variable names needs require \"variables\"")
		}
	}
	return nil
}

func validIdentifier(s string) bool {
	if s == "" || !isIdentStart(s[0]) {
		return false
	}
	for i := 1; i < len(s); i++ {
		if !isIdentChar(s[i]) {
			return false
		}
	}
	return true
}

// addressHeaders are the headers Pigeonhole lets the address test read:
// those holding addresses, standard or common.
var addressHeaders = map[string]bool{
	"from": true, "to": true, "cc": true, "bcc": true, "sender": true,
	"resent-from": true, "resent-to": true, "reply-to": true, "resent-reply-to": true,
	"resent-sender": true, "resent-cc": true, "resent-bcc": true,
	"for-approval": true, "for-handling": true, "for-comment": true, "apparently-to": true,
	"errors-to": true, "delivered-to": true, "return-receipt-to": true, "x-admin": true,
	"read-receipt-to": true, "x-confirm-reading-to": true, "return-receipt-requested": true,
	"registered-mail-reply-requested-by": true, "mail-followup-to": true,
	"mail-reply-to": true, "abuse-reports-to": true, "x-complaints-to": true,
	"x-report-abuse-to": true, "x-beenthere": true, "x-original-from": true, "x-original-to": true,
}

// Required returns the extensions the script requires, sorted.
func (s *Script) Required() []string {
	var r []string
	for e := range s.required {
		r = append(r, e)
	}
	sort.Strings(r)
	return r
}
