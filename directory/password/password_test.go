package password

import (
	"crypto/sha1" //nolint:gosec // building {SHA} fixtures.
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"
)

const slappasswd = "/usr/sbin/slappasswd"

func TestHashVerifyRoundTrip(t *testing.T) {
	t.Parallel()
	for _, s := range []Scheme{"", SSHA, SSHA256, SSHA512, "{ssha512}"} {
		h, err := Hash(s, []byte("secret"))
		if err != nil {
			t.Fatalf("Hash(%q): %v", s, err)
		}
		want := strings.ToUpper(string(s))
		if s == "" {
			want = string(DefaultScheme)
		}
		if !strings.HasPrefix(h, want) {
			t.Errorf("Hash(%q) = %q, want prefix %q", s, h, want)
		}
		for _, tc := range []struct {
			pw   string
			want bool
		}{{"secret", true}, {"Secret", false}, {"secret ", false}, {"", false}} {
			ok, err := Verify(h, []byte(tc.pw))
			if err != nil || ok != tc.want {
				t.Errorf("Verify(%q, %q) = %v, %v; want %v", h, tc.pw, ok, err, tc.want)
			}
		}
	}
}

func TestHashSaltsDiffer(t *testing.T) {
	t.Parallel()
	a, _ := Hash(SSHA, []byte("x"))
	b, _ := Hash(SSHA, []byte("x"))
	if a == b {
		t.Fatalf("two hashes of the same password are equal: %q", a)
	}
	raw, _ := base64.StdEncoding.DecodeString(strings.TrimPrefix(a, "{SSHA}"))
	if len(raw) != sha1.Size+saltLen {
		t.Fatalf("decoded length %d, want %d", len(raw), sha1.Size+saltLen)
	}
}

func TestHashRefuses(t *testing.T) {
	t.Parallel()
	tests := []struct {
		scheme Scheme
		pw     string
		want   error
	}{
		{SSHA, "", ErrEmptyPassword},
		{"", "", ErrEmptyPassword},
		{SHA, "x", ErrUnknownScheme},
		{"{CRYPT}", "x", ErrUnknownScheme},
		{"{MD5}", "x", ErrUnknownScheme},
		{"SSHA", "x", ErrUnknownScheme}, // Scheme values carry braces; ParseScheme adds them.
	}
	for _, tc := range tests {
		if _, err := Hash(tc.scheme, []byte(tc.pw)); !errors.Is(err, tc.want) {
			t.Errorf("Hash(%q, %q) error = %v, want %v", tc.scheme, tc.pw, err, tc.want)
		}
	}
}

func TestParseScheme(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in      string
		want    Scheme
		wantErr bool
	}{
		{"ssha", SSHA, false},
		{"{SSHA}", SSHA, false},
		{" {ssha256} ", SSHA256, false},
		{"SSHA512", SSHA512, false},
		{"sha", "", true},
		{"crypt", "", true},
		{"", "", true},
	}
	for _, tc := range tests {
		got, err := ParseScheme(tc.in)
		if got != tc.want || (err != nil) != tc.wantErr {
			t.Errorf("ParseScheme(%q) = %q, %v; want %q, err=%v", tc.in, got, err, tc.want, tc.wantErr)
		}
		if err != nil && !errors.Is(err, ErrUnknownScheme) {
			t.Errorf("ParseScheme(%q) error %v is not ErrUnknownScheme", tc.in, err)
		}
	}
}

func unsalted(tag string, sum []byte) string {
	return tag + base64.StdEncoding.EncodeToString(sum)
}

