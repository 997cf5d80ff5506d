package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"courriel/delivery/maildrop"
	"courriel/internal/envaddr"
)

// Exit statuses of sendmail (sysexits.h), as Postfix's sendmail(1) uses
// them.
const (
	exOK          = 0
	exUsage       = 64 // EX_USAGE: bad flags, no recipient
	exDataErr     = 65 // EX_DATAERR: unreadable input, bad addresses in it
	exNoUser      = 67 // EX_NOUSER: a recipient refused as unknown (5.1.x)
	exUnavailable = 69 // EX_UNAVAILABLE: the message refused for good (5xx)
	exSoftware    = 70 // EX_SOFTWARE: the server said something we cannot read
	exTempFail    = 75 // EX_TEMPFAIL: not sent now, may be sent later (4xx, no server)
	exConfig      = 78 // EX_CONFIG: the configuration is unusable
)

// maxSendmailInput bounds the message sendmail reads into memory; the
// server's message_size_limit (SIZE) refuses more before DATA.
const maxSendmailInput = 100 << 20

// sendmailArgs is what sendmail's command line asks for.
type sendmailArgs struct {
	config string // -config FILE; defaultConfigPath otherwise
	// from is the envelope sender of -f/-r ("<>" or "" given: the null
	// sender); fromSet says whether one was given.
	from     string
	fromSet  bool
	fullName string // -F, for a From: the message lacks
	extract  bool   // -t: recipients from To, Cc and Bcc as well
	// dots: a line with a lone "." ends the input (no -i / -oi).
	dots   bool
	rcpts  []string // command line recipients
	notify string   // -N: DSN NOTIFY (RFC 3461), "" none
	ret    string   // -R: DSN RET (hdrs or full), "" none
	envid  string   // -V: DSN ENVID, "" none
	// mode: "m" deliver (-bm, the default), "s" SMTP on stdin and stdout
	// (-bs), "i" newaliases (-bi, -I), "p" mailq (-bp), "q" run the queue
	// (-q: the queue runs itself).
	mode string
}

// sendmailOptArg lists the options of Postfix's sendmail that take an
// argument (its GETOPT_LIST); the others are single letters.
const sendmailOptArg = "ABCFLNORVXbefhopqr"

// parseSendmailArgs reads a Postfix sendmail command line: options may be
// clustered (-ti), an argument attached (-fuser, -oi) or separate (-f
// user), and recipients may stand among them (GNU getopt permutes) until
// "--". -config FILE (and --config) is courriel's own; options Postfix
// ignores are ignored (-o x, -v, -m, -c, -n, -x, -h N, -L, -O, -X, -U,
// -G, -C, -B, -e, -p), as are -q (the queue runs itself).
func parseSendmailArgs(args []string) (*sendmailArgs, error) {
	a := &sendmailArgs{config: defaultConfigPath, dots: true, mode: "m"}
	for i := 0; i < len(args); i++ {
		arg := args[i]
		switch {
		case arg == "--":
			a.rcpts = append(a.rcpts, args[i+1:]...)
			return a, nil
		case arg == "-config" || arg == "--config":
			if i+1 >= len(args) {
				return nil, fmt.Errorf("%s needs a file", arg)
			}
			i++
			a.config = args[i]
			continue
		case strings.HasPrefix(arg, "-config=") || strings.HasPrefix(arg, "--config="):
			_, a.config, _ = strings.Cut(arg, "=")
			continue
		case arg == "-q" || strings.HasPrefix(arg, "-q"):
			a.mode = "q"
			continue
		case len(arg) < 2 || arg[0] != '-':
			a.rcpts = append(a.rcpts, arg)
			continue
		}
		for j := 1; j < len(arg); j++ {
			c := arg[j]
			if !strings.ContainsRune(sendmailOptArg, rune(c)) {
				switch c {
				case 't':
					a.extract = true
				case 'i':
					a.dots = false
				case 'I':
					a.mode = "i"
				case 'v', 'm', 'c', 'n', 'x', 'U', 'G':
				default:
					return nil, fmt.Errorf("unknown option -%c", c)
				}
				continue
			}
			val := arg[j+1:]
			if val == "" {
				if i+1 >= len(args) {
					return nil, fmt.Errorf("option -%c needs a value", c)
				}
				i++
				val = args[i]
			}
			if err := a.option(c, val); err != nil {
				return nil, err
			}
			break
		}
	}
	return a, nil
}

