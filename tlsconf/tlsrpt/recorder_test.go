package tlsrpt

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"courriel/internal/testenv"
)

type sent struct {
	from string
	to   []string
	msg  []byte
}

func TestRecordPersistAndReport(t *testing.T) {
	dns := testenv.StartDNS(t,
		`_smtp._tls.example.test. TXT "v=TLSRPTv1; rua=mailto:tls-reports@example.test,https://reports.example.test/v1"`,
		`other.test. TXT "v=spf1 -all"`)
	r := dnsResolver(dns.Addr)
	dir := t.TempDir()
	now := time.Date(2026, 12, 5, 10, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	var mu sync.Mutex
	var out []sent
	send := func(_ context.Context, from string, to []string, msg []byte) error {
		mu.Lock()
		defer mu.Unlock()
		out = append(out, sent{from, to, msg})
		return nil
	}
	o := Options{Dir: dir, Hostname: "mail.ours.test", Resolver: r, Send: send, Now: clock, DialContext: refuseDial}
	rec, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	sts := []string{"version: STSv1", "mode: enforce", "mx: mx.example.test", "max_age: 86400"}
	for range 3 {
		rec.Record(Result{PolicyDomain: "example.test", PolicyType: PolicySTS, PolicyStrings: sts, ReceivingMX: "mx.example.test", ReceivingIP: "192.0.2.1"})
	}
	rec.Record(Result{PolicyDomain: "example.test", PolicyType: PolicySTS, PolicyStrings: sts, ReceivingMX: "mx.example.test", ReceivingIP: "192.0.2.1", Failure: CertificateExpired, FailureReason: "x509: certificate has expired"})
	rec.Record(Result{PolicyDomain: "Example.Test", PolicyType: PolicySTS, PolicyStrings: sts, ReceivingMX: "mx.example.test", ReceivingIP: "192.0.2.1", Failure: CertificateExpired, FailureReason: "x509: certificate has expired"})
	rec.Record(Result{PolicyDomain: "other.test", PolicyType: PolicyNotFound})
	// Hostile volume: many distinct reasons are counted but not all kept.
	for i := range 500 {
		rec.Record(Result{PolicyDomain: "example.test", PolicyType: PolicySTS, PolicyStrings: sts, Failure: ValidationFailure, FailureReason: strconv.Itoa(i) + strings.Repeat("x", 1000)})
	}
	if err := rec.Flush(); err != nil {
		t.Fatal(err)
	}
	// A restart, the next day: the report is sent.
	now = now.Add(24 * time.Hour)
	rec2, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	rec2.SendDue(context.Background())
	if len(out) != 1 {
		t.Fatalf("%d reports sent, want 1 (other.test publishes no TLSRPT record)", len(out))
	}
	if out[0].from != "" || len(out[0].to) != 1 || out[0].to[0] != "tls-reports@example.test" {
		t.Errorf("envelope %q → %q", out[0].from, out[0].to)
	}
	// Python's email package and gzip read the report back.
	cmd := exec.Command("python3", "-c", `
import sys, email, gzip, json
m = email.message_from_bytes(sys.stdin.buffer.read())
assert m.get_content_type() == "multipart/report", m.get_content_type()
assert m.get_param("report-type") == "tlsrpt"
assert m["TLS-Report-Domain"] == "example.test"
parts = [p for p in m.walk() if p.get_content_type() == "application/tlsrpt+gzip"]
assert len(parts) == 1
assert parts[0].get_filename() == "mail.ours.test!example.test!1796428800!1796515199.json.gz", parts[0].get_filename()
print(gzip.decompress(parts[0].get_payload(decode=True)).decode())
`)
	cmd.Stdin = strings.NewReader(string(out[0].msg))
	js, err := cmd.Output()
	if err != nil {
		t.Fatalf("python3 could not read the report: %v\n%s", err, out[0].msg)
	}
	var rep report
	if err := json.Unmarshal(js, &rep); err != nil {
		t.Fatal(err)
	}
	if rep.DateRange.Start != "2026-12-05T00:00:00Z" || rep.DateRange.End != "2026-12-05T23:59:59Z" || len(rep.Policies) != 1 {
		t.Fatalf("report %s", js)
	}
	p := rep.Policies[0]
	if len(p.Policy.MXHost) != 1 || p.Policy.MXHost[0] != "mx.example.test" {
		t.Errorf("mx-host %q", p.Policy.MXHost)
	}
	if p.Policy.Type != PolicySTS || p.Policy.Domain != "example.test" || p.Summary.Success != 3 || p.Summary.Failure != 502 || len(p.Details) != maxDetails {
		t.Errorf("policy %+v, %d details", p.Policy, len(p.Details))
	}
	var expired *detail
	for i, d := range p.Details {
		if d.ResultType == CertificateExpired {
			expired = &p.Details[i]
		}
	}
	if expired == nil || expired.Count != 2 || expired.ReceivingIP != "192.0.2.1" {
		t.Errorf("certificate-expired detail %+v", expired)
	}
	if p.Details[0].Count < p.Details[len(p.Details)-1].Count {
		t.Errorf("details not by count: first %+v", p.Details[0])
	}
	for _, d := range p.Details {
		if len(d.Reason) > maxReason {
			t.Fatalf("reason of %d bytes kept", len(d.Reason))
		}
	}
	// Sent days are forgotten, on disk too.
	out = nil
	rec3, _ := New(o)
	rec3.SendDue(context.Background())
	if len(out) != 0 {
		t.Errorf("a day reported twice")
	}
}

func TestParseRecord(t *testing.T) {
	got, err := ParseRecord([]string{"v=TLSRPTv1; rua=mailto:a@example.test,mailto:b%40x@example.test, https://h.test/r,HTTPS://u:p@h.test/,https:opaque,https://h2.test/x#frag"})
	if err != nil || len(got.Mailto) != 1 || got.Mailto[0] != "a@example.test" {
		// b%40x@example.test unescapes to b@x@example.test: not an address.
		t.Fatalf("got %q, %v", got, err)
	}
	if !slices.Equal(got.HTTPS, []string{"https://h.test/r", "https://h2.test/x"}) {
		t.Fatalf("https: %q (userinfo and opaque URIs must be refused, fragments dropped)", got.HTTPS)
	}
	if got, err := ParseRecord([]string{"v=TLSRPTv1; rua=https://h.test/"}); err != nil || len(got.HTTPS) != 1 || len(got.Mailto) != 0 {
		t.Errorf("https only: %q, %v", got, err)
	}
	for _, bad := range [][]string{
		{"v=TLSRPTv1; rua=ftp://h.test/"},
		{"v=TLSRPTv1;"},
		{"v=TLSRPTv1; rua=mailto:a@x.test", "v=TLSRPTv1; rua=mailto:b@x.test"},
		{"v=spf1"},
	} {
		if got, err := ParseRecord(bad); err == nil {
			t.Errorf("%q accepted: %q", bad, got)
		}
	}
}

func refuseDial(context.Context, string, string) (net.Conn, error) {
	return nil, errors.New("no network in this test")
}
