package embedded

import (
	"bytes"
	"testing"
)

func BenchmarkParseLDIFDemo(b *testing.B) {
	for b.Loop() {
		if _, err := ParseLDIF(bytes.NewReader(DemoLDIF)); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkFilterEval(b *testing.B) {
	e := filterEntry(b)
	f, err := compileFilterString("(|(mailacceptinggeneralid=js@hosted-domain.com)(maildrop=js@hosted-domain.com))")
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		f.eval(e)
	}
}
