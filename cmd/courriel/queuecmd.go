package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	iofs "io/fs"
	"os"
	"slices"
	"strings"
	"time"

	"courriel/delivery/queue"
)

// exQueueDown is the status of a queue command that found no server to
// answer for the spool: EX_UNAVAILABLE (sysexits.h), as Postfix's
// postqueue exits with "mail system is down".
const exQueueDown = 69

// runQueue is mailq / postqueue -f / postsuper -d, -h and -H. It works beside a running
// server: the spool is shared through file locks, and a flush is a request
// the server's runner picks up. A message is named by its queue id or by
// its msg_id, the id of the SMTP reply's "queued as" (Postfix's postsuper
// takes the "queued as" id, which is its queue id).
func runQueue(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) (err error) {
	defer func() { err = plainQueueErr(err) }()
	fs := newFlagSet("queue", stderr)
	cfgPath := fs.String("config", defaultConfigPath, "configuration file")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: courriel queue [-config F] list | show ID | flush | delete|hold|release ID... | ALL | - (ids on standard input)\n"+
			"ID is a queue id (queue list) or a msg_id (the SMTP reply's \"queued as\")\n"+
			"(flags may also follow the command: courriel queue list -config F)")
		fs.PrintDefaults()
	}
	words, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(words) < 1 {
		fs.Usage()
		return exitf(2, "want a queue command")
	}
	// A user who may not read the spool (nor, as a rule, the
	// configuration) lists it through the running server, as anyone may
	// run Postfix's mailq.
	listing := len(words) == 1 && words[0] == "list"
	cfg, err := LoadConfig(*cfgPath)
	if listing && errors.Is(err, iofs.ErrPermission) {
		return mailqFromServer(ctx, sendmailPathsFile, stdout, err)
	}
	if err != nil {
		return err
	}
	// Client mode: never the spool's owner lock, so this command cannot
	// take the spool from a server starting at the same moment.
	q, err := queue.Open(queue.Options{Dir: cfg.Queue.Dir, Hostname: cfg.MyHostname, Client: true,
		MaxMessageBytes: cfg.MessageSizeLimit, MaxRecipients: cfg.RecipientLimit})
	if errors.Is(err, iofs.ErrNotExist) {
		// A wrong queue.dir must not look like an empty queue (the
		// README's "wait for Mail queue is empty" before a stop): nor
		// a directory that does not exist, nor one no server ever ran
		// on (no lock: not the server's spool, or before its start).
		if _, serr := os.Stat(cfg.Queue.Dir); errors.Is(serr, iofs.ErrNotExist) {
			return exitf(1, "spool directory %s does not exist (queue.dir in %s)", cfg.Queue.Dir, *cfgPath)
		}
		// The directory the installation made, before the first
		// `courriel serve` (or another directory): as Postfix's
		// postqueue when the mail system is down, a status of its own
		// (EX_UNAVAILABLE) that a script tells from an empty queue (0)
		// and from a failure (1), and words that say which it may be.
		return exitf(exQueueDown, "spool directory %s has no lock file: courriel serve has not run on it yet (a new installation), or queue.dir names another directory (queue.dir in %s)", cfg.Queue.Dir, *cfgPath)
	}
	if errors.Is(err, iofs.ErrPermission) {
		// Not root (nor the server's user): the spool's files are 0600,
		// as Postfix's postsuper is the superuser's.
		err = fmt.Errorf("spool directory %s: permission denied: courriel queue needs the rights of the server that runs it (root): %v", cfg.Queue.Dir, trimmedErr{err})
		if listing {
			return mailqFromServer(ctx, sendmailPathsFile, stdout, err)
		}
		return exitf(1, "%v", err)
	}
	if err != nil {
		return err
	}
	defer q.Close()
	cmd, rest := words[0], words[1:]
	if (cmd == "list" || cmd == "flush") && len(rest) > 0 {
		return exitf(2, "%s takes no argument, got %q", cmd, rest[0])
	}
	switch cmd {
	case "list":
		return writeQueueList(stdout, q, cfg.Queue.Dir, cfg.MessageSizeLimit)
	case "show":
		if len(rest) != 1 || rest[0] == "ALL" || rest[0] == "-" {
			return exitf(2, "show wants one queue id or msg_id")
		}
		ids, missing, err := queueTargets(q, cmd, rest, stdin, stderr)
		if err != nil {
			return err
		}
		if len(missing) > 0 {
			return exitf(1, "%s: %s", missing[0], errNoMessage)
		}
		m, data, err := q.Show(ids[0])
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "id: %s\n", m.ID)
		if m.MsgID != "" {
			fmt.Fprintf(stdout, "msg_id: %s\n", m.MsgID)
		}
		if found, _ := q.Find(m.ID); len(found) == 1 && found[0].Held {
			fmt.Fprintf(stdout, "held: yes (not delivered until courriel queue release %s)\n", m.ID)
		}
		fmt.Fprintf(stdout, "from: <%s>\ncreated: %s\nsize: %d\n", m.From, m.Created.Format(time.RFC3339), m.Size)
		if m.Ret != "" || m.EnvID != "" {
			fmt.Fprintf(stdout, "dsn: ret=%s envid=%s\n", m.Ret, m.EnvID) // printable ASCII, checked at load
		}
		for _, r := range m.Recipients {
			fmt.Fprintf(stdout, "to: %s\n", recipientLine(r))
		}
		fmt.Fprintln(stdout)
		stdout.Write(data)
	case "flush":
		if err := q.Flush(); err != nil {
			return err
		}
		// As postqueue -f says "mail system is down": a request nobody
		// reads must not look like a flush.
		if pid, err := queue.OwnerPID(cfg.Queue.Dir); err == nil && pid == 0 {
			return exitf(exQueueDown, "no server runs the queue in %s: the flush request is left for the next start", cfg.Queue.Dir)
		}
		fmt.Fprintln(stdout, "flush requested: the server retries every deferred message now")
	case "delete", "hold", "release":
		op := map[string]struct {
			do          func(string) error
			done, total string
		}{
			"delete":  {q.Delete, "removed", "Deleted"},
			"hold":    {q.Hold, "placed on hold", "Placed on hold"},
			"release": {q.Release, "released from hold", "Released from hold"},
		}[cmd]
		if len(rest) == 0 {
			return exitf(2, "%s wants queue ids or msg_ids, ALL, or - (ids on standard input)", cmd)
		}
		ids, missing, err := queueTargets(q, cmd, rest, stdin, stderr)
		if err != nil {
			return err
		}
		for _, w := range missing {
			fmt.Fprintf(stderr, "%s: %s\n", w, errNoMessage)
		}
		failed, done := len(missing), 0
		for _, id := range ids {
			if err := op.do(id); err != nil {
				failed++
				fmt.Fprintf(stderr, "%s: %s\n", id, plainQueueErr(err))
				continue
			}
			fmt.Fprintf(stdout, "%s: %s\n", id, op.done)
			done++
		}
		fmt.Fprintf(stdout, "%s: %d message(s)\n", op.total, done)
		if failed > 0 {
			return exitf(1, "%d message(s) failed", failed)
		}
	default:
		fs.Usage()
		return exitf(2, "unknown queue command %q", cmd)
	}
	return nil
}

