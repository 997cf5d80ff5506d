package managesieve

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"syscall"
	"time"

	"courriel/cluster"
	"courriel/directory"
	"courriel/internal/connset"
	"courriel/sieve"
	"courriel/sieve/scripts"
)

type command struct {
	auth bool // after login only; false: before login only (unless any)
	any  bool // in both states
	run  func(se *session, args []token) error
}

// lookupCommand finds a command by its upper-case name: the table is
// code, a switch, with no package-level state.
func lookupCommand(name string) (command, bool) {
	switch name {
	case "CAPABILITY":
		return command{any: true, run: cmdCapability}, true
	case "LOGOUT":
		return command{any: true, run: cmdLogout}, true
	case "NOOP":
		return command{any: true, run: cmdNoop}, true
	case "STARTTLS":
		return command{run: cmdStartTLS}, true
	case "AUTHENTICATE":
		return command{run: cmdAuthenticate}, true
	case "UNAUTHENTICATE":
		return command{auth: true, run: cmdUnauthenticate}, true
	case "HAVESPACE":
		return command{auth: true, run: cmdHaveSpace}, true
	case "PUTSCRIPT":
		return command{auth: true, run: cmdPutScript}, true
	case "CHECKSCRIPT":
		return command{auth: true, run: cmdCheckScript}, true
	case "LISTSCRIPTS":
		return command{auth: true, run: cmdListScripts}, true
	case "SETACTIVE":
		return command{auth: true, run: cmdSetActive}, true
	case "GETSCRIPT":
		return command{auth: true, run: cmdGetScript}, true
	case "DELETESCRIPT":
		return command{auth: true, run: cmdDeleteScript}, true
	case "RENAMESCRIPT":
		return command{auth: true, run: cmdRenameScript}, true
	case "XCLIENT":
		return command{run: cmdXClient}, true
	}
	return command{}, false
}

func (se *session) dispatch(name string, args []token) error {
	c, ok := lookupCommand(name)
	if !ok || !c.any && c.auth != (se.state == stateAuth) {
		// Pigeonhole answers a command of the other state as unknown.
		if se.errors++; se.errors >= maxErrors {
			return &reply{msg: "Too many invalid commands.", bye: true}
		}
		return no("", "Error in MANAGESIEVE command "+name+": Unknown command.")
	}
	return c.run(se, args)
}

// want checks that the arguments are of kinds, all of them required.
func want(name string, args []token, kinds ...tokKind) error {
	return wantOpt(name, args, len(kinds), kinds...)
}

// wantOpt checks that the arguments are of kinds, the first required of
// them present.
func wantOpt(name string, args []token, required int, kinds ...tokKind) error {
	if len(args) < required {
		return no("", "Error in MANAGESIEVE command "+name+": Missing arguments.")
	}
	if len(args) > len(kinds) {
		return no("", "Error in MANAGESIEVE command "+name+": Too many arguments.")
	}
	for i, a := range args {
		if a.kind != kinds[i] {
			return no("", "Error in MANAGESIEVE command "+name+": Invalid arguments.")
		}
	}
	return nil
}

func cmdCapability(se *session, args []token) error {
	if err := want("CAPABILITY", args); err != nil {
		return err
	}
	se.writeCapabilities()
	se.writeResp("OK", "", "Capability completed.")
	return nil
}

func cmdLogout(se *session, args []token) error {
	if err := want("LOGOUT", args); err != nil {
		return err
	}
	se.writeResp("OK", "", "Logout completed.")
	return errClose
}

// NOOP with a string echoes it in a TAG response code (RFC 5804 §2.11).
func cmdNoop(se *session, args []token) error {
	if err := wantOpt("NOOP", args, 0, tokString); err != nil {
		return err
	}
	if len(args) == 1 {
		se.bw.WriteString("OK (TAG ")
		se.writeString(args[0].s)
		se.bw.WriteString(") \"Done\"\r\n")
		return nil
	}
	se.writeResp("OK", "", "NOOP Completed")
	return nil
}

func cmdStartTLS(se *session, args []token) error {
	if err := want("STARTTLS", args); err != nil {
		return err
	}
	if se.tls || se.srv.opts.TLSConfig == nil {
		return no("", "TLS is already active or not available here.")
	}
	return se.startTLS()
}

