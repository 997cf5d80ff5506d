package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"

	"courriel/cluster/move"
	"courriel/directory"
	"courriel/internal/control"
)

// controlSocket is the running server's control socket (internal/control).
func controlSocket(cfg *Config) string { return filepath.Join(cfg.Queue.Dir, "control.sock") }

func runMoveUser(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) error {
	fs := newFlagSet("move-user", stderr)
	cfgPath := fs.String("config", defaultConfigPath, "configuration file")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: courriel move-user [-config FILE] UID NODE\n\n"+
			"Moves the user's home (maildir with its UIDs, flags and folders, Sieve scripts)\n"+
			"from this node to NODE, then points the user's home attribute at NODE on the\n"+
			"directory provider. The home is first copied while the user keeps working;\n"+
			"logins and mail are then held only while the changes since are sent.\n"+
			"Run as root on the node the user lives on, while courriel serve runs there.\n"+
			"The old home is kept as HOME.moved-TIME, not deleted.")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 2 {
		fs.Usage()
		return errors.New("move-user: UID and NODE needed")
	}
	cfg, err := LoadConfig(*cfgPath)
	if err != nil {
		return err
	}
	if !cfg.Cluster.enabled() {
		return errors.New("move-user: this node has no [cluster] configuration: nowhere to move to")
	}
	text, err := control.Do(ctx, controlSocket(cfg), []string{"move-user", fs.Arg(0), fs.Arg(1)}, func(line string) {
		fmt.Fprintln(stdout, line)
	})
	if err != nil {
		return fmt.Errorf("move-user: %w", err)
	}
	fmt.Fprintln(stdout, text)
	return nil
}

// moveDirectory is what a move needs of the live directory: lookups, and
// the provider write when this build's directory client has it.
type moveDirectory struct{ l *liveDirectory }

func (d moveDirectory) LookupUser(ctx context.Context, login string) (directory.User, error) {
	return d.l.get().LookupUser(ctx, login)
}

func (d moveDirectory) SetHomeNode(ctx context.Context, login, node string) error {
	w, ok := any(d.l.get()).(move.HomeWriter)
	if !ok {
		return errors.New("this build's directory client cannot write the home attribute")
	}
	return w.SetHomeNode(ctx, login, node)
}

// moveSetup builds the parts of user moves: the gate in front of local
// delivery (before the queue and smtp take a.local), the importer the
// cluster listener hands XIMPORT to, and the mover the control socket
// runs. chown as for delivery.
func (a *app) moveSetup(chown bool) error {
	a.gate = move.NewGate()
	a.local = a.gate.Wrap(a.local)
	a.importer = move.NewImporter(move.ImportOptions{
		Directory: moveDirectory{a.dir}, Base: a.cfg.Delivery.MaildirBase, Chown: chown,
		Gate: a.gate, Logger: a.log.With("component", "move"),
	})
	return nil
}

// mover is built once the servers whose sessions it ends exist.
func (a *app) mover() *move.Mover {
	sessions := map[string]move.SessionEnder{}
	if a.imap != nil {
		sessions["imap"] = a.imap
	}
	if a.sieve != nil {
		sessions["managesieve"] = a.sieve
	}
	// Until the directory client can write the attribute, moves stop
	// before holding anyone.
	var writer move.HomeWriter
	if _, ok := any(a.dir.get()).(move.HomeWriter); ok {
		writer = moveDirectory{a.dir}
	}
	return move.NewMover(move.Options{
		Directory: moveDirectory{a.dir}, FlushCache: a.dir.FlushCache, Writer: writer,
		Cluster: a.cluster, Holds: a.holds, Gate: a.gate, Sessions: sessions,
		Base: a.cfg.Delivery.MaildirBase, Logger: a.log.With("component", "move"),
	})
}

// controlListener serves the control socket on a cluster node (move-user
// is its one command). A socket that cannot be created (a path too long
// for a unix socket) is logged, not fatal: mail goes on, moves cannot.
func (a *app) controlListener() {
	if a.cluster == nil {
		return
	}
	m := a.mover()
	path := controlSocket(a.cfg)
	srv, err := control.Listen(control.Options{Path: path, Logger: a.log.With("component", "control"),
		Handlers: map[string]control.Handler{
			"move-user": func(ctx context.Context, args []string, progress func(string)) (string, error) {
				if len(args) != 2 {
					return "", errors.New("usage: move-user UID NODE")
				}
				if err := m.Move(ctx, args[0], args[1], progress); err != nil {
					return "", err
				}
				return fmt.Sprintf("%s moved to %s", args[0], args[1]), nil
			},
		}})
	if err != nil {
		a.log.Error("control socket unavailable: courriel move-user will not work", "path", path, "err", err)
		return
	}
	a.listeners = append(a.listeners, controlBound("control", path, srv))
}

// controlBound is a control socket's server as one of the app's
// listeners: its socket file is removed when it stops.
func controlBound(name, path string, srv *control.Server) boundListener {
	return boundListener{name: name, ln: srv.Listener(),
		serve: func(net.Listener) error { return srv.Serve() },
		stop: func(context.Context) error {
			err := srv.Close()
			_ = os.Remove(path)
			return err
		}}
}
