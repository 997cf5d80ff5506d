package embedded

import (
	"bytes"
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestParseLDIFDemo(t *testing.T) {
	t.Parallel()
	entries, err := ParseLDIF(bytes.NewReader(DemoLDIF))
	if err != nil {
		t.Fatalf("ParseLDIF(DemoLDIF): %v", err)
	}
	if len(entries) != 7 {
		t.Fatalf("got %d entries, want 7", len(entries))
	}
	var xomail *Entry
	for i := range entries {
		if entries[i].DN == "uid=xomail,ou=mail,dc=xoyize,dc=xyz" {
			xomail = &entries[i]
		}
	}
	if xomail == nil {
		t.Fatal("xomail not found")
	}
	for name, want := range map[string][]string{
		"mailAcceptingGeneralId": {"test0@hosted-domain.com", "test1@hosted-domain.com", "postmaster@xoyize.xyz", "postmaster@hosted-domain.com", "postmaster@example.org"},
		"maildrop":               {"xomail@xoyize.xyz"},
		"HOMEDIRECTORY":          {"/var/vmail/xomail"},
		"uidNumber":              {"20000"},
		"gidnumber":              {"20000"},
		"objectclass":            {"account", "posixAccount", "postfixUser", "top", "inetLocalMailRecipient"},
		"mailhost":               {"a"}, // its home node in `courriel demo -cluster`
	} {
		if got := xomail.Get(name); !reflect.DeepEqual(got, want) {
			t.Errorf("xomail %s = %q, want %q", name, got, want)
		}
	}
}

func TestParseLDIF(t *testing.T) {
	t.Parallel()
	in := "# a comment\n" +
		"#  folded comment\n" +
		" still the comment\n" +
		"version: 1\n" +
		"\n" +
		"dn: cn=Folded\n" +
		" Name,dc=example,dc=org\r\n" +
		"objectClass: top\n" +
		"cn: Folded\n" +
		" Name\n" +
		"description:: w6l0w6k=\n" + // "été"
		"cn;lang-fr: Nom\n" +
		"2.5.4.4: Smith\n" +
		"mail:    spaced@example.org\n" +
		"\n\n" +
		"dn:: Y249QmFzZTY0LGRjPWV4YW1wbGUsZGM9b3Jn\n" + // cn=Base64,dc=example,dc=org
		"CN: Base64\n" +
		"cn: second\n" +
		"sn: écrit en UTF-8\n"
	got, err := ParseLDIF(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	want := []Entry{
		{DN: "cn=FoldedName,dc=example,dc=org", Attributes: []Attribute{
			{"objectClass", []string{"top"}},
			{"cn", []string{"FoldedName"}},
			{"description", []string{"été"}},
			{"cn;lang-fr", []string{"Nom"}},
			{"2.5.4.4", []string{"Smith"}},
			{"mail", []string{"spaced@example.org"}},
		}},
		{DN: "cn=Base64,dc=example,dc=org", Attributes: []Attribute{
			{"CN", []string{"Base64", "second"}},
			{"sn", []string{"écrit en UTF-8"}},
		}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("ParseLDIF =\n%#v\nwant\n%#v", got, want)
	}
}

func TestParseLDIFErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   string
		line int
		msg  string
	}{
		{"changetype", "dn: cn=a,dc=x\nchangetype: add\ncn: a\n", 2, "content LDIF only"},
		{"changetype modify", "dn: cn=a,dc=x\nchangeType: modify\nreplace: cn\ncn: b\n-\n", 2, "content LDIF only"},
		{"dash separator", "dn: cn=a,dc=x\ncn: a\n-\n", 3, "content LDIF only"},
		{"control", "dn: cn=a,dc=x\ncontrol: 1.2.3 true\ncn: a\n", 2, "content LDIF only"},
		{"duplicate dn", "dn: cn=a,dc=x\ncn: a\n\ndn: CN=A, DC=X\ncn: a\n", 4, "duplicate dn"},
		{"no dn", "cn: a\nsn: b\n", 1, "must start with \"dn:\""},
		{"empty dn", "dn:\ncn: a\n", 1, "empty dn"},
		{"bad dn", "dn: not a dn\ncn: a\n", 1, "dn \"not a dn\""},
		{"no attributes", "dn: cn=a,dc=x\n\ndn: cn=b,dc=x\ncn: b\n", 1, "no attributes"},
		{"two dns", "dn: cn=a,dc=x\ncn: a\ndn: cn=b,dc=x\n", 3, "second dn"},
		{"missing colon", "dn: cn=a,dc=x\ncn a\n", 2, "missing ':'"},
		{"bad attribute name", "dn: cn=a,dc=x\nc_n: a\n", 2, "invalid attribute description"},
		{"bad option", "dn: cn=a,dc=x\ncn;: a\n", 2, "invalid attribute description"},
		{"bad oid", "dn: cn=a,dc=x\n2..5: a\n", 2, "invalid attribute description"},
		{"bad base64", "dn: cn=a,dc=x\ncn:: !!!\n", 2, "bad base64"},
		{"bad base64 dn", "dn:: !!!\ncn: a\n", 1, "bad base64"},
		{"url value", "dn: cn=a,dc=x\njpegPhoto:< file:///etc/passwd\n", 2, "URL values"},
		{"duplicate value", "dn: cn=a,dc=x\ncn: a\ncn: A\n", 3, "duplicate value"},
		{"invalid utf8", "dn: cn=a,dc=x\ncn: \xff\n", 2, "not valid UTF-8"},
		{"nul", "dn: cn=a,dc=x\ncn: a\x00b\n", 2, "NUL"},
		{"version 2", "version: 2\n\ndn: cn=a,dc=x\ncn: a\n", 1, "unsupported LDIF version"},
		{"leading continuation", " cn: a\n", 1, "continuation line"},
		{"continuation after blank", "dn: cn=a,dc=x\ncn: a\n\n b\n", 4, "continuation line"},
		{"folded error line", "dn: cn=a,dc=x\ncn: a\nsn:: \n !!\n", 3, "bad base64"},
		{"line too long", "dn: cn=a,dc=x\ncn: " + strings.Repeat("a", maxLDIFLine) + "\n", 2, "longer than"},
		{"folded too long", "dn: cn=a,dc=x\ncn: a\n" + strings.Repeat(" "+strings.Repeat("a", 1<<16)+"\n", 17), 2, "longer than"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := ParseLDIF(strings.NewReader(tc.in))
			var le *LDIFError
			if !errors.As(err, &le) {
				t.Fatalf("ParseLDIF error = %v, want *LDIFError", err)
			}
			if !errors.Is(err, ErrLDIF) {
				t.Errorf("error %v is not ErrLDIF", err)
			}
			if le.Line != tc.line || !strings.Contains(le.Msg, tc.msg) {
				t.Fatalf("ParseLDIF error = %q (line %d), want line %d containing %q", le.Msg, le.Line, tc.line, tc.msg)
			}
		})
	}
}

