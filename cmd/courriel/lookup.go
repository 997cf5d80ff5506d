package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"courriel/directory"
)

// runLookup prints what `postmap -q KEY ldap:MAP` prints in the seed.
func runLookup(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) error {
	fs := newFlagSet("lookup", stderr)
	cfgPath := fs.String("config", defaultConfigPath, "configuration file")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: courriel lookup [-config F] MAP KEY\n(flags may also follow MAP or KEY; a KEY that starts with \"-\" goes after \"--\")\n\nMAP is one of: %s, resolve (recursive alias expansion)\nExit status: 0 found, 1 not found, 2 directory or configuration error.\n", mapNames())
		fs.PrintDefaults()
	}
	words, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(words) != 2 {
		fs.Usage()
		return exitf(2, "want MAP and KEY")
	}
	m, key := words[0], words[1]
	cfg, err := LoadConfig(*cfgPath)
	if err != nil {
		return &exitError{code: 2, err: err}
	}
	dir, err := directory.New(cfg.directoryOptions())
	if err != nil {
		return &exitError{code: 2, err: err}
	}
	defer dir.Close()

	var out []string
	switch m {
	case "user":
		var u directory.User
		if u, err = dir.LookupUser(ctx, key); err == nil {
			out = []string{fmt.Sprintf("%s dn=%s home=%s mailbox=%s uid=%d gid=%d", u.Login, u.DN, u.Home, u.Maildir, u.UID, u.GID)}
		}
	case "resolve":
		var r directory.Resolution
		if r, err = dir.ResolveRecipient(ctx, key); err == nil {
			for _, d := range r.Destinations {
				if d.Remote {
					out = append(out, fmt.Sprintf("%s forward", d.Address))
				} else {
					out = append(out, fmt.Sprintf("%s maildir=%s uid=%d gid=%d", d.Address, d.Mailbox.Maildir, d.Mailbox.UID, d.Mailbox.GID))
				}
			}
		}
	default:
		found := false
		for _, known := range directory.Maps {
			if string(known) == m {
				found = true
			}
		}
		if !found {
			return exitf(2, "unknown map %q (want one of %s, resolve)", m, mapNames())
		}
		var vals []string
		if vals, err = dir.Lookup(ctx, directory.Map(m), key); err == nil {
			// postmap joins the values of one key with ", ".
			out = []string{strings.Join(vals, ", ")}
		}
	}
	switch {
	case err == nil:
		for _, l := range out {
			fmt.Fprintln(stdout, l)
		}
		return nil
	case errors.Is(err, directory.ErrNotFound):
		return exitf(1, "%s: %s: not found", m, key)
	default:
		return &exitError{code: 2, err: err}
	}
}

func mapNames() string {
	var s []string
	for _, m := range directory.Maps {
		s = append(s, string(m))
	}
	return strings.Join(s, ", ")
}
