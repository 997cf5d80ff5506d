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

// commands is filled in init to break the initialisation cycle through
// the command functions.
var commands map[string]command

func init() {
	commands = map[string]command{
		"CAPABILITY":   {anyState, false, cmdCapability},
		"NOOP":         {anyState, false, cmdNoop},
		"LOGOUT":       {anyState, false, cmdLogout},
		"ID":           {anyState, false, cmdID},
		"STARTTLS":     {notAuth, false, cmdStartTLS},
		"LOGIN":        {notAuth, false, cmdLogin},
		"AUTHENTICATE": {notAuth, false, cmdAuthenticate},
		"ENABLE":       {authed, false, cmdEnable},
		"NAMESPACE":    {authed, false, cmdNamespace},
		"GETQUOTAROOT": {authed, false, cmdGetQuotaRoot},
		"GETQUOTA":     {authed, false, cmdGetQuota},
		"SETQUOTA":     {authed, false, cmdSetQuota},
		"SELECT":       {authed, false, cmdSelect},
		"EXAMINE":      {authed, false, cmdSelect},
		"CREATE":       {authed, false, cmdCreate},
		"DELETE":       {authed, false, cmdDelete},
		"RENAME":       {authed, false, cmdRename},
		"SUBSCRIBE":    {authed, false, cmdSubscribe},
		"UNSUBSCRIBE":  {authed, false, cmdSubscribe},
		"LIST":         {authed, false, cmdList},
		"LSUB":         {authed, false, cmdList},
		"STATUS":       {authed, false, cmdStatus},
		"APPEND":       {authed, false, cmdAppend},
		"IDLE":         {authed, false, cmdIdle},
		"NOTIFY":       {authed, false, cmdNotify},
		"CHECK":        {selState, false, cmdNoop},
		"CLOSE":        {selState, false, cmdClose},
		"UNSELECT":     {selState, false, cmdClose},
		"EXPUNGE":      {selState, true, cmdExpunge},
		"SEARCH":       {selState, true, cmdSearch},
		"SORT":         {selState, true, cmdSort},
		"THREAD":       {selState, true, cmdThread},
		"FETCH":        {selState, true, cmdFetch},
		"STORE":        {selState, true, cmdStore},
		"COPY":         {selState, true, cmdCopy},
		"MOVE":         {selState, true, cmdCopy},
		"CANCELUPDATE": {selState, false, cmdCancelUpdate},
	}
}
