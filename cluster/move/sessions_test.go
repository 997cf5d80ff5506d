package move

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"courriel/internal/testenv"
	"courriel/managesieve"
)

// sieveLogin logs login in on a ManageSieve server over STARTTLS; it
// returns the connection and the final line of AUTHENTICATE.
func sieveLogin(t *testing.T, addr string, ca *testenv.CA, login, password string) (*tls.Conn, *bufio.Reader, string) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	untilOK := func(r *bufio.Reader) string {
		for {
			l, err := r.ReadString('\n')
			if err != nil {
				t.Fatalf("ManageSieve: %v", err)
			}
			if strings.HasPrefix(l, "OK") || strings.HasPrefix(l, "NO") || strings.HasPrefix(l, "BYE") {
				return strings.TrimSpace(l)
			}
		}
	}
	br := bufio.NewReader(c)
	untilOK(br)
	fmt.Fprintf(c, "STARTTLS\r\n")
	if l := untilOK(br); !strings.HasPrefix(l, "OK") {
		t.Fatalf("STARTTLS: %s", l)
	}
	tc := tls.Client(c, ca.ClientTLSConfig("127.0.0.1"))
	tr := bufio.NewReader(tc)
	untilOK(tr) // capabilities again
	fmt.Fprintf(tc, "AUTHENTICATE \"PLAIN\" \"%s\"\r\n", base64.StdEncoding.EncodeToString([]byte("\x00"+login+"\x00"+password)))
	return tc, tr, untilOK(tr)
}

// EndUser closes the user's sessions, and only theirs, refuses the user's
// logins until released, and returns after the sessions are gone.
func TestEndUser(t *testing.T) {
	t.Parallel()
	n := newTwoNodes(t)
	makeHome(t, n.aHome)
	ctx := context.Background()

	sieveSrv, err := managesieve.NewServer(managesieve.Options{Auth: n.d, Chown: os.Geteuid() == 0,
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{n.ca.IssueCertificate(t, "127.0.0.1")}}})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go sieveSrv.Serve(ln)
	t.Cleanup(func() { sieveSrv.Close() })
	sieveAddr := ln.Addr().String()

	xoSieve, xoSieveR, l := sieveLogin(t, sieveAddr, n.ca, "xomail", testenv.XomailPassword)
	if !strings.HasPrefix(l, "OK") {
		t.Fatalf("ManageSieve login: %s", l)
	}
	aliceSieve, aliceSieveR, l := sieveLogin(t, sieveAddr, n.ca, "alice", testenv.AlicePassword)
	if !strings.HasPrefix(l, "OK") {
		t.Fatalf("ManageSieve login alice: %s", l)
	}
	xoIMAP, xoIMAPR := n.imapSession(t)

	var releases []func()
	for name, s := range map[string]SessionEnder{"imap": n.imapSrv, "managesieve": sieveSrv} {
		ended, release, err := s.EndUser(ctx, "xomail")
		if err != nil || ended != 1 {
			t.Fatalf("%s: EndUser = %d, %v", name, ended, err)
		}
		releases = append(releases, release)
	}
	for name, r := range map[string]*bufio.Reader{"imap": xoIMAPR, "managesieve": xoSieveR} {
		if _, err := io.ReadAll(r); err != nil {
			t.Errorf("%s session of xomail still open: %v", name, err)
		}
	}
	xoIMAP.Close()
	xoSieve.Close()
	// alice's session goes on.
	fmt.Fprintf(aliceSieve, "LISTSCRIPTS\r\n")
	if l, err := aliceSieveR.ReadString('\n'); err != nil || !strings.HasPrefix(l, "OK") {
		t.Errorf("alice's session after xomail's end: %q, %v", l, err)
	}
	aliceSieve.Close()

	c, _, l := sieveLogin(t, sieveAddr, n.ca, "xomail", testenv.XomailPassword)
	c.Close()
	if !strings.HasPrefix(l, "NO") {
		t.Errorf("ManageSieve login during the move: %s", l)
	}
	for _, r := range releases {
		r()
		r() // once only
	}
	c, _, l = sieveLogin(t, sieveAddr, n.ca, "xomail", testenv.XomailPassword)
	c.Close()
	if !strings.HasPrefix(l, "OK") {
		t.Errorf("ManageSieve login after release: %s", l)
	}
	c, _ = n.imapSession(t) // fails the test unless logged in
	c.Close()
}