// option applies one option that takes a value.
func (a *sendmailArgs) option(c byte, val string) error {
	switch c {
	case 'f', 'r':
		a.from, a.fromSet = val, true
	case 'F':
		a.fullName = val
	case 'o':
		if val == "i" {
			a.dots = false
		}
	case 'b':
		switch val {
		case "m":
			a.mode = "m"
		case "i":
			a.mode = "i"
		case "p":
			a.mode = "p"
		case "s":
			a.mode = "s"
		default:
			return fmt.Errorf("-b%s is not supported (only -bm, -bs, -bp as mailq, and -bi which does nothing)", val)
		}
	case 'N':
		v := strings.ToUpper(val)
		if v != "NEVER" {
			for _, w := range strings.Split(v, ",") {
				if w != "SUCCESS" && w != "FAILURE" && w != "DELAY" {
					return fmt.Errorf("-N %q: want never or a list of success, failure, delay", val)
				}
			}
		}
		a.notify = v
	case 'R':
		v := strings.ToUpper(val)
		if v != "HDRS" && v != "FULL" {
			return fmt.Errorf("-R %q: want hdrs or full", val)
		}
		a.ret = v
	case 'V':
		a.envid = val
	}
	// The others (-A, -B, -C, -L, -O, -X, -e, -h, -p) are accepted and
	// ignored, as Postfix ignores most of them.
	return nil
}

// runSendmail is `courriel sendmail` (also the binary run as sendmail): it
// reads a message from stdin and hands it to the running server's local
// submission socket (listen.local). Exit 0 once the server has stored or
// queued it, or, when the server cannot take it now (not running, a 4xx),
// once the message is durably in the maildrop (<queue.dir>/maildrop),
// which the server picks up when it can (pickup.go), as Postfix's sendmail
// leaves it to postdrop and pickup. 75 only when neither worked or a
// signal came, 64-69 when it was refused.
func runSendmail(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	a, err := parseSendmailArgs(args)
	if err != nil {
		return &exitError{code: exUsage, err: fmt.Errorf("%w; mail NOT sent\nusage: sendmail [-t] [-i] [-f sender] [-F name] [-config FILE] [recipient ...]", err)}
	}
	switch a.mode {
	case "i":
		fmt.Fprintln(stderr, "sendmail: aliases are read from the LDAP directory; nothing to rebuild")
		return nil
	case "q":
		return nil // the queue runs by itself
	case "p":
		// mailq: the queue listed as `courriel queue list` lists it.
		return runQueue(ctx, []string{"-config", a.config, "list"}, stdin, stdout, stderr)
	}
	if a.mode == "s" {
		if len(a.rcpts) > 0 {
			return exitf(exUsage, "stand-alone mode (-bs) requires no recipient")
		}
		paths, err := sendmailPaths(a.config, sendmailPathsFile)
		if err != nil {
			return &exitError{code: exConfig, err: err}
		}
		return runStandalone(ctx, a, paths, stdin, stdout)
	}
	if !a.extract && len(a.rcpts) == 0 {
		return exitf(exUsage, "recipients must be given on the command line or with -t; mail NOT sent")
	}
	msg, err := readSendmailInputCtx(ctx, stdin, a.dots, maxSendmailInput)
	if ctx.Err() != nil {
		return interrupted(ctx)
	}
	if err != nil {
		return exitf(exDataErr, "reading the message: %v; mail NOT sent", err)
	}
	paths, err := sendmailPaths(a.config, sendmailPathsFile)
	if err != nil {
		return &exitError{code: exConfig, err: fmt.Errorf("%w; mail NOT sent", err)}
	}
	// Counted before anything is sent or left in the maildrop: a message
	// for too many recipients, or for none (-t and a header that names
	// nobody), is refused whichever way it would go, as Postfix's sendmail
	// refuses it before postdrop (EX_USAGE): in the maildrop it could only
	// be set aside, and the caller told it was sent.
	if p, err := prepareMessage(msg, a, "", "", ""); errors.Is(err, errTooManyRecipients) {
		return exitf(exDataErr, "%v; mail NOT sent", err)
	} else if err == nil && len(p.rcpts) == 0 {
		return exitf(exUsage, "no recipient addresses found in the message header; mail NOT sent")
	}
	login, fullName := invokingUser()
	if a.fullName != "" {
		fullName = a.fullName
	}
	err = sendLocal(ctx, paths.socket, a, login, fullName, msg)
	var ee *exitError
	if ctx.Err() != nil || !errors.As(err, &ee) || ee.code != exTempFail {
		return err
	}
	return dropMail(paths, a, fullName, msg, err)
}

