package imap

import (
	goimap "github.com/emersion/go-imap/v2"

	"courriel/imap/mailstore"
)

// Conversions between go-imap's types and mailstore's protocol-free ones.

func flagsToIMAP(names []string) []goimap.Flag {
	if names == nil {
		return nil
	}
	out := make([]goimap.Flag, len(names))
	for i, n := range names {
		out[i] = goimap.Flag(n)
	}
	return out
}

func flagsToStore(flags []goimap.Flag) []string {
	out := make([]string, len(flags))
	for i, f := range flags {
		out[i] = string(f)
	}
	return out
}

func storeOp(op goimap.StoreFlagsOp) mailstore.StoreOp {
	switch op {
	case goimap.StoreFlagsAdd:
		return mailstore.StoreAdd
	case goimap.StoreFlagsDel:
		return mailstore.StoreRemove
	}
	return mailstore.StoreReplace
}

func addrsToIMAP(in []mailstore.Address) []goimap.Address {
	if in == nil {
		return nil
	}
	out := make([]goimap.Address, len(in))
	for i, a := range in {
		out[i] = goimap.Address(a)
	}
	return out
}

func addrsToStore(in []goimap.Address) []mailstore.Address {
	if in == nil {
		return nil
	}
	out := make([]mailstore.Address, len(in))
	for i, a := range in {
		out[i] = mailstore.Address(a)
	}
	return out
}

func envToIMAP(e *mailstore.Envelope) *goimap.Envelope {
	if e == nil {
		return nil
	}
	return &goimap.Envelope{
		Date: e.Date, Subject: e.Subject,
		From: addrsToIMAP(e.From), Sender: addrsToIMAP(e.Sender), ReplyTo: addrsToIMAP(e.ReplyTo),
		To: addrsToIMAP(e.To), Cc: addrsToIMAP(e.Cc), Bcc: addrsToIMAP(e.Bcc),
		InReplyTo: e.InReplyTo, MessageID: e.MessageID,
	}
}

func envToStore(e *goimap.Envelope) *mailstore.Envelope {
	if e == nil {
		return nil
	}
	return &mailstore.Envelope{
		Date: e.Date, Subject: e.Subject,
		From: addrsToStore(e.From), Sender: addrsToStore(e.Sender), ReplyTo: addrsToStore(e.ReplyTo),
		To: addrsToStore(e.To), Cc: addrsToStore(e.Cc), Bcc: addrsToStore(e.Bcc),
		InReplyTo: e.InReplyTo, MessageID: e.MessageID,
	}
}
