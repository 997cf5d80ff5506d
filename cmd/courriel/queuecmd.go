package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	iofs "io/fs"
	"slices"
	"strings"
	"time"

	"courriel/delivery/queue"
)

// runQueue is mailq / postqueue -f / postsuper -d, -h and -H. It works beside a running
// server: the spool is shared through file locks, and a flush is a request
// the server's runner picks up.
func runQueue(_ context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := newFlagSet("queue", stderr)
	cfgPath := fs.String("config", defaultConfigPath, "configuration file")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: courriel queue [-config F] list | show ID | flush | delete|hold|release ID... | ALL | - (ids on standard input)\n(flags may also follow the command: courriel queue list -config F)")
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
	cfg, err := LoadConfig(*cfgPath)
	if err != nil {
		return err
	}
	// Client mode: never the spool's owner lock, so this command cannot
	// take the spool from a server starting at the same moment.
	q, err := queue.Open(queue.Options{Dir: cfg.Queue.Dir, Hostname: cfg.MyHostname, Client: true,
		MaxMessageBytes: cfg.MessageSizeLimit, MaxRecipients: cfg.RecipientLimit})
	if errors.Is(err, iofs.ErrNotExist) && words[0] == "list" {
		fmt.Fprintln(stdout, "Mail queue is empty")
		return nil
	}
	if err != nil {
		return err
	}
	defer q.Close()
	cmd, rest := words[0], words[1:]
	needID := func() (string, error) {
		if len(rest) != 1 {
			return "", exitf(2, "%s wants one queue id", cmd)
		}
		return queue.ParseID(rest[0])
	}
	if (cmd == "list" || cmd == "flush") && len(rest) > 0 {
		return exitf(2, "%s takes no argument, got %q", cmd, rest[0])
	}
	switch cmd {
	case "list":
		list, err := q.List()
		if err != nil {
			return err
		}
		held, err := q.ListHeld()
		if err != nil {
			return err
		}
		list = append(list, held...)
		if len(list) == 0 {
			fmt.Fprintln(stdout, "Mail queue is empty")
			return nil
		}
		fmt.Fprintf(stdout, "%-33s %8s %-20s %s\n", "Queue ID", "Size", "Arrival Time", "Sender/Recipient")
		for _, s := range list {
			from := s.From
			if from == "" {
				from = "MAILER-DAEMON"
			}
			id := s.ID
			if s.Held {
				id += "!" // as mailq marks the hold queue
			}
			fmt.Fprintf(stdout, "%-33s %8d %-20s %s\n", id, s.Size, s.Created.Format(time.DateTime), from)
			for _, r := range s.Recipients {
				fmt.Fprintf(stdout, "%55s %s\n", "", recipientLine(r))
			}
		}
		fmt.Fprintf(stdout, "-- %d Request(s)\n", len(list))
	case "show":
		id, err := needID()
		if err != nil {
			return err
		}
		m, data, err := q.Show(id)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "id: %s\nfrom: <%s>\ncreated: %s\nsize: %d\n", m.ID, m.From, m.Created.Format(time.RFC3339), m.Size)
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
			return exitf(1, "no server runs the queue in %s: the flush request is left for the next start", cfg.Queue.Dir)
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
		ids, err := queueTargets(q, cmd, rest, stdin)
		if err != nil {
			return err
		}
		failed := 0
		for _, id := range ids {
			if err := op.do(id); err != nil {
				failed++
				fmt.Fprintf(stderr, "%s: %v\n", id, err)
				continue
			}
			fmt.Fprintf(stdout, "%s: %s\n", id, op.done)
		}
		fmt.Fprintf(stdout, "%s: %d message(s)\n", op.total, len(ids)-failed)
		if failed > 0 {
			return exitf(1, "%d message(s) failed", failed)
		}
	default:
		fs.Usage()
		return exitf(2, "unknown queue command %q", cmd)
	}
	return nil
}

// queueTargets reads what postsuper -d, -h and -H take: queue ids, ALL
// (for hold, the messages not held; for release, the held ones), or "-"
// for ids on standard input, one a line (its first word, so that lines
// of `queue list` filtered by grep work; mailq's "!" is dropped).
func queueTargets(q *queue.Queue, cmd string, words []string, stdin io.Reader) ([]string, error) {
	if len(words) == 0 {
		return nil, exitf(2, "%s wants queue ids, ALL, or - (ids on standard input)", cmd)
	}
	var ids []string
	for _, w := range words {
		switch w {
		case "ALL":
			var list []queue.Summary
			if cmd != "release" {
				l, err := q.List()
				if err != nil {
					return nil, err
				}
				list = append(list, l...)
			}
			if cmd != "hold" {
				l, err := q.ListHeld()
				if err != nil {
					return nil, err
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
					id, err := queue.ParseID(strings.TrimSuffix(f[0], "!"))
					if err != nil {
						return nil, exitf(2, "standard input: %v", err)
					}
					ids = append(ids, id)
				}
			}
			if err := sc.Err(); err != nil {
				return nil, err
			}
		default:
			id, err := queue.ParseID(strings.TrimSuffix(w, "!"))
			if err != nil {
				return nil, exitf(2, "%v", err)
			}
			ids = append(ids, id)
		}
	}
	return slices.Compact(slices.Sorted(slices.Values(ids))), nil
}

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

// parseInterspersed parses flags wherever they stand among the words, so
// that `queue list -config F` works as `queue -config F list` (Go's flag
// package stops at the first word). After "--" everything is a word.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var words []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if consumed := args[:len(args)-len(rest)]; len(consumed) > 0 && consumed[len(consumed)-1] == "--" {
			return append(words, rest...), nil
		}
		if len(rest) == 0 {
			return words, nil
		}
		words = append(words, rest[0])
		args = rest[1:]
	}
}
