package sieve

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// spamtest, spamtestplus and virustest (RFC 5235): the verdicts of the
// filters that saw the message before delivery, read from the header
// fields they added, configured as Pigeonhole's sieve_spamtest_* and
// sieve_virustest_* settings.

var spamTests = map[string]spec{
	"spamtest": {ext: "spamtest", pos: []valueKind{vString},
		tags: tags(matchTags, map[string]tagSpec{"percent": {ext: "spamtestplus"}})},
	"virustest": {ext: "virustest", pos: []valueKind{vString}, tags: tags(matchTags)},
}

// SpamTestConfig configures spamtest (Spam) and virustest (Virus).
type SpamTestConfig struct {
	Spam, Virus SpamStatus
}

// SpamStatus says where a verdict is and how to read it, as Pigeonhole's
// settings do. A zero SpamStatus (no StatusHeader) is "not configured":
// the test sees "0", not tested.
type SpamStatus struct {
	// StatusType is "score" (a number, against the maximum), "strlen"
	// (the length of a string such as "*****") or "text" (TextValues).
	// sieve_spamtest_status_type.
	StatusType string
	// StatusHeader is "Field-Name" or "Field-Name: regexp", the regexp's
	// first group the status (sieve_spamtest_status_header). The first
	// field of that name is read. Regexps are Go's (RE2) syntax.
	StatusHeader string
	// MaxHeader, in the same form, gives the maximum score
	// (sieve_spamtest_max_header); when empty MaxValue does
	// (sieve_spamtest_max_value).
	MaxHeader string
	MaxValue  float64
	// TextValues[i] is the status text of value i, 0 to 10 for spamtest,
	// 0 to 5 for virustest (sieve_spamtest_text_valueN).
	TextValues []string
	// Last reads the last field of the name instead of the first
	// (Pigeonhole's way): our milters append their fields at the end of
	// the header, so a field the sender forged comes before theirs.
	Last bool
}

// DefaultSpamTest reads what rspamd adds through the milter:
// "X-Spamd-Result: default: False [1.20 / 15.00]; SYMBOL(…)…", the score
// against the reject threshold written beside it. Virus verdicts have no
// header of their own there (they are symbols inside that one), so
// virustest is not configured: it sees "0". The last X-Spamd-Result is
// read: the milter appends rspamd's, a forged one comes first.
func DefaultSpamTest() *SpamTestConfig {
	return &SpamTestConfig{Spam: SpamStatus{
		StatusType:   "score",
		StatusHeader: rspamdStatusHeader,
		MaxHeader:    rspamdMaxHeader,
		Last:         true,
	}}
}

// The rspamd header specs, in a syntax POSIX and Go regexps read alike
// (Pigeonhole can be given the same).
const (
	rspamdStatusHeader = `X-Spamd-Result: \[[[:space:]]*(-?[0-9]+(\.[0-9]+)?)[[:space:]]*/`
	rspamdMaxHeader    = `X-Spamd-Result: /[[:space:]]*(-?[0-9]+(\.[0-9]+)?)[[:space:]]*\]`
)

// splitHeaderSpec reads "Name" or "Name: regexp".
func splitHeaderSpec(spec string) (name string, re *regexp.Regexp, err error) {
	name, pattern, ok := strings.Cut(spec, ":")
	name = strings.TrimSpace(name)
	if !validFieldName(name) {
		return "", nil, fmt.Errorf("invalid header field name %q", name)
	}
	if !ok {
		return name, nil, nil
	}
	re, err = regexp.Compile(strings.TrimSpace(pattern))
	return name, re, err
}

// readStatusField is the value the spec points at: the first field of
// that name, or its regexp's first group.
func (r *runner) readStatusField(spec string, last bool) (string, bool) {
	name, re, err := splitHeaderSpec(spec)
	if err != nil {
		return "", false
	}
	vals := r.headerValues(name)
	if len(vals) == 0 {
		return "", false
	}
	v := vals[0]
	if last {
		v = vals[len(vals)-1]
	}
	if re == nil {
		return strings.TrimSpace(v), true
	}
	m := re.FindStringSubmatch(v)
	if len(m) < 2 {
		return "", false
	}
	return m[1], true
}

func parseDecimal(s string) (float32, bool) {
	s = strings.TrimSpace(s)
	f, err := strconv.ParseFloat(s, 32)
	if err != nil {
		return 0, false
	}
	return float32(f), true
}

// spamValue is the test's value: "0" not tested, else 1 to 10 (spamtest),
// 1 to 5 (virustest), or 0 to 100 (:percent).
func (r *runner) spamValue(virus, percent bool) string {
	cfg := r.opts.SpamTest
	if cfg == nil {
		cfg = DefaultSpamTest()
	}
	st := cfg.Spam
	maxText := 10
	if virus {
		st, maxText = cfg.Virus, 5
	}
	if st.StatusHeader == "" {
		return "0"
	}
	var maxValue float32
	if st.StatusType == "text" {
		maxValue = float32(maxText)
	} else if st.MaxHeader != "" {
		v, ok := r.readStatusField(st.MaxHeader, st.Last)
		if !ok {
			return "0"
		}
		if maxValue, ok = parseDecimal(v); !ok {
			return "0"
		}
	} else {
		maxValue = float32(st.MaxValue)
	}
	if maxValue == 0 {
		return "0"
	}
	status, ok := r.readStatusField(st.StatusHeader, st.Last)
	if !ok {
		return "0"
	}
	var value float32
	switch st.StatusType {
	case "strlen":
		value = float32(len(status))
	case "text":
		found := false
		for i := 0; i <= maxText && i < len(st.TextValues); i++ {
			if st.TextValues[i] != "" && st.TextValues[i] == status {
				value, found = float32(i), true
				break
			}
		}
		if !found {
			return "0"
		}
	default:
		if value, ok = parseDecimal(status); !ok {
			return "0"
		}
	}
	var ratio float32
	switch {
	case value < 0:
		ratio = 0
	case value > maxValue:
		ratio = 1
	default:
		ratio = value / maxValue
	}
	var score int
	switch {
	case percent:
		score = int(ratio*100 + 0.001)
	case virus:
		score = int(ratio*4 + 1.001)
	default:
		score = int(ratio*9 + 1.001)
	}
	return strconv.Itoa(score)
}

func (r *runner) spamTest(t *Test, n *node) (bool, error) {
	_, percent := n.tags["percent"]
	key := [2]bool{t.Name == "virustest", percent}
	v, ok := r.spam[key]
	if !ok {
		v = r.spamValue(key[0], key[1])
		if r.spam == nil {
			r.spam = map[[2]bool]string{}
		}
		r.spam[key] = v
	}
	return r.matchValues(n, []string{v}, r.strs(n.pos[0])), nil
}
