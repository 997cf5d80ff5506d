package filter

import (
	"context"
	"slices"
	"sync"
	"testing"

	"courriel/directory"
)

// classifyingResolver answers as the directory does, and counts the
// classifications of a domain: ResolveRecipient classifies the address's
// domain itself, ResolveClassified takes the class it is given.
type classifyingResolver struct {
	mu         sync.Mutex
	classified []string
	given      []directory.DomainClass
}

func (r *classifyingResolver) ClassifyDomain(_ context.Context, domain string) (directory.DomainClass, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.classified = append(r.classified, domain)
	if domain == "hosted.test" {
		return directory.DomainHosted, nil
	}
	return directory.DomainForeign, nil
}

func (r *classifyingResolver) ResolveRecipient(ctx context.Context, addr string) (directory.Resolution, error) {
	class, err := r.ClassifyDomain(ctx, "hosted.test")
	if err != nil {
		return directory.Resolution{}, err
	}
	return r.ResolveClassified(ctx, addr, class)
}

func (r *classifyingResolver) ResolveClassified(_ context.Context, addr string, class directory.DomainClass) (directory.Resolution, error) {
	r.mu.Lock()
	r.given = append(r.given, class)
	r.mu.Unlock()
	return directory.Resolution{Recipient: addr, Destinations: []directory.Destination{{Address: "far@remote.test", Remote: true}}}, nil
}

// TestRouteClassifiesOnce: a redirect's address of ours is classified
// once, its class handed to the resolution (as smtp's RCPT does), not
// classified again by the directory.
func TestRouteClassifiesOnce(t *testing.T) {
	t.Parallel()
	r := &classifyingResolver{}
	f := &Filter{o: Options{Resolver: r}}
	remote, local, err := f.route(context.Background(), []string{"alias@hosted.test", "x@foreign.test"})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(remote, []string{"far@remote.test", "x@foreign.test"}) || len(local) != 0 {
		t.Errorf("routed %q, %v", remote, local)
	}
	if !slices.Equal(r.classified, []string{"hosted.test", "foreign.test"}) {
		t.Errorf("classified %q, want each domain once", r.classified)
	}
	if !slices.Equal(r.given, []directory.DomainClass{directory.DomainHosted}) {
		t.Errorf("resolved with the classes %v, want the hosted one", r.given)
	}
}
