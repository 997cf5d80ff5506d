package queue

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"

	"courriel/delivery"
	"courriel/delivery/maildirsize"
)

// localRoute groups the recipients whose copies go into maildirs here.
var localRoute = route{key: "local"}

// deliverLocalFrom is a retry of local copies from the spool: the copies
// are written from the spool file (never read whole into memory), and
// looked for first, since an earlier attempt may have stored them without
// its outcome being recorded.
func (q *Queue) deliverLocalFrom(ctx context.Context, m *Message, rcpts []int, f *os.File) []result {
	data, err := spooledData(f, q.o.MaxMessageBytes+traceAllowance)
	if err != nil {
		res := make([]result, len(rcpts))
		for i := range res {
			res[i] = result{out: outDeferred, reply: "cannot read the queued message: " + printable(err.Error(), 200), status: "4.3.0", relay: "maildir"}
		}
		return interrupted(ctx, res)
	}
	return q.deliverLocal(ctx, m, rcpts, data, true)
}

// spooledData is a spool data file as a delivery.Content, if it is within
// limit.
func spooledData(f *os.File, limit int64) (delivery.Content, error) {
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if fi.Size() > limit {
		return nil, fmt.Errorf("%w: over %d bytes on disk", ErrTooLarge, limit)
	}
	return io.NewSectionReader(f, 0, fi.Size()), nil
}

// deliverLocal stores the local recipients' copies through Options.Local,
// each under a key made of the queue id and the recipient's index, so that
// every attempt at one copy writes the same file name.
func (q *Queue) deliverLocal(ctx context.Context, m *Message, rcpts []int, data delivery.Content, retry bool) []result {
	res := make([]result, len(rcpts))
	if q.o.Local == nil {
		for i := range res {
			res[i] = result{out: outDeferred, reply: "local delivery is not configured", status: "4.3.5", relay: "maildir"}
		}
		return res
	}
	from := m.From
	if m.LocalFrom != nil {
		from = *m.LocalFrom
	}
	msg := &delivery.Message{ID: m.msgID(), From: from, Body: data, Arrived: m.Created, Retry: retry, CallerLogs: true}
	rs := make([]delivery.Recipient, len(rcpts))
	for i, idx := range rcpts {
		r := &m.Recipients[idx]
		rs[i] = delivery.Recipient{
			Address: r.Addr, OrigTo: r.Local.OrigTo, Maildir: r.Local.Maildir,
			UID: r.Local.UID, GID: r.Local.GID, CopyKey: copyKey(m.ID, idx),
			Folder: r.Local.Folder,
			Quota:  maildirsize.Limits{Bytes: r.Local.QuotaBytes, Messages: r.Local.QuotaMessages},
		}
	}
	errs := q.o.Local.Deliver(ctx, msg, rs)
	for i := range res {
		if i >= len(errs) {
			res[i] = result{out: outDeferred, reply: "local delivery gave no result", status: "4.3.0", relay: "maildir"}
			continue
		}
		res[i] = localResult(errs[i])
	}
	return interrupted(ctx, res)
}

// copyKey names recipient idx's copy of message id (delivery.Recipient.CopyKey).
func copyKey(id string, idx int) string { return id + "-" + strconv.Itoa(idx) }

// localResult turns the delivery store's answer into the queue's. The
// store's Temporary decides, and the class of the status follows it (RFC
// 3463 §3.1, as a reply's code decides over its enhanced code): a
// deferral never records a 5.x.x status, which a delay DSN would report
// as a failure, nor a bounce a 4.x.x one.
func localResult(err error) result {
	if err == nil {
		return result{out: outSent, reply: "delivered to maildir", status: "2.0.0", relay: "maildir"}
	}
	var de *delivery.Error
	if errors.As(err, &de) {
		r := result{out: outDeferred, reply: printable(de.Reason, 200), status: de.Status(), relay: "maildir"}
		class := "4."
		if !de.Temporary {
			r.out, class = outBounced, "5."
		}
		if len(r.status) > 2 && r.status[1] == '.' && r.status[:2] != class {
			r.status = class + r.status[2:]
		}
		return r
	}
	return result{out: outDeferred, reply: printable(err.Error(), 200), status: "4.3.0", relay: "maildir"}
}
