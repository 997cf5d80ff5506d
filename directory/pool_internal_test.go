package directory

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	ber "github.com/go-asn1-ber/asn1-ber"

	"courriel/internal/testenv"
)

// stalledStartTLS listens for LDAP connections, answers a StartTLS request
// with success and then says nothing more: the TLS handshake never ends.
// Each StartTLS received is reported on the returned channel.
func stalledStartTLS(t *testing.T) (url string, started <-chan struct{}) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	ch := make(chan struct{}, 16)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { c.Close() })
			go func() {
				p, err := ber.ReadPacket(c)
				if err != nil || len(p.Children) == 0 {
					return
				}
				id, _ := p.Children[0].Value.(int64)
				resp := ber.Encode(ber.ClassUniversal, ber.TypeConstructed, ber.TagSequence, nil, "")
				resp.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagInteger, id, ""))
				ext := ber.Encode(ber.ClassApplication, ber.TypeConstructed, 24, nil, "extended response")
				ext.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagEnumerated, 0, ""))
				ext.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, "", ""))
				ext.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, "", ""))
				resp.AppendChild(ext)
				c.Write(resp.Bytes())
				ch <- struct{}{}
				// Then silence: the ClientHello is never answered.
			}()
		}
	}()
	return "ldap://" + ln.Addr().String(), ch
}

func stalledPool(t *testing.T, url string, dial, request time.Duration) *connPool {
	t.Helper()
	o := Options{URLs: []string{url}, StartTLS: true, BaseDN: "dc=example", DialTimeout: dial, RequestTimeout: request, PoolSize: 1}
	o.setDefaults()
	tlsConf, err := buildTLSConfig(&o)
	if err != nil {
		t.Fatal(err)
	}
	return newConnPool(&o, tlsConf, "", "")
}

// getWithin runs p.get(ctx) and fails the test if it has not returned
// within a generous bound.
func getWithin(t *testing.T, ctx context.Context, p *connPool) error {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		c, err := p.get(ctx)
		if err == nil {
			c.Close()
		}
		done <- err
	}()
	select {
	case err := <-done:
		return err
	case <-time.After(30 * time.Second):
		t.Fatal("get still blocked in the connection setup")
		return nil
	}
}

// A server that answers StartTLS and then stalls in the handshake holds a
// connection setup no longer than DialTimeout+RequestTimeout, and the pool
// slot it dialed in is free again.
func TestDialStalledStartTLSTimesOut(t *testing.T) {
	url, _ := stalledStartTLS(t)
	p := stalledPool(t, url, 200*time.Millisecond, 300*time.Millisecond)
	for i := 0; i < 2; i++ {
		err := getWithin(t, context.Background(), p)
		if !errors.Is(err, ErrUnavailable) {
			t.Fatalf("get %d: %v, want ErrUnavailable", i, err)
		}
	}
	if n := len(p.slots); n != 0 {
		t.Errorf("%d pool slots still taken", n)
	}
}

// The caller's ctx ends a stalled connection setup, whatever the timeouts.
func TestDialStalledStartTLSEndsWithContext(t *testing.T) {
	url, started := stalledStartTLS(t)
	p := stalledPool(t, url, time.Hour, time.Hour)
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		<-started
		cancel()
	}()
	if err := getWithin(t, ctx, p); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("get: %v, want ErrUnavailable", err)
	}
	if n := len(p.slots); n != 0 {
		t.Errorf("%d pool slots still taken", n)
	}
}

// A connection in use when its Directory is closed (a replaced client,
// closed a minute after a SIGHUP) is closed when it comes back, not kept
// idle in the closed pool for good.
func TestConnBackToClosedPoolIsClosed(t *testing.T) {
	s := testenv.StartSlapd(t)
	d, err := New(Options{
		URLs: []string{s.URL()}, StartTLS: true, CAFile: s.CAFile(), RequireCert: true,
		BindDN: s.ReaderDN(), BindPassword: s.ReaderPassword(), BaseDN: s.MailBase(),
		MailboxDomains: []string{"xoyize.xyz"},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	busy, err := d.searches.get(ctx)
	if err != nil {
		t.Fatal(err)
	}
	idle, err := d.searches.get(ctx)
	if err != nil {
		t.Fatal(err)
	}
	d.searches.put(idle, false)
	d.Close()
	if !idle.IsClosing() {
		t.Error("an idle connection is still open after Close")
	}
	d.searches.put(busy, false)
	if !busy.IsClosing() {
		t.Error("a connection given back after Close is still open")
	}
	if n := len(d.searches.idle); n != 0 {
		t.Errorf("%d connections kept idle in the closed pool", n)
	}
	if n := len(d.searches.slots); n != 0 {
		t.Errorf("%d slots still taken", n)
	}
}