// AUTHENTICATE "PLAIN" [initial-response] (RFC 5804 §2.1, RFC 4616).
func cmdAuthenticate(se *session, args []token) error {
	if err := wantOpt("AUTHENTICATE", args, 1, tokString, tokString); err != nil {
		return err
	}
	if !strings.EqualFold(args[0].s, "PLAIN") {
		return no("", "Unsupported authentication mechanism.")
	}
	// A front node's login may come in plain text when the cluster's
	// hops are configured without TLS (a private network); it always
	// sends its response at once.
	if !se.tls && !(len(args) == 2 && se.srv.plainHops()) {
		return no("ENCRYPT-NEEDED", "Plaintext authentication disallowed on non-secure (SSL/TLS) connections.")
	}
	resp := ""
	if len(args) == 2 {
		resp = args[1].s
	} else {
		// An empty challenge; the answer is one string on a line.
		se.bw.WriteString("\"\"\r\n")
		if err := se.flush(); err != nil {
			return err
		}
		se.lineLen = 0
		a, err := se.readArgs("AUTHENTICATE")
		if err != nil {
			return err
		}
		if len(a) != 1 || a[0].kind != tokString {
			return no("", "Invalid authentication response.")
		}
		resp = a[0].s
	}
	if resp == "*" {
		return no("", "Authentication aborted by client.")
	}
	raw, err := base64.StdEncoding.DecodeString(resp)
	if err != nil {
		return se.loginFailed("", "invalid base64")
	}
	authz, user, pass, err := cluster.ParsePlain(raw)
	if err != nil {
		return se.loginFailed("", "malformed PLAIN response")
	}
	if user == cluster.ClusterLogin && se.srv.hops != nil {
		return se.hopLoginAs(authz, pass)
	}
	if !se.tls {
		return no("ENCRYPT-NEEDED", "Plaintext authentication disallowed on non-secure (SSL/TLS) connections.")
	}
	// No proxy authorization: the identity to act as is the one logging
	// in (an empty authzid says the same).
	if authz != "" && authz != user {
		return se.loginFailed(user, "authorization identity differs")
	}
	return se.login(user, pass)
}

func (se *session) loginFailed(login, reason string) error {
	d := se.srv.guard.Failed(login, connset.ParseIP(se.ip))
	se.fails++
	se.log.Info("managesieve: login failed", "ip", se.ip, "login", sanitize(login), "reason", reason, "delay", d)
	if m := se.srv.opts.Metrics; m != nil {
		m.AuthFailure(metricsListener)
	}
	if d > 0 {
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-se.srv.conns.Done():
		}
		t.Stop()
	}
	if se.fails >= maxFailedLogins {
		return &reply{msg: "Too many failed logins.", bye: true}
	}
	return no("", "Authentication failed.")
}

var errTryLater = no("TRYLATER", "Authentication temporarily unavailable, try again later.")

func (se *session) login(username, password string) error {
	if username == "" || password == "" || len(username) > 256 || len(password) > 1024 ||
		strings.ContainsRune(username, 0) || strings.ContainsRune(password, 0) {
		return se.loginFailed(username, "malformed credentials")
	}
	if err := se.throttled(); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), se.srv.opts.AuthTimeout)
	defer cancel()
	u, err := se.srv.opts.Auth.Authenticate(ctx, username, password)
	switch {
	case err == nil:
	case errors.Is(err, directory.ErrInvalidCredentials), errors.Is(err, directory.ErrNotFound):
		return se.loginFailed(username, "invalid credentials")
	default:
		se.log.Warn("managesieve: directory unavailable during login", "err", err)
		return errTryLater
	}
	se.srv.guard.Succeeded(username, connset.ParseIP(se.ip))
	return se.enter(u)
}

// throttled refuses a login from a network that guessed too often.
func (se *session) throttled() error {
	if !se.srv.guard.Blocked(connset.ParseIP(se.ip)) {
		return nil
	}
	se.fails++
	se.log.Warn("managesieve: login refused: address throttled", "ip", se.ip)
	if se.fails >= maxFailedLogins {
		return &reply{code: "TRYLATER", msg: "Too many failed logins from your address.", bye: true}
	}
	return no("TRYLATER", "Too many failed logins from your address, try again later.")
}