func TestRewriteHomes(t *testing.T) {
	t.Parallel()
	in := []Entry{{DN: "uid=a,dc=x", Attributes: []Attribute{
		{"homeDirectory", []string{"/var/vmail/a", "/var/vmail/../etc", "/var/vmailx/b", "/var/vmail/c/../d"}},
		{"description", []string{"/var/vmail/a"}},
	}}}
	got := RewriteHomes(in, "/var/vmail/", "/tmp/demo/vmail")
	want := []string{"/tmp/demo/vmail/a", "/var/vmail/../etc", "/var/vmailx/b", "/tmp/demo/vmail/d"}
	if h := got[0].Get("homedirectory"); !reflect.DeepEqual(h, want) {
		t.Errorf("homeDirectory = %q, want %q", h, want)
	}
	if d := got[0].Get("description"); d[0] != "/var/vmail/a" {
		t.Errorf("description rewritten: %q", d)
	}
	if in[0].Attributes[0].Values[0] != "/var/vmail/a" {
		t.Errorf("input modified: %q", in[0].Attributes[0].Values)
	}
}

func FuzzParseLDIF(f *testing.F) {
	f.Add(string(DemoLDIF))
	f.Add("dn: cn=a,dc=x\ncn:: YQ==\n cont\n# c\n\ndn: cn=b,dc=x\ncn: b\n")
	f.Add("version: 1\ndn: cn=a\nchangetype: add\n")
	f.Fuzz(func(t *testing.T, in string) {
		entries, err := ParseLDIF(strings.NewReader(in))
		if err != nil {
			var le *LDIFError
			if errors.As(err, &le) && le.Line < 1 {
				t.Fatalf("error with line %d: %v", le.Line, err)
			}
			return
		}
		// Whatever parses must load into a server directory.
		if _, err := newDirectory(entries); err != nil {
			t.Fatalf("parsed entries do not load: %v", err)
		}
	})
}