// errNoMessage: a word that names no queued message.
var errNoMessage = errors.New("no queued message has this queue id or msg_id")

// queueTargets reads what postsuper -d, -h and -H take: ids, ALL (for
// hold, the messages not held; for release, the held ones), or "-" for
// ids on standard input, one a line (its first word, so that lines of
// `queue list` filtered by grep work; mailq's "!" is dropped). An id is a
// queue id or a msg_id (queue.Find); missing are the ids that name no
// message. A msg_id that several messages share (a message and the DSN or
// Sieve reply made of it) is refused, and so is the whole command, with
// the messages listed on stderr by their queue ids: the admin names the
// one meant. Acting on all of them would let `delete` drop, unseen, a
// bounce its sender is owed or a user's vacation reply along with the
// message the admin had in mind; a refusal costs one more command.
func queueTargets(q *queue.Queue, cmd string, words []string, stdin io.Reader, stderr io.Writer) (ids, missing []string, err error) {
	ambiguous := 0
	resolve := func(w string) error {
		w = strings.TrimSuffix(w, "!")
		found, err := q.Find(w)
		if errors.Is(err, queue.ErrInvalidID) {
			return exitf(2, "%q is neither a queue id nor a msg_id", w)
		}
		if err != nil {
			return err
		}
		switch len(found) {
		case 0:
			missing = append(missing, w)
		case 1:
			ids = append(ids, found[0].ID)
		default:
			ambiguous++
			fmt.Fprintf(stderr, "%s is the msg_id of %d queued messages; name the one to %s by its queue id:\n", w, len(found), cmd)
			for _, s := range found {
				fmt.Fprintf(stderr, "  %s\n", summaryLine(s))
				for _, r := range s.Recipients {
					fmt.Fprintf(stderr, "  %33s <%s> %s\n", "", r.Addr, r.State)
				}
			}
		}
		return nil
	}
	for _, w := range words {
		switch w {
		case "ALL":
			var list []queue.Summary
			if cmd != "release" {
				l, err := q.List()
				if err != nil {
					return nil, nil, err
				}
				list = append(list, l...)
			}
			if cmd != "hold" {
				l, err := q.ListHeld()
				if err != nil {
					return nil, nil, err
				}
				list = append(list, l...)
			}
			for _, s := range list {
				ids = append(ids, s.ID)
			}
		case "-":
			sc := bufio.NewScanner(stdin)
			for sc.Scan() {
				if f := strings.Fields(sc.Text()); len(f) > 0 {
					if err := resolve(f[0]); err != nil {
						return nil, nil, fmt.Errorf("standard input: %w", err)
					}
				}
			}
			if err := sc.Err(); err != nil {
				return nil, nil, err
			}
		default:
			if err := resolve(w); err != nil {
				return nil, nil, err
			}
		}
	}
	if ambiguous > 0 {
		return nil, nil, exitf(1, "%d msg_id(s) name several messages: nothing done", ambiguous)
	}
	return slices.Compact(slices.Sorted(slices.Values(ids))), missing, nil
}