// dropMail leaves the message in the maildrop after the server could not
// take it (why): exit 0 once it is durable there, 75 with why and the
// maildrop's error when it is not. Also when the server may have stored
// it (no answer to the end of the message): a duplicate rather than a
// loss, as the maildrop is at least once anyway. A message the server
// took for some recipients (partialError) is left for the others only.
// A message larger than the server's message_size_limit (when known) is
// refused, exit 69 as the server's 552 is: the pickup could only set it
// aside, the caller told it was sent. Postfix's sendmail refuses it too,
// its queue file limited to message_size_limit.
func dropMail(dest sendmailDest, a *sendmailArgs, fullName string, msg []byte, why error) error {
	if dest.maxMessage > 0 && int64(len(msg)) > dest.maxMessage {
		return exitf(exUnavailable, "%s; and the message (%d octets) is larger than the server takes (message_size_limit %d); mail NOT sent",
			strings.TrimSuffix(why.Error(), "; mail NOT sent"), len(msg), dest.maxMessage)
	}
	env := &maildrop.Envelope{From: a.from, FromSet: a.fromSet, FullName: fullName, Extract: a.extract,
		Recipients: a.rcpts, Notify: a.notify, Ret: a.ret, EnvID: a.envid}
	var pe *partialError
	if errors.As(why, &pe) {
		env = &maildrop.Envelope{From: pe.sender, FromSet: true, Recipients: pe.rest, Notify: a.notify, Ret: a.ret, EnvID: a.envid}
		msg = pe.data
	}
	if _, err := maildrop.Write(dest.maildrop, env, msg); err != nil {
		return exitf(exTempFail, "%v; and the maildrop (where the server would pick it up later) failed too: %v", why, err)
	}
	return nil
}

// readSendmailInputCtx is readSendmailInput that gives up when ctx ends
// (SIGTERM, SIGINT), stdin or not at its end.
func readSendmailInputCtx(ctx context.Context, r io.Reader, dots bool, max int64) ([]byte, error) {
	type result struct {
		msg []byte
		err error
	}
	done := make(chan result, 1)
	go func() {
		msg, err := readSendmailInput(r, dots, max)
		done <- result{msg, err}
	}()
	select {
	case res := <-done:
		return res.msg, res.err
	case <-ctx.Done():
		return nil, context.Cause(ctx)
	}
}

// interrupted is sendmail's exit when a signal ended ctx before the
// message was handed over: EX_TEMPFAIL, nothing sent.
func interrupted(ctx context.Context) error {
	return exitf(exTempFail, "interrupted (%v); mail NOT sent", context.Cause(ctx))
}

// sendmailDest is where sendmail hands a message over.
type sendmailDest struct {
	socket   string // listen.local
	maildrop string // <queue.dir>/maildrop
	// maxMessage is message_size_limit, 0 when not known (the defaults).
	maxMessage int64
	// hostname is myhostname, "" when not known: sendmail -bs greets
	// with it, as Postfix's smtpd -S.
	hostname string
}

// sendmailPathsFile is where sendmail looks for the running server's
// socket and maildrop when it cannot read the configuration (an ordinary
// user may not: it holds the LDAP password): the file serve writes beside
// the default socket (writePathsFile).
var sendmailPathsFile = filepath.Join(filepath.Dir(DefaultLocalSocket), "sendmail.paths")

