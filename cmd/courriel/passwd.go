package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/go-ldap/ldap/v3"
	"golang.org/x/sys/unix"

	"courriel/directory"
	"courriel/directory/password"
)

// runPasswd prints a userPassword hash, like slappasswd; with -user, it
// sets that hash as the user's userPassword in the directory instead, on
// the provider ([ldap] write_urls or the replica's referral, bound as
// write_bind_dn). The password comes from a terminal prompt (twice,
// without echo) or from the first line of stdin.
func runPasswd(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := newFlagSet("passwd", stderr)
	scheme := fs.String("scheme", string(password.SSHA), "hash scheme: {SSHA} (slapd default), {SSHA256} or {SSHA512} (slapd needs pw-sha2)")
	user := fs.String("user", "", "set this user's password (uid or address) in the directory instead of printing the hash")
	cfgPath := fs.String("config", defaultConfigPath, "configuration file (with -user)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return exitf(2, "unexpected argument %q", fs.Arg(0))
	}
	var dir *directory.Directory
	var cfg *Config
	if *user != "" {
		// The configuration first: a typo costs no password typed twice.
		var err error
		cfg, err = LoadConfig(*cfgPath)
		if err != nil {
			return &exitError{code: 2, err: err}
		}
		if dir, err = directory.New(cfg.directoryOptions()); err != nil {
			return &exitError{code: 2, err: err}
		}
		defer dir.Close()
	}
	s, err := password.ParseScheme(*scheme)
	if err != nil {
		return err
	}
	var pw []byte
	if f, ok := stdin.(*os.File); ok && isTerminal(f) {
		if pw, err = promptTwice(f, stderr); err != nil {
			return err
		}
	} else {
		line, err := bufio.NewReader(io.LimitReader(stdin, 4096)).ReadString('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("reading the password: %w", err)
		}
		pw = []byte(strings.TrimRight(line, "\r\n"))
	}
	if len(pw) == 0 {
		return errors.New("empty password refused (an empty LDAP bind password is an anonymous bind)")
	}
	h, err := password.Hash(s, pw)
	if err != nil {
		return err
	}
	if dir == nil {
		fmt.Fprintln(stdout, h)
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, passwdTimeout)
	defer cancel()
	if err := dir.SetPassword(ctx, *user, h); err != nil {
		if errors.Is(err, directory.ErrNotFound) {
			return exitf(1, "no user %q in the directory", *user)
		}
		if le := (*ldap.Error)(nil); errors.As(err, &le) && le.ResultCode == ldap.LDAPResultInsufficientAccessRights {
			return exitf(2, "%v: %s", err, writeAccessHint(cfg.LDAP))
		}
		return &exitError{code: 2, err: err}
	}
	fmt.Fprintf(stdout, "password of %s set in the directory\n", *user)
	return nil
}

// writeAccessHint says, after the directory refused a write for
// insufficient access, which identity wrote and what it needs: the seed's
// ACL (courriel ldap-schema) lets only the user itself write its
// userPassword, so the reader, who writes when write_bind_dn is unset,
// never may.
func writeAccessHint(l LDAPConfig) string {
	if l.WriteBindDN == "" {
		return fmt.Sprintf("the write was bound as bind_dn %s, the reader, as [ldap] write_bind_dn is unset: "+
			"set write_bind_dn and write_bind_password_file to an identity allowed to write userPassword "+
			"(the database's rootdn, or one an olcAccess rule lets write it: README, \"LDAP: schema, indexes, ACL\")", l.BindDN)
	}
	return fmt.Sprintf("[ldap] write_bind_dn %s may not write userPassword: give it write access in an olcAccess rule "+
		"ahead of the others (README, \"LDAP: schema, indexes, ACL\"), or use the database's rootdn", l.WriteBindDN)
}

// passwdTimeout bounds the directory work of passwd -user.
const passwdTimeout = time.Minute

func isTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// readNoEcho prints prompt and reads one line from a terminal with echo
// turned off first, so that nothing typed after the prompt is echoed.
func readNoEcho(f *os.File, prompt string, stderr io.Writer) ([]byte, error) {
	fd := int(f.Fd())
	old, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if err != nil {
		return nil, err
	}
	t := *old
	t.Lflag &^= unix.ECHO
	t.Lflag |= unix.ICANON | unix.ISIG
	if err := unix.IoctlSetTermios(fd, unix.TCSETS, &t); err != nil {
		return nil, err
	}
	defer unix.IoctlSetTermios(fd, unix.TCSETS, old)
	fmt.Fprint(stderr, prompt)
	defer fmt.Fprintln(stderr)
	line, err := bufio.NewReader(f).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	return []byte(strings.TrimRight(line, "\r\n")), nil
}

func promptTwice(f *os.File, stderr io.Writer) ([]byte, error) {
	a, err := readNoEcho(f, "New password: ", stderr)
	if err != nil {
		return nil, err
	}
	b, err := readNoEcho(f, "Re-enter new password: ", stderr)
	if err != nil {
		return nil, err
	}
	if string(a) != string(b) {
		return nil, errors.New("the passwords do not match")
	}
	return a, nil
}