// enter logs in u, whose identity is established: at home here it opens
// the scripts; homed on another node the session is passed through to
// that node (proxy.go), and nothing is opened or created here.
func (se *session) enter(u directory.User) error {
	if err, done := se.enterHome(u); done {
		return err
	}
	st, err := scripts.Open(u.Home, scripts.Options{
		Owner:  scripts.Owner{UID: u.UID, GID: u.GID, Chown: se.srv.opts.Chown},
		Limits: se.srv.opts.Limits, Base: se.srv.opts.AllowedBase, CreateHome: true,
	})
	if err != nil {
		se.log.Error("managesieve: refusing the home from the directory", "login", u.Login, "home", u.Home, "err", err)
		return errTryLater
	}
	if !se.srv.loggedIn(se, u.Login) {
		st.Close()
		se.log.Warn("managesieve: too many connections for user and address", "login", u.Login, "ip", se.ip)
		return no("TRYLATER", "Too many connections for this user from your address.")
	}
	se.user, se.store, se.state = u, st, stateAuth
	se.log = se.log.With("user", u.Login)
	se.log.Info("managesieve: login", "ip", se.ip)
	se.writeResp("OK", "", "Logged in.")
	return nil
}

// UNAUTHENTICATE (RFC 5804 §2.14.1) returns to the state after STARTTLS.
func cmdUnauthenticate(se *session, args []token) error {
	if err := want("UNAUTHENTICATE", args); err != nil {
		return err
	}
	se.store.Close()
	se.store, se.user, se.state = nil, directory.User{}, stateNotAuth
	se.srv.loggedOut(se)
	se.writeResp("OK", "", "Unauthenticate completed.")
	return nil
}

// invalidName is Pigeonhole's reply to a name it cannot store; a
// hostile name is shown as printable text only.
func invalidName(what, name string) error {
	return no("", "Invalid "+what+" name "+quoteName(sanitize(name))+".")
}

// storeError maps a storage error to a reply; one unknown is the
// server's trouble, logged, and the client may retry.
func (se *session) storeError(op, name string, err error) error {
	var qe *scripts.QuotaError
	switch {
	case errors.As(err, &qe):
		return quotaReply(qe)
	case errors.Is(err, scripts.ErrInvalidName):
		return no("", "Invalid script name.")
	case errors.Is(err, scripts.ErrNotFound):
		return no("NONEXISTENT", "Sieve script "+quoteName(name)+" not found")
	case errors.Is(err, scripts.ErrExists):
		return no("ALREADYEXISTS", "A sieve script with that name already exists.")
	case errors.Is(err, scripts.ErrActive):
		return no("ACTIVE", "Cannot delete the active Sieve script.")
	case errors.Is(err, scripts.ErrTooBig):
		return no("QUOTA/MAXSIZE", fmt.Sprintf("Script is too large (max %d bytes).", se.srv.opts.Limits.MaxScriptSize))
	case errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EDQUOT):
		// No room to write the script: QUOTA (RFC 5804 §1.3), not
		// TRYLATER, which a client retries at once. Pigeonhole's words:
		// "disk quota" for EDQUOT as 0.5 has it, "disk space" for
		// ENOSPC as earlier versions had it for both (0.5 answers
		// ENOSPC with an internal error).
		se.log.Warn("managesieve: disk full", "op", op, "script", sanitize(name), "err", err)
		if errors.Is(err, syscall.EDQUOT) {
			return no("QUOTA", "Not enough disk quota")
		}
		return no("QUOTA", "Not enough disk space")
	}
	se.log.Error("managesieve: "+op+" failed", "script", sanitize(name), "err", err)
	return no("TRYLATER", "Internal error, try again later.")
}

func cmdHaveSpace(se *session, args []token) error {
	if err := want("HAVESPACE", args, tokString, tokNumber); err != nil {
		return err
	}
	if scripts.ValidName(args[0].s) != nil {
		return no("", "Invalid script name.")
	}
	if args[1].n == 0 {
		return no("", "Cannot upload empty script.") // as Pigeonhole, though PUTSCRIPT takes one
	}
	size := int64(min(args[1].n, 1<<62))
	if err := se.store.HaveSpace(args[0].s, size); err != nil {
		return se.storeError("havespace", args[0].s, err)
	}
	se.writeResp("OK", "", "Putscript would succeed.")
	return nil
}

// maxCompileErrors is Pigeonhole's managesieve_max_compile_errors: the
// errors a refused script's NO reply lists at most.
const maxCompileErrors = 5

