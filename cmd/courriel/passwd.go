package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"golang.org/x/sys/unix"

	"courriel/directory/password"
)

// runPasswd prints a userPassword hash, like slappasswd. The password comes
// from a terminal prompt (twice, without echo) or from the first line of stdin.
func runPasswd(_ context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := newFlagSet("passwd", stderr)
	scheme := fs.String("scheme", string(password.SSHA), "hash scheme: {SSHA} (slapd default), {SSHA256} or {SSHA512} (slapd needs pw-sha2)")
	if err := fs.Parse(args); err != nil {
		return err
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
	fmt.Fprintln(stdout, h)
	return nil
}

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