// sendmailPaths reads them from the configuration, or, when the file
// cannot be read, from the paths file the server wrote (pathsFile), or
// gives the defaults.
func sendmailPaths(config, pathsFile string) (sendmailDest, error) {
	data, err := os.ReadFile(config)
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, fs.ErrPermission) {
		if d, ok := readPathsFile(pathsFile); ok {
			return d, nil
		}
		return sendmailDest{socket: DefaultLocalSocket, maildrop: maildropDir(defaultConfig().Queue.Dir)}, nil
	}
	if err != nil {
		return sendmailDest{}, fmt.Errorf("configuration: %w", err)
	}
	// The files it names (keys, secrets) are not ours to read: only the
	// configuration itself must be valid.
	cfg, _, err := parseConfig(config, data)
	if err != nil {
		return sendmailDest{}, err
	}
	if cfg.Listen.Local == "" {
		return sendmailDest{}, fmt.Errorf("%s: local submission is off (listen.local = \"\")", config)
	}
	return sendmailDest{socket: cfg.Listen.Local, maildrop: maildropDir(cfg.Queue.Dir), maxMessage: cfg.MessageSizeLimit, hostname: cfg.MyHostname}, nil
}

// pathsFileHeader starts the paths file.
const pathsFileHeader = "# courriel serve: where sendmail hands mail over (written at each start)\n"

// writePathsFile writes the paths file beside the socket: world-readable,
// replaced atomically. It names the socket, the maildrop of queueDir,
// message_size_limit (maxMessage) and myhostname (hostname).
func writePathsFile(socket, queueDir string, maxMessage int64, hostname string) error {
	path := filepath.Join(filepath.Dir(socket), "sendmail.paths")
	data := pathsFileHeader + "socket " + socket + "\nmaildrop " + maildropDir(queueDir) + "\n"
	if maxMessage > 0 {
		data += "message_size_limit " + strconv.FormatInt(maxMessage, 10) + "\n"
	}
	if hostname != "" {
		data += "myhostname " + hostname + "\n"
	}
	tmp := path + ".tmp"
	os.Remove(tmp)
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, 0o644)
	if err != nil {
		return err
	}
	_, err = f.WriteString(data)
	err = errors.Join(err, f.Chmod(0o644), f.Close())
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
	}
	return err
}

// readPathsFile reads the paths file at path when it can be trusted: a
// regular file of root's or of its directory's owner, that nobody else
// may write, in a directory nobody else may write (else anyone could
// send every user's mail to a socket of theirs), naming absolute paths.
func readPathsFile(path string) (sendmailDest, bool) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		return sendmailDest{}, false
	}
	defer f.Close()
	fi, err := f.Stat()
	di, derr := os.Stat(filepath.Dir(path))
	if err != nil || derr != nil || !fi.Mode().IsRegular() || fi.Mode().Perm()&0o022 != 0 || di.Mode().Perm()&0o022 != 0 || fi.Size() > 4096 {
		return sendmailDest{}, false
	}
	st, ok1 := fi.Sys().(*syscall.Stat_t)
	dst, ok2 := di.Sys().(*syscall.Stat_t)
	if !ok1 || !ok2 || (st.Uid != 0 && st.Uid != dst.Uid) || (dst.Uid != 0 && dst.Uid != st.Uid) {
		return sendmailDest{}, false
	}
	b, err := io.ReadAll(io.LimitReader(f, 4096))
	if err != nil {
		return sendmailDest{}, false
	}
	var d sendmailDest
	for _, line := range strings.Split(string(b), "\n") {
		k, v, _ := strings.Cut(line, " ")
		switch k {
		case "message_size_limit":
			if n, err := strconv.ParseInt(v, 10, 64); err == nil && n > 0 {
				d.maxMessage = n
			}
			continue
		case "myhostname":
			if envaddr.ValidHostname(v) {
				d.hostname = v
			}
			continue
		}
		if !filepath.IsAbs(v) || filepath.Clean(v) != v {
			continue
		}
		switch k {
		case "socket":
			d.socket = v
		case "maildrop":
			d.maildrop = v
		}
	}
	return d, d.socket != "" && d.maildrop != ""
}

// invokingUser is the login name of the real uid and its full name
// ($NAME, else the passwd database's GECOS field, as Postfix's fullname()).
func invokingUser() (login, fullName string) {
	fullName = os.Getenv("NAME")
	u, err := user.LookupId(fmt.Sprint(os.Getuid()))
	if err != nil {
		return fmt.Sprint(os.Getuid()), fullName
	}
	if fullName == "" {
		fullName, _, _ = strings.Cut(u.Name, ",") // GECOS: name, room, phones
	}
	return u.Username, fullName
}
