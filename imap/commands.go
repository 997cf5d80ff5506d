package imap

// command is one entry of the dispatch table: the states it is allowed in,
// whether a UID form exists, and the function that parses its arguments
// into typed values, then acts and writes its responses.
type command struct {
	states uint8
	uid    bool
	run    func(s *session, tag string, uid bool) error
}

const (
	anyState = 1<<stateNotAuth | 1<<stateAuth | 1<<stateSelected
	notAuth  = 1 << stateNotAuth
	authed   = 1<<stateAuth | 1<<stateSelected
	selState = 1 << stateSelected
)

// lookupCommand finds a command by its upper-case name. A switch and not
// a package-level map: the table is code, with no state to share or
// initialise (a map would need init to break the cycle through the
// command functions).
func lookupCommand(name string) (command, bool) {
	switch name {
	case "CAPABILITY":
		return command{anyState, false, cmdCapability}, true
	case "NOOP":
		return command{anyState, false, cmdNoop}, true
	case "LOGOUT":
		return command{anyState, false, cmdLogout}, true
	case "ID":
		return command{anyState, false, cmdID}, true
	case "STARTTLS":
		return command{notAuth, false, cmdStartTLS}, true
	case "LOGIN":
		return command{notAuth, false, cmdLogin}, true
	case "AUTHENTICATE":
		return command{notAuth, false, cmdAuthenticate}, true
	case "ENABLE":
		return command{authed, false, cmdEnable}, true
	case "COMPRESS":
		return command{authed, false, cmdCompress}, true
	case "NAMESPACE":
		return command{authed, false, cmdNamespace}, true
	case "GETQUOTAROOT":
		return command{authed, false, cmdGetQuotaRoot}, true
	case "GETQUOTA":
		return command{authed, false, cmdGetQuota}, true
	case "SETQUOTA":
		return command{authed, false, cmdSetQuota}, true
	case "SELECT":
		return command{authed, false, cmdSelect}, true
	case "EXAMINE":
		return command{authed, false, cmdSelect}, true
	case "CREATE":
		return command{authed, false, cmdCreate}, true
	case "DELETE":
		return command{authed, false, cmdDelete}, true
	case "RENAME":
		return command{authed, false, cmdRename}, true
	case "SUBSCRIBE":
		return command{authed, false, cmdSubscribe}, true
	case "UNSUBSCRIBE":
		return command{authed, false, cmdSubscribe}, true
	case "LIST":
		return command{authed, false, cmdList}, true
	case "LSUB":
		return command{authed, false, cmdList}, true
	case "STATUS":
		return command{authed, false, cmdStatus}, true
	case "APPEND":
		return command{authed, false, cmdAppend}, true
	case "NOTIFY":
		return command{authed, false, cmdNotify}, true
	case "IDLE":
		return command{authed, false, cmdIdle}, true
	case "CHECK":
		return command{selState, false, cmdNoop}, true
	case "CLOSE":
		return command{selState, false, cmdClose}, true
	case "UNSELECT":
		return command{selState, false, cmdClose}, true
	case "EXPUNGE":
		return command{selState, true, cmdExpunge}, true
	case "SEARCH":
		return command{selState, true, cmdSearch}, true
	case "CANCELUPDATE":
		return command{selState, false, cmdCancelUpdate}, true
	case "SORT":
		return command{selState, true, cmdSort}, true
	case "THREAD":
		return command{selState, true, cmdThread}, true
	case "FETCH":
		return command{selState, true, cmdFetch}, true
	case "STORE":
		return command{selState, true, cmdStore}, true
	case "COPY":
		return command{selState, true, cmdCopy}, true
	case "MOVE":
		return command{selState, true, cmdCopy}, true
	}
	return command{}, false
}