func TestVerify(t *testing.T) {
	t.Parallel()
	sha1Sum := sha1.Sum([]byte("secret")) //nolint:gosec
	sha256Sum := sha256.Sum256([]byte("secret"))
	tests := []struct {
		name    string
		stored  string
		pw      string
		want    bool
		wantErr error
	}{
		// Values from the seed's slappasswd runs and from slappasswd -s secret.
		{"slappasswd ssha secret", "{SSHA}0ZUr/HvBacII+yfdiSoAvosnomUgAGK5", "secret", true, nil},
		{"slappasswd ssha wrong", "{SSHA}0ZUr/HvBacII+yfdiSoAvosnomUgAGK5", "secreT", false, nil},
		{"lower-case tag", "{ssha}0ZUr/HvBacII+yfdiSoAvosnomUgAGK5", "secret", true, nil},
		{"slappasswd ssha512", "{SSHA512}/dpbCaKiA6lg1io4HlieJNlSY92D1VCliLFk8WPBBECZP7Zd5M9XKOstaEx7H7LwajJ48z00u6fhItCaVNU3ZOaYqEeJnHVu", "secret", true, nil},
		{"sha", unsalted("{SHA}", sha1Sum[:]), "secret", true, nil},
		{"sha wrong", unsalted("{SHA}", sha1Sum[:]), "other", false, nil},
		{"sha256", unsalted("{SHA256}", sha256Sum[:]), "secret", true, nil},
		{"sha with salt is malformed", unsalted("{SHA}", append(sha1Sum[:], 1)), "secret", false, ErrMalformed},
		{"ssha without salt", unsalted("{SSHA}", sha1Sum[:]), "secret", true, nil},
		{"ssha too short", "{SSHA}AAAA", "secret", false, ErrMalformed},
		{"bad base64", "{SSHA}!!!!", "secret", false, ErrMalformed},
		{"unpadded base64", strings.TrimRight(unsalted("{SHA}", sha1Sum[:]), "="), "secret", true, nil},
		{"crypt unsupported", "{CRYPT}$6$abc$def", "secret", false, ErrUnknownScheme},
		{"md5 unsupported", "{MD5}Xr4ilOzQ4PCOq3aQ0qbuaQ==", "secret", false, ErrUnknownScheme},
		{"plain", "secret", "secret", true, nil},
		{"plain wrong", "secret", "secret2", false, nil},
		{"plain prefix", "secret", "secre", false, nil},
		{"plain unclosed brace", "{secret", "{secret", true, nil},
		{"empty password never matches plain", "", "", false, nil},
		{"empty password never matches hash", "{SSHA}0ZUr/HvBacII+yfdiSoAvosnomUgAGK5", "", false, nil},
		{"huge stored", "{SSHA}" + strings.Repeat("A", 5000), "x", false, ErrMalformed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := Verify(tc.stored, []byte(tc.pw))
			if got != tc.want || !errors.Is(err, tc.wantErr) {
				t.Fatalf("Verify(%q, %q) = %v, %v; want %v, %v", tc.stored, tc.pw, got, err, tc.want, tc.wantErr)
			}
		})
	}
}

// TestVerifySlappasswd checks hashes made right now by the real slappasswd,
// including the pw-sha2 schemes when that module can be loaded.
func TestVerifySlappasswd(t *testing.T) {
	t.Parallel()
	if _, err := os.Stat(slappasswd); err != nil {
		if os.Getenv("CI") == "true" { // scripts/test installs it
			t.Fatalf("%s not installed", slappasswd)
		}
		t.Skipf("%s not installed", slappasswd)
	}
	for _, tc := range []struct {
		scheme   string
		args     []string
		optional bool // needs the pw-sha2 module
	}{
		{"{SSHA}", nil, false},
		{"{SHA}", nil, false},
		{"{SSHA256}", []string{"-o", "module-load=pw-sha2"}, true},
		{"{SSHA512}", []string{"-o", "module-load=pw-sha2"}, true},
		{"{SHA512}", []string{"-o", "module-load=pw-sha2"}, true},
	} {
		args := append(append([]string{}, tc.args...), "-h", tc.scheme, "-s", "secret")
		out, err := exec.Command(slappasswd, args...).Output()
		if err != nil {
			if tc.optional {
				t.Logf("slappasswd %s unavailable: %v", tc.scheme, err)
				continue
			}
			t.Fatalf("slappasswd %v: %v", args, err)
		}
		stored := strings.TrimSpace(string(out))
		if ok, err := Verify(stored, []byte("secret")); !ok || err != nil {
			t.Errorf("Verify(%q, secret) = %v, %v; want true", stored, ok, err)
		}
		if ok, err := Verify(stored, []byte("secrets")); ok || err != nil {
			t.Errorf("Verify(%q, secrets) = %v, %v; want false, nil", stored, ok, err)
		}
	}
}

func FuzzVerify(f *testing.F) {
	f.Add("{SSHA}0ZUr/HvBacII+yfdiSoAvosnomUgAGK5", []byte("secret"))
	f.Add("{SHA512}", []byte("x"))
	f.Add("{", []byte(""))
	f.Add("{}", []byte("{}"))
	f.Add("plain", []byte("plain"))
	f.Fuzz(func(t *testing.T, stored string, pw []byte) {
		ok, err := Verify(stored, pw)
		if ok && err != nil {
			t.Fatalf("Verify returned true with error %v", err)
		}
		if ok && len(pw) == 0 {
			t.Fatalf("empty password verified against %q", stored)
		}
	})
}
