package tlsconf_test

import (
	"crypto/tls"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"courriel/tlsconf"
)

// A key mismatch waiting for its second look, then a SetFiles (SIGHUP
// naming other files) that fails: the old files are still followed, and
// their mismatch is logged at ERROR when it stays, as without the
// SetFiles; it was dropped, only ever logged at INFO.
func TestFailedSetFilesKeepsTheSecondLook(t *testing.T) {
	t.Parallel()
	ca := newTestCA(t, "test CA")
	dir := t.TempDir()
	p1, p2 := ca.issue(t, leafOpts{}), ca.issue(t, leafOpts{})
	cert, key := filepath.Join(dir, "c.pem"), filepath.Join(dir, "k.pem")
	writeFile(t, cert, p1.certPEM)
	writeFile(t, key, p1.keyPEM)
	clock := &fakeClock{t: time.Now()}
	later := &laterFuncs{}
	log, logs := newLogger(t)
	m, err := tlsconf.New(tlsconf.Options{CertFile: cert, KeyFile: key, Logger: log, ReloadCheckInterval: 0, Now: clock.now})
	if err != nil {
		t.Fatal(err)
	}
	m.SetAfterFunc(later.afterFunc)
	writeFile(t, key, p2.keyPEM) // a mismatch that stays
	m.GetCertificate(&tls.ClientHelloInfo{})
	_, retry := later.take()
	if len(retry) != 1 {
		t.Fatalf("no second look scheduled: %d", len(retry))
	}
	// SIGHUP names other files, which do not load.
	if err := m.SetFiles(filepath.Join(dir, "nope.pem"), filepath.Join(dir, "nope.key")); err == nil {
		t.Fatal("SetFiles of missing files succeeded")
	}
	before := strings.Count(logs.String(), "level=ERROR")
	clock.add(2 * time.Second)
	retry[0]()
	for range 3 {
		clock.add(time.Minute)
		m.GetCertificate(&tls.ClientHelloInfo{})
	}
	if n := strings.Count(logs.String(), "level=ERROR") - before; n == 0 {
		t.Errorf("the standing mismatch of %s/%s never logged at ERROR:\n%s", cert, key, logs)
	}
}
