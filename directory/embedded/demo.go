package embedded

import _ "embed"

// DemoLDIF is the directory of `courriel demo` (see demo.ldif): the seed's
// dc=xoyize,dc=xyz with ou=Manager (the mailAccountReader service account),
// ou=mail and the users xomail (uid 20000), alice (20001) and bob (20002).
// Every password is "demo". Homes are under DemoHomeBase.
//
// The bytes are embedded in the binary and must not be modified.
//
//go:embed demo.ldif
var DemoLDIF []byte

// Names in DemoLDIF, for the demo command and tests.
const (
	DemoBaseDN     = "dc=xoyize,dc=xyz"
	DemoSearchBase = "ou=mail,dc=xoyize,dc=xyz"
	DemoReaderDN   = "cn=mailAccountReader,ou=Manager,dc=xoyize,dc=xyz"
	DemoPassword   = "demo"
)
