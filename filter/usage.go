package filter

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"courriel/delivery"
	"courriel/directory"
	"courriel/sieve"
)

// Cumulative resource usage, as Pigeonhole 0.5 (sieve_max_cpu_time with
// sieve_resource_usage_timeout): a user's script that keeps spending
// much on every message is disabled, not run again on each.
//
// A run of the user's script that spends more than highUsage (1.5 s,
// Pigeonhole's SIEVE_HIGH_CPU_TIME_MSECS) is recorded: its usage is added
// to the script's sum, and the time of the record kept. A sum whose last
// record is older than the timeout (Options.ResourceUsageTimeout, 1 h)
// starts again from zero. Once the sum passes the limit (the run's time
// limit, Limits.MaxRunTime: sieve_max_cpu_time, 30 s), the script is
// disabled: it is not run (the message kept in INBOX, "cumulative
// resource usage limit exceeded" in the user's ~/.dovecot.sieve.log, as
// Pigeonhole refuses to open the binary) until a new version of it (a
// ManageSieve PUTSCRIPT, any change of the file) is found once the
// timeout has passed since the last record. As in Pigeonhole, a new
// version within the timeout keeps the sum and stays disabled, the same
// version stays disabled after it (Pigeonhole keeps the flag in the
// binary until it is compiled again), and another script made active has
// a record of its own. The administrator reactivates a script at once by
// removing ~/.courriel.sieve-usage (Pigeonhole: sievec).
//
// A run's usage is its work (sieve.Result.Work: units priced at about a
// nanosecond of one core, a deterministic stand-in for the CPU time
// Pigeonhole charges and Go cannot measure per goroutine). Wall time is
// not CPU time: a run stopped by time (Limits.MaxRunTime, or the
// delivery's share for scripts) mostly waited on what the script did
// not cause (a slow disk or NFS, a loaded machine), so its wall time is
// charged only when its work was high too (past highUsage), the time
// limit then being the backstop for work priced too low. And a run is
// charged at most the limit, so that a single run never disables the
// script (the sum must pass it): only long runs that keep coming do.
// Pigeonhole records the user's script only, not the administrator's
// before and after scripts; so does this.
//
// The records live in the home, in UsageFileName, owned by the user and
// replaced atomically (Pigeonhole keeps them in the script's .svbin
// beside it): they survive restarts, as Pigeonhole's do. One line per
// script: its name, the identity of its file (inode, size, mtime), the
// sum in milliseconds, the time of the last record, whether disabled.

// UsageFileName is the file in the home holding the scripts' records.
const UsageFileName = ".courriel.sieve-usage"

// DefaultResourceUsageTimeout is Options.ResourceUsageTimeout's default,
// Pigeonhole's sieve_resource_usage_timeout.
const DefaultResourceUsageTimeout = time.Hour

// defaultHighUsage is a run's usage worth recording (Pigeonhole's
// SIEVE_HIGH_CPU_TIME_MSECS).
const defaultHighUsage = 1500 * time.Millisecond

// errDisabled is why a disabled script is not run: Pigeonhole's words.
var errDisabled = errors.New("cumulative resource usage limit exceeded")

const (
	usageFileHeader = "courriel-sieve-usage 1"
	maxUsageEntries = 64
	maxUsageFile    = 64 << 10
)

// usageEntry is one script's record.
type usageEntry struct {
	name     string // the script as the logs name it: "~/sieve/x.sieve"
	ino      uint64
	size     int64
	mtime    int64         // ns
	usage    time.Duration // the sum, to the millisecond
	updated  int64         // unix seconds of the last record
	disabled bool
}

func (e usageEntry) sameFile(id fileID) bool {
	return e.ino == id.ino && e.size == id.size && e.mtime == id.mtime
}

// usagePolicy is the cumulative limit's settings; off when timeout < 0.
type usagePolicy struct {
	timeout time.Duration // a sum whose last record is older starts again
	high    time.Duration // a run's usage worth recording
	max     time.Duration // past this sum the script is disabled
}

// usageLock is the home's lock for its usage file (shared with the
// vacation memory's).
func (f *Filter) usageLock(home string) func() {
	mu := &f.homes[int(sha256.Sum256([]byte(home))[0])%len(f.homes)]
	mu.Lock()
	return mu.Unlock
}

// scriptDisabled says whether the user's script s may not run now. A
// disabled script found in a new version once the timeout has passed is
// run again: its record is dropped. Errors reading the records (a hostile
// or broken file) let the script run.
func (f *Filter) scriptDisabled(home string, s *compiled, uid, gid int) (bool, error) {
	if f.usage.timeout < 0 || !s.hasID {
		return false, nil
	}
	defer f.usageLock(home)()
	root, err := os.OpenRoot(home)
	if err != nil {
		return false, err
	}
	defer root.Close()
	entries, err := readUsage(root)
	if err != nil || len(entries) == 0 {
		return false, err
	}
	i := slices.IndexFunc(entries, func(e usageEntry) bool { return e.name == s.name })
	if i < 0 || !entries[i].disabled {
		return false, nil
	}
	e := entries[i]
	if time.Duration(f.o.Now().Unix()-e.updated)*time.Second <= f.usage.timeout || e.sameFile(s.id) {
		return true, nil
	}
	// a new version after the timeout: Pigeonhole compiles it afresh,
	// its binary without the flag
	return false, f.writeUsage(root, slices.Delete(entries, i, i+1), uid, gid)
}

