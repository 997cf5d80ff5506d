package mailstore

import (
	"math/rand/v2"
	"reflect"
	"testing"
	"time"
)

// TestIndexCodecCoversFields fails when a field is added to a cached type
// without the codec (indexcodec.go) knowing it: the field would be lost at
// every restart.
func TestIndexCodecCoversFields(t *testing.T) {
	for typ, want := range map[reflect.Type]int{
		reflect.TypeFor[Cached]():     4,
		reflect.TypeFor[Envelope]():   12,
		reflect.TypeFor[Address]():    3,
		reflect.TypeFor[BodyPart]():   16,
		reflect.TypeFor[indexEntry](): 3,
	} {
		if got := typ.NumField(); got != want {
			t.Errorf("%v has %d fields, the index codec encodes %d: update indexcodec.go and indexMagic's version", typ, got, want)
		}
	}
}

func sampleIndex() *indexFile {
	env := &Envelope{
		DateField: "Mon, 2 Jan 2023 04:29:60 -0530 (a comment)",
		Date:      time.Date(2023, 1, 2, 10, 0, 0, 5, time.FixedZone("", -(5*3600+30*60))),
		Subject:   "=?UTF-8?Q?Ren=C3=A9e?= \"quoted\"",
		From:      []Address{{Name: "A", Mailbox: "a", Host: "example.org"}},
		To:        []Address{{Mailbox: "group"}, {Name: "\x00@r\x00B", Mailbox: "b", Host: "h"}, {}},
		Cc:        []Address{{Mailbox: "c", Host: "d"}, {Mailbox: "e", Host: "f"}},
		Bcc:       []Address{{Mailbox: "g", Host: "h"}}, InReplyTo: []string{"<x@y>"}, MessageID: "<m@id>",
	}
	env.Sender, env.ReplyTo = env.From, env.From
	inner := &BodyPart{Type: "text", Subtype: "plain", Params: []Param{{"charset", "us-ascii"}}, Encoding: "7bit", Size: 10, Lines: 1}
	body := &BodyPart{
		Type: "multipart", Subtype: "mixed", Params: []Param{{"Boundary", "b1"}, {"x", "y"}, {"X", "z"}},
		Disposition: "inline", DispParams: []Param{{"filename", "f"}}, Language: []string{"fr", "en"}, Location: "loc",
		Children: []*BodyPart{
			{Type: "text", Subtype: "html", ID: "<id>", Description: "desc", Encoding: "base64", MD5: "Q2hlY2s=", Size: 1 << 31, Lines: -1},
			{Type: "message", Subtype: "rfc822", Encoding: "7bit", Size: 99, Lines: 4, Envelope: &Envelope{Subject: "inner"}, Sub: inner},
		},
	}
	return &indexFile{UIDValidity: 4000000000, Entries: []indexEntry{
		{UID: 1, Base: "1.M1P2.host", C: Cached{Size: 123, Date: time.Now().UnixNano(), Envelope: env, Body: body}},
		{UID: 2, Base: "2.x", C: Cached{Size: -1}},
		{UID: 4294967295, Base: "", C: Cached{Envelope: &Envelope{}}},
	}}
}

func TestIndexCodecRoundTrip(t *testing.T) {
	f := sampleIndex()
	got, err := decodeIndexPayload(encodeIndexPayload(f))
	if err != nil {
		t.Fatal(err)
	}
	// Dates come back in a zone of the same offset: compare them apart.
	d0, d1 := f.Entries[0].C.Envelope.Date, got.Entries[0].C.Envelope.Date
	if !d0.Equal(d1) || d0.Format(time.RFC1123Z) != d1.Format(time.RFC1123Z) {
		t.Errorf("date %v, want %v", d1, d0)
	}
	got.Entries[0].C.Envelope.Date = d0
	if !reflect.DeepEqual(f, got) {
		t.Errorf("round trip:\n got %+v\nwant %+v", got, f)
	}
}

// TestIndexCodecHostile feeds truncated and corrupted payloads (a user can
// write any index file with a valid checksum in their maildir): an error
// or some index, never a panic or an unbounded allocation.
func TestIndexCodecHostile(t *testing.T) {
	good := encodeIndexPayload(sampleIndex())
	for i := range len(good) {
		if _, err := decodeIndexPayload(good[:i]); err == nil {
			t.Errorf("truncated at %d: no error", i)
		}
	}
	r := rand.New(rand.NewPCG(3, 4))
	for range 20000 {
		b := append([]byte(nil), good...)
		for range 1 + r.IntN(4) {
			b[r.IntN(len(b))] = byte(r.Uint32())
		}
		decodeIndexPayload(b)
	}
	deep := []byte{1, 1, 1, 0, 0, 1} // UIDVALIDITY 1, 1 entry, UID 1, Base "", Size 0, Date 0, no envelope, a body…
	deep = deep[:len(deep)-1]
	deep = append(deep, 0, 1)
	for range 200 { // …each part with one child
		deep = append(deep, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1)
	}
	if _, err := decodeIndexPayload(deep); err == nil {
		t.Error("200 nested parts: no error")
	}
	if _, err := decodeIndexPayload([]byte{1, 0xff, 0xff, 0xff, 0xff, 0x0f}); err == nil {
		t.Error("a huge entry count: no error")
	}
}