// summaryLine is a message's first line in `queue list`: mailq's, with
// "!" after a held message's queue id, and its msg_id (the SMTP reply's
// "queued as", the msg_id of its log lines) at the end.
func summaryLine(s queue.Summary) string {
	from := s.From
	if from == "" {
		from = "MAILER-DAEMON"
	}
	id := s.ID
	if s.Held {
		id += "!" // as mailq marks the hold queue
	}
	line := fmt.Sprintf("%-33s %8d %-20s %s", id, s.Size, s.Created.Format(time.DateTime), from)
	if s.MsgID != "" {
		line += "  msg_id=" + s.MsgID
	}
	return line
}

// plainQueueErr drops the "queue: " the queue package starts its errors
// with: the command's name says it already ("courriel queue: ...").
func plainQueueErr(err error) error {
	var ee *exitError
	switch {
	case err == nil || errors.Is(err, flag.ErrHelp):
		return err
	case errors.As(err, &ee) && ee == err:
		ee.err = trimmedErr{ee.err}
		return ee
	}
	return trimmedErr{err}
}

type trimmedErr struct{ error }

func (e trimmedErr) Error() string { return strings.TrimPrefix(e.error.Error(), "queue: ") }
func (e trimmedErr) Unwrap() error { return e.error }

func recipientLine(r queue.Recipient) string {
	line := fmt.Sprintf("<%s> %s attempts=%d", r.Addr, r.State, r.Attempts)
	if r.Node != "" {
		line += " node=" + r.Node // a copy for the user's home node
	}
	if r.Notify != "" {
		line += " notify=" + r.Notify // RFC 3461, as the client asked
	}
	if r.ORcpt != "" {
		line += " orcpt=" + r.ORcpt
	}
	if !r.NextAttempt.IsZero() {
		line += " next=" + r.NextAttempt.Format(time.DateTime)
	}
	if r.Reply != "" {
		line += " (" + r.Reply + ")"
	}
	return line
}
