package imap

import (
	"time"

	goimap "github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
)

func (s *session) Append(mailbox string, r goimap.LiteralReader, options *goimap.AppendOptions) (*goimap.AppendData, error) {
	mb, err := s.srv.reg.Open(s.store, mailbox)
	if err != nil {
		return nil, s.imapError("append", err, goimap.ResponseCodeTryCreate)
	}
	defer mb.Release()
	date := options.Time
	if date.IsZero() {
		date = time.Now()
	}
	uid, err := mb.Append(r, flagsToStore(options.Flags), date)
	if err != nil {
		return nil, s.imapError("append", err, "")
	}
	return &goimap.AppendData{UID: goimap.UID(uid), UIDValidity: mb.UIDValidity()}, nil
}

func (s *session) Store(w *imapserver.FetchWriter, numSet goimap.NumSet, flags *goimap.StoreFlags, _ *goimap.StoreOptions) error {
	sel := s.sel
	if sel.readOnly {
		return errReadOnly
	}
	seqs, uids := sel.resolve(numSet)
	if len(uids) == 0 {
		return nil
	}
	newFlags, ok, err := sel.mb.StoreFlags(uids, storeOp(flags.Op), flagsToStore(flags.Flags), sel.w)
	if err != nil {
		return s.imapError("store", err, "")
	}
	if flags.Silent {
		return nil
	}
	for i := range uids {
		if !ok[i] {
			continue
		}
		m := w.CreateMessage(seqs[i])
		m.WriteUID(goimap.UID(uids[i]))
		m.WriteFlags(flagsToIMAP(sel.mb.FlagNames(newFlags[i])))
		if err := m.Close(); err != nil {
			return err
		}
	}
	return nil
}

// Expunge removes \Deleted messages; the EXPUNGE responses are written by
// the poll that follows the command, from the mailbox's change log.
func (s *session) Expunge(_ *imapserver.ExpungeWriter, uids *goimap.UIDSet) error {
	sel := s.sel
	if sel.readOnly {
		return errReadOnly
	}
	visible := make(map[uint32]bool, len(sel.view))
	for _, u := range sel.view {
		visible[u] = true
	}
	filter := func(uid uint32) bool {
		// RFC 9051: only messages this client knows about.
		return visible[uid] && (uids == nil || uids.Contains(goimap.UID(uid)))
	}
	_, err := sel.mb.Expunge(filter, true)
	return s.imapError("expunge", err, "")
}

func (s *session) copy(numSet goimap.NumSet, dest string) (*goimap.CopyData, []uint32, error) {
	sel := s.sel
	dst, err := s.srv.reg.Open(s.store, dest)
	if err != nil {
		return nil, nil, s.imapError("copy", err, goimap.ResponseCodeTryCreate)
	}
	defer dst.Release()
	_, uids := sel.resolve(numSet)
	if len(uids) == 0 {
		return nil, nil, nil
	}
	src, dstUIDs, err := sel.mb.CopyTo(dst, uids)
	if err != nil {
		return nil, nil, s.imapError("copy", err, "")
	}
	if len(src) == 0 {
		return nil, nil, nil
	}
	var srcSet, dstSet goimap.UIDSet
	for i := range src {
		srcSet.AddNum(goimap.UID(src[i]))
		dstSet.AddNum(goimap.UID(dstUIDs[i]))
	}
	return &goimap.CopyData{UIDValidity: dst.UIDValidity(), SourceUIDs: srcSet, DestUIDs: dstSet}, src, nil
}

func (s *session) Copy(numSet goimap.NumSet, dest string) (*goimap.CopyData, error) {
	data, _, err := s.copy(numSet, dest)
	return data, err
}

// Move is COPY then expunge of the originals (RFC 6851); the untagged
// COPYUID comes first, the EXPUNGEs from the poll after the command.
func (s *session) Move(w *imapserver.MoveWriter, numSet goimap.NumSet, dest string) error {
	if s.sel.readOnly {
		return errReadOnly
	}
	data, src, err := s.copy(numSet, dest)
	if err != nil {
		return err
	}
	if data == nil {
		return nil
	}
	moved := make(map[uint32]bool, len(src))
	for _, u := range src {
		moved[u] = true
	}
	if _, err := s.sel.mb.Expunge(func(uid uint32) bool { return moved[uid] }, false); err != nil {
		return s.imapError("move", err, "")
	}
	return w.WriteCopyData(data)
}
