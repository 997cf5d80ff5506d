package smtp

import (
	"encoding/base32"
	"encoding/binary"
	"math/rand/v2"
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
	// Uniqueness across processes, not secrecy (the time and counter
	// are in plain view): the runtime's generator, seeded by the OS at
	// start, costs no call into the kernel's.
	binary.BigEndian.PutUint16(b[8:10], uint16(rand.Uint32()))
	return idEncoding.EncodeToString(b[:])
}
