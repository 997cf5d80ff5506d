// Command courriel is one mail server binary: SMTP, submission, IMAPS,
// maildir delivery and an outbound queue, all accounts read from LDAP.
package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"runtime/trace"
	"strconv"
	"strings"
	"syscall"
)

const defaultConfigPath = "/etc/courriel/config.toml"

// exitError carries a process exit status with its message.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func exitf(code int, format string, args ...any) error {
	return &exitError{code: code, err: fmt.Errorf(format, args...)}
}

type command struct {
	name    string
	summary string
	run     func(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error
}

func commands() []command {
	return []command{
		{"serve", "run every configured listener", runServe},
		{"demo", "run everything on loopback with an embedded directory", runDemo},
		{"check-config", "print the effective configuration and check LDAP, TLS and paths", runCheckConfig},
		{"lookup", "run one directory lookup (like postmap -q)", runLookup},
		{"passwd", "print a {SSHA} password hash for userPassword (like slappasswd), or set a user's with -user", runPasswd},
		{"ldap-schema", "print the postfixUser schema, indexes and ACL LDIF for cn=config", runLDAPSchema},
		{"queue", "list, show, flush, delete, hold or release queued mail (like mailq, postqueue, postsuper)", runQueue},
		{"dkim", "generate DKIM keys and check their published DNS records", runDKIM},
		{"sendmail", "send a message from stdin through the running server (Postfix's sendmail; also as argv[0] sendmail)", runSendmail},
		{"move-user", "move a user's home to another cluster node (running server, root)", runMoveUser},
		{"version", "print the version: module version, VCS revision, Go version (also -version)", runVersion},
	}
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: courriel COMMAND [flags] [args]\n\ncommands:")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-13s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w, "\nRun 'courriel COMMAND -h' for a command's flags.")
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	stopProfiles := startProfiles()
	code := run(ctx, argsOf(os.Args), os.Stdin, os.Stdout, os.Stderr)
	stopProfiles()
	os.Exit(code)
}

// argsOf is the command line run takes: the arguments, after the
// command "sendmail" when the binary runs under that name (a link
// /usr/sbin/sendmail -> courriel, for cron, mail(1) and PHP's mail()),
// or under Postfix's other names for it: mailq (sendmail -bp, the queue
// listed: monitoring scripts run it) and newaliases (sendmail -bi).
func argsOf(argv []string) []string {
	if len(argv) == 0 {
		return nil
	}
	switch filepath.Base(argv[0]) {
	case "sendmail":
		return append([]string{"sendmail"}, argv[1:]...)
	case "mailq":
		return append([]string{"sendmail", "-bp"}, argv[1:]...)
	case "newaliases":
		return append([]string{"sendmail", "-bi"}, argv[1:]...)
	}
	return argv[1:]
}

// startProfiles, for benchmarks: COURRIEL_CPUPROFILE=file writes a CPU
// profile until exit; COURRIEL_BLOCKPROFILE, COURRIEL_MUTEXPROFILE and
// COURRIEL_MEMPROFILE write, at exit, where goroutines waited (channels,
// locks, select), which locks were contended and what allocated;
// COURRIEL_TRACE writes an execution trace until exit (go tool trace: where
// each goroutine waited, and how long it was runnable without a CPU). A
// "%p" in a file name becomes the process id, so that servers started
// side by side keep their own. It returns what stops them and writes the
// files.
func startProfiles() (stop func()) {
	var stops []func()
	getenv := func(name string) string {
		return strings.ReplaceAll(os.Getenv(name), "%p", strconv.Itoa(os.Getpid()))
	}
	if p := getenv("COURRIEL_TRACE"); p != "" {
		if f, err := os.Create(p); err == nil && trace.Start(f) == nil {
			stops = append(stops, func() { trace.Stop(); f.Close() })
		}
	}
	if p := getenv("COURRIEL_CPUPROFILE"); p != "" {
		if f, err := os.Create(p); err == nil && pprof.StartCPUProfile(f) == nil {
			stops = append(stops, func() { pprof.StopCPUProfile(); f.Close() })
		}
	}
	atExit := func(name, path string) {
		stops = append(stops, func() {
			if f, err := os.Create(path); err == nil {
				pprof.Lookup(name).WriteTo(f, 0)
				f.Close()
			}
		})
	}
	if p := getenv("COURRIEL_BLOCKPROFILE"); p != "" {
		runtime.SetBlockProfileRate(10_000) // one event per 10 µs blocked
		atExit("block", p)
	}
	if p := getenv("COURRIEL_MEMPROFILE"); p != "" {
		atExit("allocs", p) // sampled at the default rate: where allocations come from
	}
	if p := getenv("COURRIEL_MUTEXPROFILE"); p != "" {
		runtime.SetMutexProfileFraction(5)
		atExit("mutex", p)
	}
	return func() {
		for _, stop := range stops {
			stop()
		}
	}
}

func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stderr)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	if args[0] == "-version" || args[0] == "--version" {
		args = append([]string{"version"}, args[1:]...)
	}
	for _, c := range commands() {
		if c.name != args[0] {
			continue
		}
		err := c.run(ctx, args[1:], stdin, stdout, stderr)
		if err == nil {
			return 0
		}
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintf(stderr, "courriel %s: %v\n", c.name, err)
		var ee *exitError
		if errors.As(err, &ee) {
			return ee.code
		}
		return 1
	}
	fmt.Fprintf(stderr, "courriel: unknown command %q\n", args[0])
	usage(stderr)
	return 2
}

func runVersion(_ context.Context, args []string, _ io.Reader, stdout, _ io.Writer) error {
	if len(args) > 0 {
		return exitf(2, "version takes no argument, got %q", args[0])
	}
	fmt.Fprintln(stdout, version())
	return nil
}

// version says which build this is, from what the go command recorded in
// the binary: the module's version ("(devel)" for a build from a work
// tree), the VCS revision and its time, "modified" when the tree had
// uncommitted changes, and the Go version.
func version() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "courriel (no build information) " + runtime.Version()
	}
	return formatVersion(bi)
}

func formatVersion(bi *debug.BuildInfo) string {
	s := "courriel " + cmp.Or(bi.Main.Version, "(devel)")
	vcs := map[string]string{}
	for _, kv := range bi.Settings {
		vcs[kv.Key] = kv.Value
	}
	if rev := vcs["vcs.revision"]; rev != "" {
		var more []string
		if t := vcs["vcs.time"]; t != "" {
			more = append(more, t)
		}
		if vcs["vcs.modified"] == "true" {
			more = append(more, "modified")
		}
		s += " " + cmp.Or(vcs["vcs"], "vcs") + " " + rev
		if len(more) > 0 {
			s += " (" + strings.Join(more, ", ") + ")"
		}
	}
	return s + " " + cmp.Or(bi.GoVersion, runtime.Version())
}

// newFlagSet returns a flag set that reports errors instead of exiting.
func newFlagSet(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("courriel "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

// parseInterspersed parses flags wherever they stand among the words, so
// that `queue list -config F` works as `queue -config F list` and `lookup
// aliases KEY -config F` as `lookup -config F aliases KEY` (Go's flag
// package stops at the first word). After "--" everything is a word (a
// KEY that starts with "-").
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
