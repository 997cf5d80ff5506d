package imap

import (
	"os"
	"path/filepath"
	"testing"
)

// condstoreBenchScript measures issue 13's resynchronisation figures with
// imaplib: a client that cached the folder's HIGHESTMODSEQ catches up
// after another session changed 10 messages' flags (UID FETCH 1:* (FLAGS)
// (CHANGEDSINCE n)), then after it expunged 10 messages (a new connection's
// SELECT (QRESYNC (uidvalidity n 1:last))). The other session stays
// connected, as a desktop client beside a phone would; then the same
// SELECT once it left ("alone": the folder is opened afresh). It checks
// the answers: 10 FETCH responses, 10 UIDs in VANISHED (EARLIER).
const condstoreBenchScript = `
import imaplib, re, ssl, sys, time
host, port, user, pw = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
ctx = ssl._create_unverified_context()
def conn(qresync):
    c = imaplib.IMAP4_SSL(host, port, ssl_context=ctx)
    c.login(user, pw)
    if qresync:
        c.enable('QRESYNC')
    return c
def code(c, name):
    return int(c.untagged_responses[name][-1])
a = conn(True)
typ, d = a.select('INBOX')
n = int(d[0])
uv, h0 = code(a, 'UIDVALIDITY'), code(a, 'HIGHESTMODSEQ')
typ, d = a.uid('SEARCH', 'ALL')
uids = d[0].split()
pick = [uids[i * len(uids) // 10].decode() for i in range(10)]
other = conn(False)
other.select('INBOX')
for u in pick:
    other.uid('STORE', u, '+FLAGS', '(\\Flagged)')
other.noop()
s = time.perf_counter()
typ, d = a.uid('FETCH', '1:*', '(FLAGS) (CHANGEDSINCE %d)' % h0)
e = time.perf_counter() - s
got = [x for x in d if x and b'UID' in (x if isinstance(x, bytes) else x[0])]
if typ != 'OK' or len(got) < 10: raise SystemExit('changedsince: %s %d %r' % (typ, len(got), d[:3]))
print('fetch_changedsince_10', '%.4f' % e, flush=True)
a.logout()
typ, d = other.status('INBOX', '(HIGHESTMODSEQ)')
h1 = int(re.search(rb'HIGHESTMODSEQ (\d+)', d[0]).group(1))
for u in pick:
    other.uid('STORE', u, '+FLAGS.SILENT', '(\\Deleted)')
other.expunge()
c = conn(True)
s = time.perf_counter()
typ, d = c._simple_command('SELECT', 'INBOX (QRESYNC (%d %d 1:%s))' % (uv, h1, uids[-1].decode()))
e = time.perf_counter() - s
if typ != 'OK': raise SystemExit('select qresync: %s %r' % (typ, d))
van = c.untagged_responses.get('VANISHED', [b''])[-1]
m = re.search(rb'\(EARLIER\) (\S+)', van)
count = 0
for part in (m.group(1).split(b',') if m else []):
    lo, _, hi = part.partition(b':')
    count += int(hi or lo) - int(lo) + 1
if count != 10: raise SystemExit('select qresync: VANISHED %r' % van)
print('select_qresync_10_expunged', '%.4f' % e, flush=True)
c.logout()
other.logout()
# The same with nobody else connected: the folder is opened afresh.
time.sleep(1.0)
c = conn(True)
s = time.perf_counter()
typ, d = c._simple_command('SELECT', 'INBOX (QRESYNC (%d %d 1:%s))' % (uv, h1, uids[-1].decode()))
e = time.perf_counter() - s
if typ != 'OK' or b'(EARLIER)' not in c.untagged_responses.get('VANISHED', [b''])[-1]: raise SystemExit('select qresync alone: %s %r' % (typ, d))
print('select_qresync_10_expunged_alone', '%.4f' % e, flush=True)
c.logout()
`

// reportCondstoreBench runs condstoreBenchScript against courriel and
// Dovecot, one after the other, and reports its figures.
func reportCondstoreBench(b *testing.B, run, courrielAddr, dovecotAddr string) {
	script := filepath.Join(b.TempDir(), "condstore.py")
	if err := os.WriteFile(script, []byte(condstoreBenchScript), 0o644); err != nil {
		b.Fatal(err)
	}
	for op, secs := range runBenchScript(b, script, courrielAddr, "alice", "secret") {
		b.ReportMetric(secs, "courriel_"+run+"_"+op+"_s")
	}
	for op, secs := range runBenchScript(b, script, dovecotAddr, "bench", "demo") {
		b.ReportMetric(secs, "dovecot_"+run+"_"+op+"_s")
	}
}