// recordUsage adds a run's usage to the script's record when it is high,
// and says whether the script is disabled by it.
func (f *Filter) recordUsage(home string, s *compiled, used time.Duration, uid, gid int) (bool, time.Duration, error) {
	if f.usage.timeout < 0 || !s.hasID || used <= f.usage.high {
		return false, 0, nil
	}
	defer f.usageLock(home)()
	root, err := os.OpenRoot(home)
	if err != nil {
		return false, 0, err
	}
	defer root.Close()
	entries, err := readUsage(root)
	if err != nil {
		entries = nil // a broken file is replaced
	}
	now := f.o.Now().Unix()
	i := slices.IndexFunc(entries, func(e usageEntry) bool { return e.name == s.name })
	if i < 0 {
		entries = append(entries, usageEntry{name: s.name})
		i = len(entries) - 1
	}
	e := &entries[i]
	if e.updated != 0 && time.Duration(now-e.updated)*time.Second > f.usage.timeout {
		e.usage, e.disabled = 0, false
	}
	e.ino, e.size, e.mtime = s.id.ino, s.id.size, s.id.mtime
	e.usage = (e.usage + used).Truncate(time.Millisecond)
	e.updated = now
	newly := false
	if e.usage > f.usage.max && !e.disabled {
		e.disabled, newly = true, true
	}
	sum := e.usage
	// the latest records first: past the bound, the oldest are forgotten
	slices.SortStableFunc(entries, func(a, b usageEntry) int { return int(b.updated - a.updated) })
	if len(entries) > maxUsageEntries {
		entries = entries[:maxUsageEntries]
	}
	return newly, sum, f.writeUsage(root, entries, uid, gid)
}

// readUsage reads the records: a regular file, never through a symlink,
// bounded; lines that do not parse are skipped.
func readUsage(root *os.Root) ([]usageEntry, error) {
	f, err := openHomeFile(root, UsageFileName)
	if f == nil || err != nil {
		return nil, err
	}
	defer f.Close()
	sc := bufio.NewScanner(io.LimitReader(f, maxUsageFile))
	if !sc.Scan() || sc.Text() != usageFileHeader {
		return nil, sc.Err()
	}
	var out []usageEntry
	for sc.Scan() && len(out) < maxUsageEntries {
		if e, ok := parseUsageLine(sc.Text()); ok {
			out = append(out, e)
		}
	}
	return out, sc.Err()
}

// parseUsageLine reads `"name" ino size mtime usage-ms updated disabled`.
func parseUsageLine(line string) (usageEntry, bool) {
	q, err := strconv.QuotedPrefix(line)
	if err != nil {
		return usageEntry{}, false
	}
	name, _ := strconv.Unquote(q)
	f := strings.Fields(line[len(q):])
	if len(f) != 6 {
		return usageEntry{}, false
	}
	var n [5]int64
	for i := range n {
		if n[i], err = strconv.ParseInt(f[i], 10, 64); err != nil || n[i] < 0 {
			return usageEntry{}, false
		}
	}
	if f[5] != "0" && f[5] != "1" {
		return usageEntry{}, false
	}
	return usageEntry{name: name, ino: uint64(n[0]), size: n[1], mtime: n[2],
		usage: time.Duration(n[3]) * time.Millisecond, updated: n[4], disabled: f[5] == "1"}, true
}

// writeUsage replaces the records (write, fsync, rename), the file the
// user's; none left removes it.
func (f *Filter) writeUsage(root *os.Root, entries []usageEntry, uid, gid int) error {
	if len(entries) == 0 {
		if err := root.Remove(UsageFileName); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		return nil
	}
	var b bytes.Buffer
	b.WriteString(usageFileHeader + "\n")
	for _, e := range entries {
		d := 0
		if e.disabled {
			d = 1
		}
		fmt.Fprintf(&b, "%s %d %d %d %d %d %d\n", strconv.Quote(e.name), e.ino, e.size, e.mtime, e.usage.Milliseconds(), e.updated, d)
	}
	return f.writeHomeFile(root, UsageFileName, b.Bytes(), uid, gid)
}

// owner is who files written in r's home belong to: the user's uid and
// gid with Options.Chown, else -1 (unchanged).
func (f *Filter) owner(r *delivery.Recipient) (int, int) {
	if f.o.Chown {
		return r.UID, r.GID
	}
	return -1, -1
}

// runUsage is what a run of the user's script (took: its wall time) is
// charged: its work; its wall time when it was stopped by time and its
// work was high too; never more than the limit.
func (p usagePolicy) runUsage(res sieve.Result, took time.Duration) time.Duration {
	used := time.Duration(res.Work) // a unit is about a nanosecond
	if used > p.high && (errors.Is(res.Err, sieve.ErrTimeLimit) || errors.Is(res.Err, errScriptsTime)) {
		used = max(used, took)
	}
	return min(used, p.max)
}

// noteUsage records the run of the user's script (took: its wall time)
// and tells the user when it disables the script.
func (f *Filter) noteUsage(m *delivery.Message, r *delivery.Recipient, mb *directory.Mailbox, s *compiled, res sieve.Result, took time.Duration) {
	used := f.usage.runUsage(res, took)
	uid, gid := f.owner(r)
	newly, sum, err := f.recordUsage(mb.Home, s, used, uid, gid)
	if err != nil {
		f.log.Warn("sieve: cannot record the script's resource usage", "msg_id", m.ID, "to", r.Address, "err", err)
		return
	}
	if newly {
		f.log.Warn("sieve: script disabled: cumulative resource usage limit exceeded", "msg_id", m.ID, "to", r.Address,
			"script", s.name, "usage", sum, "limit", f.usage.max, "within", f.usage.timeout)
		f.userNotice(m, r, mb, fmt.Sprintf("%s: disabled: its runs used %v, more than %v within %v (cumulative resource usage limit exceeded): "+
			"it runs again once a new version is stored %v after this", s.name, sum, f.usage.max, f.usage.timeout, f.usage.timeout))
	}
}
