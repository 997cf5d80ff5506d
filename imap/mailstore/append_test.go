package mailstore

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// APPEND stores LF line endings, names the file with Dovecot's S= and W=,
// keeps the internal date and reports RFC822.SIZE with CRLF.
func TestAppendMeta(t *testing.T) {
	t.Parallel()
	st := testStore(t)
	mb := openBox(t, NewRegistry(), st, "INBOX")
	date := time.Date(2021, 3, 4, 5, 6, 7, 0, time.UTC)
	for _, tc := range []struct {
		in, stored string
		size       int64
	}{
		{"", "", 0},
		{"Subject: a\r\n\r\nb\r\n", "Subject: a\n\nb\n", 17},
		{"bare\nlf", "bare\nlf", 8},
	} {
		uid, err := mb.Append(strings.NewReader(tc.in), nil, date)
		if err != nil {
			t.Fatal(err)
		}
		size, d, err := mb.Meta(uid)
		if err != nil || size != tc.size || !d.Equal(date) {
			t.Errorf("%q: Meta = %d %v %v, want %d %v", tc.in, size, d, err, tc.size, date)
		}
		m, _ := mb.Get(uid)
		b, err := os.ReadFile(filepath.Join(st.Path(), mb.pathLocked(&m)))
		if err != nil || string(b) != tc.stored {
			t.Errorf("%q: stored %q %v", tc.in, b, err)
		}
		if w, ok := sizeField(m.Base, 'W'); !ok || w != tc.size {
			t.Errorf("%q: name %s", tc.in, m.Base)
		}
	}
}
