package sieve

// ihave (RFC 5463): the ihave test asks whether extensions are there, and
// the error command fails the run on purpose. As in Pigeonhole, ihave of
// extensions all enabled (CompileOptions.Extensions; in a personal script,
// not those of GlobalExtensions) requires them for
// the rest of the script, and ihave of one unknown or disabled is false at
// compile time: a block it guards is not checked (its commands may belong
// to an extension we lack), so a script written for a richer server still
// compiles here.

var ihaveCommands = map[string]spec{
	"error": {ext: "ihave", pos: []valueKind{vString}},
}

var ihaveTests = map[string]spec{
	"ihave": {ext: "ihave", pos: []valueKind{vStrings}},
}

// checkIhave requires the extensions of an ihave when all are enabled,
// and records whether they are.
func (s *Script) checkIhave(n *node) {
	for _, e := range n.pos[0].Strings {
		// Taken literally: RFC 5463 §4 forbids variables here, and
		// Pigeonhole does not expand them. Nor may ihave enable the
		// extensions that change how the script reads (§4): variables and
		// encoded-character make it false, as in Pigeonhole.
		if !s.enabled(e) || e == "variables" || e == "encoded-character" {
			n.ihaveMissing = true
			return
		}
	}
	for _, e := range n.pos[0].Strings {
		s.require(e)
	}
}

// constantTest gives the value of a test known at compile time: true,
// false, an ihave of an unknown extension (false), and not, allof and
// anyof of those where they decide (anyof with a true subtest, allof with
// a false one). Pigeonhole folds the same tests: it skips the blocks they
// rule out and never runs their subtests, whose :matches would set match
// variables.
func (s *Script) constantTest(t *Test) (value, ok bool) {
	switch t.Name {
	case "true":
		return true, true
	case "false":
		return false, true
	case "ihave":
		if n := s.nodes[t]; n != nil && n.ihaveMissing {
			return false, true
		}
		return false, false
	case "not":
		v, ok := s.constantTest(t.Tests[0])
		return !v, ok
	case "allof", "anyof":
		decisive := t.Name == "anyof" // the value that decides alone
		all := true
		for _, sub := range t.Tests {
			v, ok := s.constantTest(sub)
			if ok && v == decisive {
				return decisive, true
			}
			all = all && ok
		}
		return !decisive, all
	}
	return false, false
}
