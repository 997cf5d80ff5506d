package main

import (
	"context"
	"sync/atomic"
	"time"

	"courriel/directory"
	"courriel/imap"
	"courriel/managesieve"
)

// liveDirectory is the directory the servers use; SIGHUP can replace the
// client under it when [ldap] changes (a rotated reader password, a new
// server URL) without a restart.
type liveDirectory struct {
	cur atomic.Pointer[directory.Directory]
}

func newLiveDirectory(d *directory.Directory) *liveDirectory {
	l := &liveDirectory{}
	l.cur.Store(d)
	return l
}

func (l *liveDirectory) get() *directory.Directory { return l.cur.Load() }

// swap installs d; the old client is closed once the calls in flight have
// had time to finish: its idle connections then, any still in use when its
// call gives it back.
func (l *liveDirectory) swap(d *directory.Directory) {
	old := l.cur.Swap(d)
	time.AfterFunc(time.Minute, func() { old.Close() })
}

func (l *liveDirectory) ClassifyDomain(ctx context.Context, domain string) (directory.DomainClass, error) {
	return l.get().ClassifyDomain(ctx, domain)
}

func (l *liveDirectory) ResolveRecipient(ctx context.Context, addr string) (directory.Resolution, error) {
	return l.get().ResolveRecipient(ctx, addr)
}

func (l *liveDirectory) ResolveClassified(ctx context.Context, addr string, class directory.DomainClass) (directory.Resolution, error) {
	return l.get().ResolveClassified(ctx, addr, class)
}

func (l *liveDirectory) Authenticate(ctx context.Context, login, password string) (directory.User, error) {
	return l.get().Authenticate(ctx, login, password)
}

// A front node's cluster login is looked up without a password.
var (
	_ imap.UserLookup        = (*liveDirectory)(nil)
	_ managesieve.UserLookup = (*liveDirectory)(nil)
)

func (l *liveDirectory) LookupUser(ctx context.Context, login string) (directory.User, error) {
	return l.get().LookupUser(ctx, login)
}

func (l *liveDirectory) SenderLogins(ctx context.Context, addr string) ([]string, error) {
	return l.get().SenderLogins(ctx, addr)
}

func (l *liveDirectory) Mailbox(ctx context.Context, addr string) (*directory.Mailbox, error) {
	return l.get().Mailbox(ctx, addr)
}

func (l *liveDirectory) Ping(ctx context.Context) error { return l.get().Ping(ctx) }
func (l *liveDirectory) Stats() directory.Stats         { return l.get().Stats() }
func (l *liveDirectory) FlushCache()                    { l.get().FlushCache() }
func (l *liveDirectory) Close() error                   { return l.get().Close() }

// SetHomeNode writes login's home node on the provider (move-user).
func (l *liveDirectory) SetHomeNode(ctx context.Context, login, node string) error {
	return l.get().SetHomeNode(ctx, login, node)
}

// SetPassword writes login's userPassword hash on the provider.
func (l *liveDirectory) SetPassword(ctx context.Context, login, hash string) error {
	return l.get().SetPassword(ctx, login, hash)
}
