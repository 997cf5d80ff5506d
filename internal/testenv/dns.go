package testenv

import (
	"net"
	"strings"
	"sync"
	"testing"

	"github.com/miekg/dns"
)

// DNS is an authoritative DNS server on loopback (UDP and TCP on one
// kernel-chosen port) answering from records the test sets: what SPF,
// DKIM and DMARC checks ask, with no outside resolver involved.
type DNS struct {
	Addr string // "127.0.0.1:port"

	mu       sync.Mutex
	records  map[string][]dns.RR // by lower-case FQDN
	servfail map[string]bool
	held     map[string]chan struct{} // answers for these names wait until the channel closes
	queries  int
	waiting  int // questions held by Hold so far
	// validating: answers carry the AD bit, as a DNSSEC-validating
	// resolver's do for a signed zone, except for the names in insecure.
	validating bool
	insecure   map[string]bool
}

// StartDNS serves records, each in zone-file syntax
// (`example.org. TXT "v=spf1 -all"`), until the test ends.
func StartDNS(t testing.TB, records ...string) *DNS {
	t.Helper()
	d := &DNS{records: map[string][]dns.RR{}, servfail: map[string]bool{}, held: map[string]chan struct{}{}, insecure: map[string]bool{}}
	d.Set(t, records...)
	h := dns.HandlerFunc(d.serve)
	// UDP first on a kernel-chosen port, then TCP on the same one; a port
	// whose TCP side is taken is given back and another tried (bounded).
	for range 20 {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("testenv dns: %v", err)
		}
		l, err := net.Listen("tcp", pc.LocalAddr().String())
		if err != nil {
			pc.Close()
			continue
		}
		us := &dns.Server{PacketConn: pc, Handler: h}
		ts := &dns.Server{Listener: l, Handler: h}
		go us.ActivateAndServe()
		go ts.ActivateAndServe()
		t.Cleanup(func() { us.Shutdown(); ts.Shutdown() })
		d.Addr = pc.LocalAddr().String()
		return d
	}
	t.Fatal("testenv dns: no port free for both UDP and TCP")
	return nil
}

// Set adds records (zone-file syntax; TTL and class may be left out).
func (d *DNS) Set(t testing.TB, records ...string) {
	t.Helper()
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, s := range records {
		rr, err := dns.NewRR(s)
		if err != nil || rr == nil {
			t.Fatalf("testenv dns: record %q: %v", s, err)
		}
		k := strings.ToLower(rr.Header().Name)
		d.records[k] = append(d.records[k], rr)
	}
}

// Remove deletes every record of name.
func (d *DNS) Remove(name string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.records, strings.ToLower(dns.Fqdn(name)))
}

// ServFail makes every query for name answer SERVFAIL (a DNS outage).
func (d *DNS) ServFail(name string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.servfail[strings.ToLower(dns.Fqdn(name))] = true
}

// Validating makes the server answer as a DNSSEC-validating resolver does
// for signed zones: the AD bit set on every answer (records, NXDOMAIN or no
// data), except for names given to Insecure. DANE trusts that bit.
func (d *DNS) Validating() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.validating = true
}

// Insecure makes the answers for name lack the AD bit (an unsigned zone).
func (d *DNS) Insecure(name string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.insecure[strings.ToLower(dns.Fqdn(name))] = true
}

// Hold makes the answers for name wait until release is called (a slow
// DNS server, without timing). The test should defer release.
func (d *DNS) Hold(name string) (release func()) {
	ch := make(chan struct{})
	d.mu.Lock()
	d.held[strings.ToLower(dns.Fqdn(name))] = ch
	d.mu.Unlock()
	var once sync.Once
	return func() { once.Do(func() { close(ch) }) }
}

// Held counts the questions Hold has made wait (answered or not).
func (d *DNS) Held() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.waiting
}

// Queries counts the questions answered so far.
func (d *DNS) Queries() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.queries
}

func (d *DNS) serve(w dns.ResponseWriter, req *dns.Msg) {
	d.mu.Lock()
	var hold chan struct{}
	for _, q := range req.Question {
		if ch, ok := d.held[strings.ToLower(q.Name)]; ok {
			hold = ch
			d.waiting++
		}
	}
	d.mu.Unlock()
	if hold != nil {
		<-hold
	}
	m := new(dns.Msg)
	m.SetReply(req)
	m.Authoritative = true
	d.mu.Lock()
	d.queries++
	m.AuthenticatedData = d.validating
	for _, q := range req.Question {
		name := strings.ToLower(q.Name)
		// A CNAME is followed, as a recursive resolver does: the chain
		// and the target's records in one answer (bounded).
	chain:
		for range 8 {
			if d.insecure[name] {
				m.AuthenticatedData = false
			}
			if d.servfail[name] {
				m.Rcode = dns.RcodeServerFailure
				break
			}
			rrs, ok := d.records[name]
			if !ok {
				m.Rcode = dns.RcodeNameError
				break
			}
			for _, rr := range rrs {
				if rr.Header().Rrtype == q.Qtype {
					m.Answer = append(m.Answer, dns.Copy(rr))
				}
			}
			if len(m.Answer) > 0 || q.Qtype == dns.TypeCNAME {
				break
			}
			for _, rr := range rrs {
				if c, ok := rr.(*dns.CNAME); ok {
					m.Answer = append(m.Answer, dns.Copy(rr))
					name = strings.ToLower(c.Target)
					continue chain
				}
			}
			break
		}
	}
	d.mu.Unlock()
	if _, udp := w.RemoteAddr().(*net.UDPAddr); udp {
		size := 512
		if o := req.IsEdns0(); o != nil {
			size = int(o.UDPSize())
		}
		m.Truncate(size)
	}
	w.WriteMsg(m)
}
