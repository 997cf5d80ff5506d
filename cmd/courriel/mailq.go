package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"courriel/delivery/queue"
	"courriel/internal/control"
)

// writeQueueList writes `courriel queue list`, mailq's listing: the
// queued messages, held ones with them, then what sendmail left in the
// maildrop, one paragraph each, and Postfix's last line, "-- K Kbytes in
// N Requests." (or "Mail queue is empty"): monitoring checks
// (check_mailq) read that line, and scripts read the paragraphs (awk's
// RS="", to pick the ids of a recipient's messages).
func writeQueueList(w io.Writer, q *queue.Queue, queueDir string, maxMessage int64) error {
	list, err := q.List()
	if err != nil {
		return err
	}
	held, err := q.ListHeld()
	if err != nil {
		return err
	}
	list = append(list, held...)
	// What sendmail left for the server's pickup (pickup.go).
	dropped, size, err := maildropSummary(queueDir, maxMessage)
	if err != nil {
		return err
	}
	n := len(list) + len(dropped)
	if n == 0 {
		_, err := fmt.Fprintln(w, "Mail queue is empty")
		return err
	}
	bw := bufio.NewWriter(w)
	fmt.Fprintf(bw, "%-33s %8s %-20s %s\n", "Queue ID", "Size", "Arrival Time", "Sender/Recipient")
	for i, s := range list {
		if i > 0 {
			bw.WriteString("\n")
		}
		size += s.Size
		fmt.Fprintln(bw, summaryLine(s))
		for _, r := range s.Recipients {
			fmt.Fprintf(bw, "%55s %s\n", "", recipientLine(r))
		}
	}
	for i, lines := range dropped {
		if i > 0 || len(list) > 0 {
			bw.WriteString("\n")
		}
		for _, l := range lines {
			fmt.Fprintln(bw, l)
		}
	}
	plural := "s"
	if n == 1 {
		plural = ""
	}
	fmt.Fprintf(bw, "\n-- %d Kbytes in %d Request%s.\n", size/1024, n, plural)
	return bw.Flush()
}

// mailqSocket is the socket through which anyone may list the queue,
// beside the local submission socket (whose directory listenLocal keeps
// from other users): Postfix's mailq works for every user
// (authorized_mailq_users = static:anyone, through its public showq
// service), and monitoring (check_mailq) runs it as an unprivileged user,
// who cannot read the spool nor the configuration.
func mailqSocket(local string) string { return filepath.Join(filepath.Dir(local), "mailq.sock") }

// mailqListener serves mailqSocket beside the local socket: one command,
// "list", answered with writeQueueList's lines. A socket that cannot be
// made is logged: mail goes on, and root's mailq reads the spool itself.
func (a *app) mailqListener(local string) {
	path := mailqSocket(local)
	var listing sharedListing
	srv, err := control.Listen(control.Options{Path: path, Logger: a.log.With("component", "mailq"),
		Mode: 0o666, Allow: func(uint32) bool { return true }, RoutineRequests: true,
		Handlers: map[string]control.Handler{
			"list": func(_ context.Context, args []string, progress func(string)) (string, error) {
				if len(args) > 0 {
					return "", errors.New("list takes no argument")
				}
				text, err := listing.get(func() (string, error) {
					var b strings.Builder
					err := writeQueueList(&b, a.queue, a.cfg.Queue.Dir, a.cfg.MessageSizeLimit)
					return b.String(), err
				})
				if err != nil {
					return "", err
				}
				for line := range strings.Lines(text) {
					progress(strings.TrimSuffix(line, "\n"))
				}
				return "", nil
			},
		}})
	if err != nil {
		a.log.Warn("mailq socket unavailable: mailq works for root only", "path", path, "err", err)
		return
	}
	a.listeners = append(a.listeners, controlBound("mailq", path, srv))
}

// sharedListing is the mailq socket's listing, made at most once a
// second and one at a time: any local user may ask for it in a loop,
// and each listing reads every queued envelope and maildrop file.
type sharedListing struct {
	mu   sync.Mutex
	at   time.Time
	text string
	err  error
}

func (l *sharedListing) get(list func() (string, error)) (string, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if time.Since(l.at) >= time.Second {
		l.text, l.err = list()
		l.at = time.Now()
	}
	return l.text, l.err
}

// mailqFromServer is mailq for a user who may not read the spool (cause
// says why not): the running server's listing, through the socket the
// paths file names. exQueueDown when no server answers, as Postfix's
// postqueue says "mail system is down".
func mailqFromServer(ctx context.Context, pathsFile string, stdout io.Writer, cause error) error {
	d, ok := readPathsFile(pathsFile)
	if !ok || d.socket == "" {
		return exitf(exQueueDown, "queue report unavailable: %v; and no running server's paths file (%s) names its mailq socket: is the mail system down?", cause, pathsFile)
	}
	bw := bufio.NewWriter(stdout)
	_, err := control.Do(ctx, mailqSocket(d.socket), []string{"list"}, func(line string) { fmt.Fprintln(bw, line) })
	if ferr := bw.Flush(); err == nil {
		err = ferr
	}
	var refused *control.ErrRefused
	switch {
	case errors.As(err, &refused):
		return exitf(1, "queue report unavailable: the server says %s", refused.Text)
	case err != nil:
		return exitf(exQueueDown, "queue report unavailable: %v; and the running server does not answer: %v", cause, err)
	}
	return nil
}