// checkScript compiles src as Pigeonhole's ManageSieve does, uploaded
// (PUTSCRIPT, CHECKSCRIPT: a missing included script is a warning) or not
// (SETACTIVE). It returns the warnings, one per line, each prefixed by
// prefix in the main script and by the name of an included one, and "" if
// there are none; a script refused is a NO reply with its warnings and
// errors (up to maxCompileErrors of them) in the order found, and
// Pigeonhole's last line.
func (se *session) checkScript(prefix string, src []byte, uploaded bool) (string, error) {
	lim := sieve.Limits{MaxScriptSize: int(se.srv.opts.Limits.MaxScriptSize)}
	var b strings.Builder
	warn := func(w sieve.Warning) {
		p := prefix
		if w.Script != "" {
			p = w.Script + ": "
		}
		fmt.Fprintf(&b, "%sline %d: warning: %s.\r\n", oneLine(p), w.Line, strings.TrimRight(oneLine(w.Reason), "."))
	}
	reported := 0
	errs := func(e *sieve.Error) {
		reported++
		fmt.Fprintf(&b, "%sline %d: error: %s.\r\n", prefix, e.Line, strings.TrimRight(oneLine(e.Reason), "."))
	}
	_, err := sieve.CompileWith(src, sieve.CompileOptions{Limits: lim, Extensions: se.srv.opts.Extensions, GlobalExtensions: se.srv.opts.GlobalExtensions, Include: includeLoader{se}, Uploaded: uploaded,
		Warn: warn, Errors: errs, MaxErrors: maxCompileErrors})
	if err == nil {
		return b.String(), nil
	}
	// Which step refused it, for Pigeonhole's last line: parsing it
	// again costs only the scripts in error.
	failed := "validation failed"
	if _, perr := sieve.Parse(src, lim); perr != nil {
		failed = "parse failed"
	}
	var serr *sieve.Error
	switch {
	case reported > 0:
	case errors.As(err, &serr):
		errs(serr)
	default:
		reported++
		fmt.Fprintf(&b, "%serror: %s.\r\n", prefix, strings.TrimRight(oneLine(err.Error()), "."))
	}
	// The last line is an error too: past the bound, Pigeonhole's
	// handler drops it with the others.
	if reported < maxCompileErrors {
		fmt.Fprintf(&b, "%serror: %s.\r\n", prefix, failed)
	}
	return "", no("", b.String())
}

// okChecked answers a script compiled: OK (WARNINGS) with the warnings,
// as Pigeonhole, or a plain OK with msg.
func (se *session) okChecked(warnings, msg string) {
	if warnings != "" {
		se.writeResp("OK", "WARNINGS", warnings)
		return
	}
	se.writeResp("OK", "", msg)
}

// oneLine keeps a compiler message (which may quote the script) on one
// printable line.
func oneLine(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
}

func cmdPutScript(se *session, args []token) error {
	if err := want("PUTSCRIPT", args, tokString, tokString); err != nil {
		return err
	}
	name, src := args[0].s, []byte(args[1].s)
	if scripts.ValidName(name) != nil {
		// Pigeonhole shows the name; a hostile one only as printable text.
		return invalidName("Sieve script", name)
	}
	if err := se.store.HaveSpace(name, int64(len(src))); err != nil {
		return se.storeError("putscript", name, err)
	}
	warnings, err := se.checkScript(name+": ", src, true)
	if err != nil {
		return err
	}
	start := time.Now()
	if err := se.store.Put(name, src); err != nil {
		return se.storeError("putscript", name, err)
	}
	se.log.Info("managesieve: script stored", "script", name, "size", len(src), "took", time.Since(start))
	se.okChecked(warnings, "PUTSCRIPT completed.")
	return nil
}

func cmdCheckScript(se *session, args []token) error {
	if err := want("CHECKSCRIPT", args, tokString); err != nil {
		return err
	}
	if int64(len(args[0].s)) > se.srv.opts.Limits.MaxScriptSize {
		return quotaReply(&scripts.QuotaError{Kind: scripts.QuotaMaxSize, Limit: se.srv.opts.Limits.MaxScriptSize})
	}
	warnings, err := se.checkScript("", []byte(args[0].s), true)
	if err != nil {
		return err
	}
	se.okChecked(warnings, "Script checked successfully.")
	return nil
}

func cmdListScripts(se *session, args []token) error {
	if err := want("LISTSCRIPTS", args); err != nil {
		return err
	}
	list, err := se.store.List()
	if err != nil {
		return se.storeError("listscripts", "", err)
	}
	for _, s := range list {
		se.writeString(s.Name)
		if s.Active {
			se.bw.WriteString(" ACTIVE")
		}
		se.bw.WriteString("\r\n")
	}
	se.writeResp("OK", "", "Listscripts completed.")
	return nil
}

