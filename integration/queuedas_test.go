package integration

import (
	"crypto/tls"
	"regexp"
	"strings"
	"testing"

	gosmtp "github.com/emersion/go-smtp"

	"courriel/internal/testenv"
)

// The id of the SMTP reply "250 2.0.0 OK: queued as ID" is what a sender's
// admin names; every queue command takes it, as postsuper takes Postfix's.
func TestQueueQueuedAsID(t *testing.T) {
	s, _ := startServerDeferred(t)

	c, err := gosmtp.DialStartTLS(s.Sub, &tls.Config{ServerName: "localhost", RootCAs: s.ca.Pool()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Auth(plainAuth("alice", testenv.AlicePassword)); err != nil {
		t.Fatal(err)
	}
	if err := c.Mail("alice@example.org", nil); err != nil {
		t.Fatal(err)
	}
	if err := c.Rcpt("far@foreign.example", nil); err != nil {
		t.Fatal(err)
	}
	w, err := c.Data()
	if err != nil {
		t.Fatal(err)
	}
	w.Write([]byte("Subject: q\r\n\r\nbody of far@foreign.example\r\n"))
	resp, err := w.CloseWithResponse()
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`queued as (\S+)`).FindStringSubmatch(resp.StatusText)
	if m == nil {
		t.Fatalf("DATA reply %q", resp.StatusText)
	}
	id := m[1]

	if out, code := courriel(t, "queue", "list", "-config", s.config); code != 0 || !strings.Contains(out, "msg_id="+id+"\n") {
		t.Errorf("queue list: exit %d, no msg_id=%s\n%s", code, id, out)
	}
	if out, code := courriel(t, "queue", "show", id, "-config", s.config); code != 0 || !strings.Contains(out, "msg_id: "+id+"\n") || !strings.Contains(out, "body of far@") {
		t.Errorf("queue show %s: exit %d\n%s", id, code, out)
	}
	if out, code := courriel(t, "queue", "hold", id, "-config", s.config); code != 0 || !strings.Contains(out, "Placed on hold: 1") {
		t.Errorf("queue hold %s: exit %d\n%s", id, code, out)
	}
	if out, code := courriel(t, "queue", "show", id, "-config", s.config); code != 0 || !strings.Contains(out, "\nheld: yes") {
		t.Errorf("queue show %s of a held message: exit %d\n%s", id, code, out)
	}
	if out, code := courriel(t, "queue", "release", id, "-config", s.config); code != 0 || !strings.Contains(out, "Released from hold: 1") {
		t.Errorf("queue release %s: exit %d\n%s", id, code, out)
	}
	if out, code := courriel(t, "queue", "delete", id, "-config", s.config); code != 0 || !strings.Contains(out, "Deleted: 1") {
		t.Errorf("queue delete %s: exit %d\n%s", id, code, out)
	}
	if out, _ := courriel(t, "queue", "list", "-config", s.config); !strings.Contains(out, "Mail queue is empty") {
		t.Errorf("after the delete:\n%s", out)
	}
}
