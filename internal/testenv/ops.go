package testenv

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// Add applies ldif as the admin with ldapmodify -a: plain records are added,
// changetype records do what they say. Any error fails the test.
func (s *Slapd) Add(t testing.TB, ldif string) {
	t.Helper()
	s.ldapmodify(t, AdminDN, AdminPassword, ldif, "-a")
}

// Modify applies ldif (changetype records) as the admin with ldapmodify.
func (s *Slapd) Modify(t testing.TB, ldif string) {
	t.Helper()
	s.ldapmodify(t, AdminDN, AdminPassword, ldif)
}

// ModifyConfig applies ldif to cn=config as its rootdn (ldapmodify -a over
// ldap://): schema entries, olcDbIndex, olcAccess.
func (s *Slapd) ModifyConfig(t testing.TB, ldif string) {
	t.Helper()
	s.ldapmodify(t, ConfigDN, ConfigPassword, ldif, "-a")
}

// Delete removes one entry as the admin.
func (s *Slapd) Delete(t testing.TB, dn string) {
	t.Helper()
	s.runTool(t, "", s.tools.ldapdelete, s.bindArgs(t, AdminDN, AdminPassword, dn)...)
}

func (s *Slapd) ldapmodify(t testing.TB, bindDN, password, ldif string, extra ...string) {
	t.Helper()
	args := append(s.bindArgs(t, bindDN, password), extra...)
	s.runTool(t, ldif, s.tools.ldapmodify, args...)
}

// bindArgs are simple-bind arguments over ldap:// (no TLS: loopback, and the
// admin's operations are not what a test checks). The password goes through a
// file, not the command line.
func (s *Slapd) bindArgs(t testing.TB, bindDN, password string, rest ...string) []string {
	t.Helper()
	pwFile := s.passwordFile(t, password)
	return append([]string{"-x", "-H", s.URL(), "-D", bindDN, "-y", pwFile, "-o", "nettimeout=10"}, rest...)
}

// passwordFile writes password (no newline: ldap tools take the file as is).
func (s *Slapd) passwordFile(t testing.TB, password string) string {
	t.Helper()
	f, err := os.CreateTemp(s.dir, "pw")
	if err == nil {
		_, err = f.WriteString(password)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		t.Fatalf("testenv: password file: %v", err)
	}
	return f.Name()
}

// runTool runs an OpenLDAP program with stdin, failing the test with its
// output on a non-zero exit.
func (s *Slapd) runTool(t testing.TB, stdin, prog string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), toolTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, prog, args...)
	// Ignore ldap.conf and ~/.ldaprc: a host's TLS_REQCERT or BASE must not
	// change what the test does.
	cmd.Env = append(os.Environ(), "LDAPNOINIT=1")
	cmd.Stdin = strings.NewReader(stdin)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("testenv: %s %s: %v\n%s", prog, strings.Join(shorten(args), " "), err, out.String())
	}
	return out.String()
}

// shorten keeps long arguments out of failure messages.
func shorten(args []string) []string {
	out := make([]string, len(args))
	for i, a := range args {
		if len(a) > 200 {
			a = a[:200] + "…"
		}
		out[i] = a
	}
	return out
}