// SETACTIVE compiles the script first, as Pigeonhole does: a broken
// script, or one whose included scripts are missing, is not made the one
// delivery runs.
func cmdSetActive(se *session, args []token) error {
	if err := want("SETACTIVE", args, tokString); err != nil {
		return err
	}
	name := args[0].s
	active, err := se.store.Active()
	if err != nil {
		return se.storeError("setactive", name, err)
	}
	if name == "" {
		if err := se.store.SetActive(""); err != nil {
			return se.storeError("setactive", name, err)
		}
		if active == "" {
			se.writeResp("OK", "", "No scripts currently active.")
			return nil
		}
		se.log.Info("managesieve: scripts deactivated")
		se.writeResp("OK", "", "Active script is now deactivated.")
		return nil
	}
	if scripts.ValidName(name) != nil {
		return invalidName("script", name)
	}
	src, err := se.store.Get(name)
	if err != nil {
		return se.storeError("setactive", name, err)
	}
	if name == active {
		// Pigeonhole compiles a script only as it is first activated.
		se.writeResp("OK", "", "Script is already active.")
		return nil
	}
	// Not uploaded: an included script must now exist.
	warnings, err := se.checkScript(name+": ", src, false)
	if err != nil {
		return err
	}
	if err := se.store.SetActive(name); err != nil {
		return se.storeError("setactive", name, err)
	}
	se.log.Info("managesieve: script activated", "script", name)
	se.okChecked(warnings, "Setactive completed.")
	return nil
}

func cmdGetScript(se *session, args []token) error {
	if err := want("GETSCRIPT", args, tokString); err != nil {
		return err
	}
	if scripts.ValidName(args[0].s) != nil {
		return invalidName("script", args[0].s)
	}
	src, err := se.store.Get(args[0].s)
	if err != nil {
		return se.storeError("getscript", args[0].s, err)
	}
	// Always a literal, as Pigeonhole sends it.
	se.bw.WriteString("{" + strconv.Itoa(len(src)) + "}\r\n")
	se.bw.Write(src)
	se.bw.WriteString("\r\n")
	se.writeResp("OK", "", "Getscript completed.")
	return nil
}

func cmdDeleteScript(se *session, args []token) error {
	if err := want("DELETESCRIPT", args, tokString); err != nil {
		return err
	}
	if scripts.ValidName(args[0].s) != nil {
		return invalidName("script", args[0].s)
	}
	if err := se.store.Delete(args[0].s); err != nil {
		return se.storeError("deletescript", args[0].s, err)
	}
	se.log.Info("managesieve: script deleted", "script", args[0].s)
	se.writeResp("OK", "", "Deletescript completed.")
	return nil
}

func cmdRenameScript(se *session, args []token) error {
	if err := want("RENAMESCRIPT", args, tokString, tokString); err != nil {
		return err
	}
	if scripts.ValidName(args[0].s) != nil {
		return invalidName("script", args[0].s)
	}
	if scripts.ValidName(args[1].s) != nil {
		return invalidName("new Sieve script", args[1].s)
	}
	if args[0].s == args[1].s {
		// Pigeonhole: the new name is taken, by the script itself.
		if _, err := se.store.Get(args[0].s); err != nil {
			return se.storeError("renamescript", args[0].s, err)
		}
		return no("ALREADYEXISTS", "A sieve script with that name already exists.")
	}
	if err := se.store.Rename(args[0].s, args[1].s); err != nil {
		return se.storeError("renamescript", args[0].s, err)
	}
	se.log.Info("managesieve: script renamed", "script", args[0].s, "to", args[1].s)
	se.writeResp("OK", "", "Renamescript completed.")
	return nil
}

// includeLoader gives the checker the scripts `include` names, as delivery
// will read them: :personal from the user's own scripts, :global from the
// configured directory.
type includeLoader struct{ se *session }

func (l includeLoader) Load(global bool, name string) ([]byte, error) {
	if global {
		if l.se.srv.opts.GlobalScripts == "" {
			return nil, sieve.ErrNoScript
		}
		return sieve.DirLoader{Global: l.se.srv.opts.GlobalScripts, MaxSize: l.se.srv.opts.Limits.MaxScriptSize}.Load(true, name)
	}
	src, err := l.se.store.Get(name)
	if errors.Is(err, scripts.ErrNotFound) {
		return nil, fmt.Errorf("%w: %s", sieve.ErrNoScript, name)
	}
	return src, err
}
