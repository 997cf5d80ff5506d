package managesieve

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"courriel/internal/testenv"
	"courriel/sieve/scripts"
)

// What a client reads back for each storage error: Pigeonhole's code and
// words, never the error's own text.
func TestStoreErrorReplies(t *testing.T) {
	t.Parallel()
	se := &session{srv: &Server{opts: Options{Limits: scripts.Limits{MaxScriptSize: 1000}}}, log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	write := func(errno syscall.Errno) error {
		return fmt.Errorf("scripts: write sieve/tmp/x: %w", &os.PathError{Op: "write", Path: "/home/u/sieve/tmp/x", Err: errno})
	}
	tests := []struct {
		name      string
		err       error
		code, msg string
	}{
		{"count quota", &scripts.QuotaError{Kind: scripts.QuotaMaxScripts, Limit: 5}, "QUOTA/MAXSCRIPTS", "Script count quota exceeded (max 5 scripts)."},
		{"not found", scripts.ErrNotFound, "NONEXISTENT", "Sieve script `a' not found"},
		{"exists", scripts.ErrExists, "ALREADYEXISTS", "A sieve script with that name already exists."},
		{"active", scripts.ErrActive, "ACTIVE", "Cannot delete the active Sieve script."},
		{"too big", scripts.ErrTooBig, "QUOTA/MAXSIZE", "Script is too large (max 1000 bytes)."},
		{"disk full", write(syscall.ENOSPC), "QUOTA", "Not enough disk space"},
		{"over the file system quota", write(syscall.EDQUOT), "QUOTA", "Not enough disk quota"},
		{"I/O error", write(syscall.EIO), "TRYLATER", "Internal error, try again later."},
	}
	for _, tc := range tests {
		r, ok := se.storeError("putscript", "a", tc.err).(*reply)
		if !ok || r.code != tc.code || r.msg != tc.msg || r.bye {
			t.Errorf("%s: %+v, want NO (%s) %q", tc.name, r, tc.code, tc.msg)
		}
	}
}

// PUTSCRIPT on a full disk answers NO (QUOTA) as Pigeonhole does, not
// TRYLATER, which a client retries at once; the script stored before
// stays as it was, and the session goes on.
func TestPutScriptDiskFull(t *testing.T) {
	t.Parallel()
	parent := t.TempDir()
	testenv.MountTmpfs(t, parent, "size=512k,mode=0755")
	e := newEnvIn(t, parent, nil)
	c := e.login(t, "alice")
	c.run([]step{{`PUTSCRIPT "a" ` + lit("keep;\r\n"), []string{`OK "PUTSCRIPT completed."`}}})
	testenv.FillSpace(t, filepath.Join(parent, "fill"))
	c.run([]step{
		{`PUTSCRIPT "a" ` + lit("discard;\r\n"), []string{`NO (QUOTA) "Not enough disk space"`}},
		{`PUTSCRIPT "b" ` + lit("keep;\r\n"), []string{`NO (QUOTA) "Not enough disk space"`}},
		{`GETSCRIPT "a"`, []string{"keep;", `OK "Getscript completed."`}},
		{`NOOP`, []string{`OK`}},
	})
}
