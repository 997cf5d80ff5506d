// Package inflate decodes a raw DEFLATE stream (RFC 1951) as it arrives,
// for IMAP's COMPRESS=DEFLATE (RFC 4978).
//
// Go's compress/flate keeps a block's output until it has read the header
// of the next block. A client that ends each command with zlib's
// Z_PARTIAL_FLUSH (isync/mbsync does) sends the end of its block and then
// waits for our answer, so that reader would wait forever for the command.
// This Reader hands out every byte it can decode from the input it has
// before it asks its source for more, and it keeps its state across a
// source error: a read deadline (IDLE's wake-ups) costs nothing, and the
// next Read goes on where the stream stands.
//
// Every decoding step is an attempt over the buffered input that either
// completes or leaves the Reader as it was, so a block header or a symbol
// split between two TCP segments is simply tried again with more input.
package inflate
