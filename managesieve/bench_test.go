package managesieve

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"courriel/internal/testenv"
)

// fiftyRules is a script like a user's filter set: 50 rules.
func fiftyRules() string {
	var b strings.Builder
	b.WriteString("require [\"fileinto\", \"imap4flags\"];\r\n")
	for i := range 50 {
		fmt.Fprintf(&b, "if anyof (header :contains \"subject\" \"topic %d\", address :is \"from\" \"list%d@example.org\") {\r\n  addflag \"\\\\Seen\";\r\n  fileinto \"Lists.%d\";\r\n  stop;\r\n}\r\n", i, i, i)
	}
	return b.String()
}

// BenchmarkPutScript is the latency of PUTSCRIPT of a 50-rule script
// (about 6 KB) over TLS, as a client sees it: the literal read, the
// script compiled, written to ~/sieve/tmp, fsynced, renamed, the
// directory fsynced. Reports p50 and p99.
//
//	go test -run XXX -bench PutScript -benchtime 500x ./managesieve/
func BenchmarkPutScript(b *testing.B) {
	e := newEnvIn(b, testenv.BenchDir(b), nil)
	c := e.login(b, "bob")
	script := fiftyRules()
	cmd := `PUTSCRIPT "filters" ` + lit(script)
	if r := c.cmd(cmd); r != `OK "PUTSCRIPT completed."` {
		b.Fatalf("PUTSCRIPT: %q", r)
	}
	lat := make([]time.Duration, 0, b.N)
	b.SetBytes(int64(len(script)))
	b.ResetTimer()
	for range b.N {
		start := time.Now()
		if r := c.cmd(cmd); r != `OK "PUTSCRIPT completed."` {
			b.Fatalf("PUTSCRIPT: %q", r)
		}
		lat = append(lat, time.Since(start))
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
}

// BenchmarkCheckScript is the same script through CHECKSCRIPT: the
// protocol and the compiler without the disk.
func BenchmarkCheckScript(b *testing.B) {
	e := newEnv(b, nil)
	c := e.login(b, "bob")
	cmd := `CHECKSCRIPT ` + lit(fiftyRules())
	b.ResetTimer()
	for range b.N {
		if r := c.cmd(cmd); r != `OK "Script checked successfully."` {
			b.Fatalf("CHECKSCRIPT: %q", r)
		}
	}
}
