package main

import (
	"bytes"
	"context"
	"log/slog"

	"courriel/delivery/queue"
	"courriel/filter"
	"courriel/sieve"
)

// sieveFilter builds the Sieve filter around the store ([sieve]): it
// queues redirects and vacation replies through the queue (opened after
// it, hence lateQueue), SRS-rewritten and DKIM-signed as forwards and DSNs.
func (a *app) sieveFilter(chown bool, log *slog.Logger) (*filter.Filter, error) {
	sc := a.cfg.Sieve
	o := filter.Options{
		Store: a.store, Directory: a.dir, Resolver: a.dir, Outbound: lateQueue{a},
		Hostname: a.cfg.MyHostname, Before: sc.Before, After: sc.After, Global: sc.Global,
		Limits:     sieve.Limits{MaxActions: sc.MaxActions, MaxRedirects: sc.MaxRedirects, MaxRunTime: sc.MaxCPUTime},
		Extensions: sc.exts, GlobalExtensions: sc.gexts,
		MaxScriptSize: a.cfg.ManageSieve.MaxScriptSize, Chown: chown, Logger: log.With("component", "sieve"),
		VacationUseOriginalRecipient: sc.VacationUseOriginalRecipient,
		Sign:                         func(msg []byte) ([]byte, error) { return a.signer.Sign(bytes.NewReader(msg), int64(len(msg))) },
	}
	if sc.ResourceUsageTimeout == 0 {
		o.ResourceUsageTimeout = -1 // off
	} else {
		o.ResourceUsageTimeout = sc.ResourceUsageTimeout
	}
	if a.srs != nil {
		o.SRS = a.srs
	}
	return filter.New(o)
}

// lateQueue is the queue the filter sends through, looked up at each use:
// the queue is opened after the filter, which it delivers local copies with.
type lateQueue struct{ a *app }

func (l lateQueue) Accept(ctx context.Context, out filter.Outgoing) (string, []error, error) {
	if out.RemoteFrom != "" {
		return l.a.queue.AcceptForward(ctx, out.MsgID, out.From, out.RemoteFrom, out.Remote, out.Local, out.Data, queue.WithOnceKey(out.Key))
	}
	return l.a.queue.Accept(ctx, out.MsgID, out.From, out.Remote, out.Local, out.Data, queue.WithOnceKey(out.Key))
}
