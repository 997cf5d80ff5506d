package queue

import (
	"context"
	"strings"
	"testing"

	"courriel/internal/testenv"
)

// The resolver of dns_server names that server in its errors, not the
// resolv.conf one Go's resolver would have asked: the log sends the admin
// to the right place.
func TestResolverErrorsNameTheServer(t *testing.T) {
	t.Parallel()
	d := testenv.StartDNS(t)
	d.ServFail("sf.test")
	r := NewResolver(d.Addr)
	if _, err := r.LookupMX(context.Background(), "sf.test"); err == nil || !strings.Contains(err.Error(), d.Addr) {
		t.Errorf("LookupMX error %v, want it to name %s", err, d.Addr)
	}
	if _, err := r.LookupIPAddr(context.Background(), "sf.test"); err == nil || !strings.Contains(err.Error(), d.Addr) {
		t.Errorf("LookupIPAddr error %v, want it to name %s", err, d.Addr)
	}
}

// One destination gets a fifth of the delivery slots by default (Postfix:
// default_destination_concurrency_limit 20 of default_process_limit 100),
// never all of them; a limit set stays.
func TestDestinationConcurrencyDefault(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ total, dest, want int }{
		{0, 0, 20}, {20, 0, 4}, {5, 0, 2}, {20, 7, 7},
	} {
		o, err := Options{Dir: t.TempDir(), Hostname: "mta.test", Concurrency: tc.total, DestinationConcurrency: tc.dest}.withDefaults()
		if err != nil {
			t.Fatal(err)
		}
		if o.DestinationConcurrency != tc.want {
			t.Errorf("Concurrency %d, DestinationConcurrency %d: %d, want %d", tc.total, tc.dest, o.DestinationConcurrency, tc.want)
		}
	}
}
