package smtp

import (
	"crypto/rand"
	"encoding/base32"
	"encoding/binary"
	"sync/atomic"
	"time"
)

// idEncoding has no padding and only [A-Z2-7]: safe in headers, replies
// and logs.
var idEncoding = base32.StdEncoding.WithPadding(base32.NoPadding)

// idGen makes conn_id and msg_id values: 48 bits of milliseconds, a 16-bit
// counter and 16 random bits, 16 characters. Unique within a process as long
// as fewer than 65536 ids are made in one millisecond, and across processes
// and restarts thanks to the random bits.
type idGen struct {
	n   atomic.Uint32
	now func() time.Time
}

func (g *idGen) next() string {
	var b [10]byte
	// 48 bits of milliseconds then 16 of counter, in one big-endian word.
	binary.BigEndian.PutUint64(b[0:8], uint64(g.now().UnixMilli())<<16|uint64(uint16(g.n.Add(1))))
	_, _ = rand.Read(b[8:10])
	return idEncoding.EncodeToString(b[:])
}
