package embedded

import (
	"errors"
	"strings"
	"testing"

	"github.com/go-ldap/ldap/v3"
)

const filterLDIF = `dn: uid=john,ou=mail,dc=example,dc=org
objectClass: top
objectClass: posixAccount
uid: john
cn: John   Smith
uidNumber: 20010
mail: John.Smith@Example.ORG
mailacceptinggeneralid: john@hosted-domain.com
mailacceptinggeneralid: js@hosted-domain.com
description: a*b
description: (x)
description: back\slash
description:: aW52YWxpZP8=
userPassword: secret
`

func filterEntry(t testing.TB) *storedEntry {
	t.Helper()
	entries, err := ParseLDIF(strings.NewReader(filterLDIF))
	if err != nil {
		t.Fatal(err)
	}
	d, err := newDirectory(entries)
	if err != nil {
		t.Fatal(err)
	}
	return d.entries[0]
}

func TestFilterEval(t *testing.T) {
	t.Parallel()
	e := filterEntry(t)
	tests := []struct {
		filter string
		want   tri
	}{
		{"(uid=john)", triTrue},
		{"(UID=JOHN)", triTrue},
		{"(uid=jo)", triFalse},
		{"(objectclass=POSIXACCOUNT)", triTrue},
		{"(objectClass=*)", triTrue},
		{"(nosuch=*)", triFalse},
		{"(nosuch=x)", triFalse},
		{"(cn=john smith)", triTrue},       // inner space run folded
		{"(cn=  John   Smith  )", triTrue}, // edge spaces insignificant
		{"(cn=johnsmith)", triFalse},
		{"(mail=john.smith@example.org)", triTrue},
		{"(mailacceptinggeneralid=*@hosted-domain.com)", triTrue},
		{"(mailacceptinggeneralid=*@HOSTED-domain.com)", triTrue},
		{"(mailacceptinggeneralid=*@other.com)", triFalse},
		{"(mailacceptinggeneralid=j*)", triTrue},
		{"(mailacceptinggeneralid=j*n@*com)", triTrue},
		{"(mailacceptinggeneralid=*hosted*domain*)", triTrue},
		{"(mailacceptinggeneralid=john*john*)", triFalse}, // pieces must not overlap
		{"(uid=jo*hn)", triTrue},
		{"(uid=joh*ohn)", triFalse},
		{"(uidNumber>=20010)", triTrue},
		{"(uidNumber>=9)", triTrue}, // numeric, not lexical
		{"(uidNumber<=9)", triFalse},
		{"(uidNumber<=20010)", triTrue},
		{"(uidNumber>=20011)", triFalse},
		{"(uid>=j)", triTrue},
		{"(uid<=a)", triFalse},
		{"(uid~=JOHN)", triTrue},
		{"(&(objectClass=posixAccount)(uid=john))", triTrue},
		{"(&(objectClass=posixAccount)(uid=jane))", triFalse},
		{"(|(uid=jane)(mailacceptinggeneralid=js@hosted-domain.com))", triTrue},
		{"(|(uid=jane)(uid=joe))", triFalse},
		{"(!(uid=jane))", triTrue},
		{"(!(uid=john))", triFalse},
		{"(&)", triTrue},
		{"(|)", triFalse},
		{"(description=a\\2ab)", triTrue}, // escaped *, not a substring
		{"(description=a\\2a)", triFalse},
		{"(description=\\28x\\29)", triTrue},
		{"(description=back\\5cslash)", triTrue},
		{"(description=*\\5c*)", triTrue},
		{"(uid=john\\00)", triFalse},
		{"(uid=" + ldap.EscapeFilter("*)(uid=*") + ")", triFalse},
		{"(uid=" + ldap.EscapeFilter("john)(uid=*") + ")", triFalse},
		{"(description=invalid\\ff)", triUndefined}, // invalid UTF-8 assertion
		{"(!(description=invalid\\ff))", triUndefined},
		{"(|(description=invalid\\ff)(uid=john))", triTrue},
		{"(&(description=invalid\\ff)(uid=john))", triUndefined},
		{"(description=*\\ff*)", triUndefined},
		{"(userPassword=secret)", triTrue}, // matching is allowed; returning it is not
		{"(uid:=JOHN)", triTrue},
		{"(uid:caseExactMatch:=JOHN)", triFalse},
		{"(uid:caseExactMatch:=john)", triTrue},
		{"(uid:2.5.13.2:=JOHN)", triTrue},
		{"(:caseIgnoreMatch:=JS@hosted-domain.com)", triTrue},
		{"(ou:dn:=MAIL)", triTrue},
		{"(ou:=mail)", triFalse},
		{"(uid:1.2.3.4:=john)", triUndefined},
	}
	for _, tc := range tests {
		f, err := compileFilterString(tc.filter)
		if err != nil {
			t.Errorf("compile %q: %v", tc.filter, err)
			continue
		}
		if got := f.eval(e); got != tc.want {
			t.Errorf("%s = %d, want %d", tc.filter, got, tc.want)
		}
	}
}

func TestFilterLimits(t *testing.T) {
	t.Parallel()
	deep := strings.Repeat("(!", maxFilterDepth) + "(uid=x)" + strings.Repeat(")", maxFilterDepth)
	wide := "(|" + strings.Repeat("(uid=x)", maxFilterNodes) + ")"
	subs := "(uid=" + strings.Repeat("a*", maxSubstrAny+2) + "a)"
	ok := strings.Repeat("(!", maxFilterDepth-1) + "(uid=x)" + strings.Repeat(")", maxFilterDepth-1)
	for _, s := range []string{deep, wide, subs} {
		if _, err := compileFilterString(s); !errors.Is(err, errFilterLimit) {
			t.Errorf("compile %.40q... error = %v, want errFilterLimit", s, err)
		}
	}
	if _, err := compileFilterString(ok); err != nil {
		t.Errorf("filter of depth %d refused: %v", maxFilterDepth, err)
	}
}

func TestFoldValue(t *testing.T) {
	t.Parallel()
	tests := []struct{ in, want string }{
		{"  A  B  ", "a b"},
		{"ÉTÉ", "été"},
		{"\xff", "\xff"},
		{"\xfe", "\xfe"},
		{"", ""},
		{"   ", ""},
	}
	for _, tc := range tests {
		if got := foldValue(tc.in); got != tc.want {
			t.Errorf("foldValue(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	if foldComponent(" a  ") != " a " {
		t.Errorf("foldComponent kept edges wrong: %q", foldComponent(" a  "))
	}
}

func FuzzFilter(f *testing.F) {
	for _, s := range []string{
		"(uid=john)", "(&(objectClass=posixAccount)(uid=*))", "(|(a=b)(!(c>=d)))",
		"(mail=*@*.org)", "(uid:dn:caseIgnoreMatch:=x)", "(cn=\\2a\\00\\ff)", "(cn~=x)",
	} {
		f.Add(s)
	}
	e := filterEntry(f)
	f.Fuzz(func(t *testing.T, s string) {
		fl, err := compileFilterString(s)
		if err != nil {
			return
		}
		r := fl.eval(e)
		if r != triTrue && r != triFalse && r != triUndefined {
			t.Fatalf("eval returned %d", r)
		}
		// NOT must invert True/False and keep Undefined.
		nf, err := compileFilterString("(!" + s + ")")
		if err != nil {
			return // one level deeper may exceed the limit
		}
		want := map[tri]tri{triTrue: triFalse, triFalse: triTrue, triUndefined: triUndefined}[r]
		if got := nf.eval(e); got != want {
			t.Fatalf("(!%s) = %d, want %d", s, got, want)
		}
	})
}
