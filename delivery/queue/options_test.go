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
