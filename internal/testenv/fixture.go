package testenv

import (
	"bytes"
	"crypto/rand"
	"crypto/sha1"
	_ "embed"
	"encoding/base64"
	"fmt"
	"path"
	"strings"
	"text/template"
	"unicode/utf8"
)

// The directory's fixed names.
const (
	Suffix   = "dc=xoyize,dc=xyz"
	MailBase = "ou=mail,dc=xoyize,dc=xyz"
	AdminDN  = "cn=admin,dc=xoyize,dc=xyz"
	ReaderDN = "cn=mailAccountReader,ou=Manager,dc=xoyize,dc=xyz"
	ConfigDN = "cn=config"

	// DefaultHomeBase is the seed's maildir root, kept unless WithHomeBase.
	DefaultHomeBase = "/var/vmail"
)

// Known passwords of the fixture. ZoePassword is not ASCII on purpose.
const (
	AdminPassword  = "admin-secret"
	ConfigPassword = "config-secret"
	ReaderPassword = "reader-secret"
	XomailPassword = "xomail-secret"
	AlicePassword  = "alice-secret"
	BobPassword    = "bob-secret"
	ZoePassword    = "Zoë:pässwörd-€-密码"
)

// FixtureUser is one posixAccount of fixture.ldif.
type FixtureUser struct {
	Login    string // uid
	DN       string
	Password string
	UID, GID int
	Home     string   // homeDirectory as stored (HomeBase + "/" + Login)
	Aliases  []string // mailacceptinggeneralid values, in LDIF order
	Maildrop string
}

// FixtureUsers returns the posixAccount users of fixture.ldif with homes under
// homeBase ("" means DefaultHomeBase). The alias-only entries (chains, loop,
// list, forward) are described in doc.go.
func FixtureUsers(homeBase string) []FixtureUser {
	if homeBase == "" {
		homeBase = DefaultHomeBase
	}
	u := func(login, pw string, id int, maildrop string, aliases ...string) FixtureUser {
		return FixtureUser{
			Login: login, DN: "uid=" + login + "," + MailBase, Password: pw,
			UID: id, GID: id, Home: path.Join(homeBase, login),
			Aliases: aliases, Maildrop: maildrop,
		}
	}
	return []FixtureUser{
		u("xomail", XomailPassword, 20000, "xomail@xoyize.xyz",
			"test0@hosted-domain.com", "test1@hosted-domain.com"),
		u("alice", AlicePassword, 20001, "alice@xoyize.xyz",
			"alice@hosted-domain.com", "a.smith@hosted-domain.com", "alice@example.org", "contact@example.org"),
		u("bob", BobPassword, 20002, "bob@xoyize.xyz",
			"bob@hosted-domain.com", "bob@example.org", "robert@example.org", "bob@xoyize.xyz"),
		u("zoe", ZoePassword, 20003, "zoe@xoyize.xyz",
			"zoe@example.org", "zoe@hosted-domain.com"),
	}
}

var (
	//go:embed base.ldif
	baseLDIF string
	//go:embed fixture.ldif
	fixtureLDIF string
	//go:embed postfix.ldif
	postfixSchemaLDIF string
)

// fixtureData feeds base.ldif and fixture.ldif.
type fixtureData struct {
	HomeBase       string
	ReaderPassword string
	Passwords      map[string]string // by login
}

// renderFixture returns the LDIF to slapadd into the mdb database.
func renderFixture(homeBase string, withPostfix bool) (string, error) {
	data := fixtureData{HomeBase: homeBase, ReaderPassword: ReaderPassword, Passwords: map[string]string{}}
	for _, u := range FixtureUsers(homeBase) {
		data.Passwords[u.Login] = u.Password
	}
	var out bytes.Buffer
	files := []struct{ name, text string }{{"base.ldif", baseLDIF}}
	if withPostfix {
		files = append(files, struct{ name, text string }{"fixture.ldif", fixtureLDIF})
	}
	for _, f := range files {
		if err := renderTemplate(&out, f.name, f.text, data); err != nil {
			return "", err
		}
		out.WriteString("\n")
	}
	return out.String(), nil
}

func renderTemplate(out *bytes.Buffer, name, text string, data any) error {
	tmpl, err := template.New(name).Option("missingkey=error").Funcs(template.FuncMap{
		"ssha": sshaHash,
		"attr": ldifAttr,
	}).Parse(text)
	if err != nil {
		return fmt.Errorf("testenv: parse %s: %w", name, err)
	}
	if err := tmpl.Execute(out, data); err != nil {
		return fmt.Errorf("testenv: render %s: %w", name, err)
	}
	return nil
}

// sshaHash is OpenLDAP's {SSHA}: base64(SHA1(password + salt) + salt).
func sshaHash(password string) (string, error) {
	salt := make([]byte, 8)
	if _, err := rand.Read(salt); err != nil {
		return "", err
	}
	h := sha1.New()
	h.Write([]byte(password))
	h.Write(salt)
	return "{SSHA}" + base64.StdEncoding.EncodeToString(append(h.Sum(nil), salt...)), nil
}

// ldifAttr writes "name: value", or "name:: base64" when value is not an
// RFC 2849 SAFE-STRING (non-ASCII, NUL/CR/LF, or a leading space, colon or '<').
func ldifAttr(name, value string) string {
	if isSafeString(value) {
		return name + ": " + value
	}
	return name + ":: " + base64.StdEncoding.EncodeToString([]byte(value))
}

func isSafeString(s string) bool {
	if s == "" {
		return true
	}
	if s[0] == ' ' || s[0] == ':' || s[0] == '<' || strings.HasSuffix(s, " ") {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c == 0 || c == '\n' || c == '\r' || c >= utf8.RuneSelf {
			return false
		}
	}
	return true
}
