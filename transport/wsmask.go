package transport

import "encoding/binary"

// unmask XORs b with the websocket masking key, starting at the key's
// byte pos&3, eight bytes at a time, and returns the position after b.
// (Byte by byte, with the position kept in the reader, unmasking was 8 %
// of sockjsd's own instructions per 64-byte websocket echo.)
func unmask(key [4]byte, pos int, b []byte) int {
	k := uint32(key[0]) | uint32(key[1])<<8 | uint32(key[2])<<16 | uint32(key[3])<<24
	r := uint(pos&3) * 8
	k = k>>r | k<<(32-r) // the key as seen from b[0]; a shift by 32 gives 0
	w := uint64(k) | uint64(k)<<32
	i := 0
	for ; i+8 <= len(b); i += 8 {
		binary.LittleEndian.PutUint64(b[i:], binary.LittleEndian.Uint64(b[i:])^w)
	}
	if i+4 <= len(b) { // four more: the key itself, i being a multiple of 4
		binary.LittleEndian.PutUint32(b[i:], binary.LittleEndian.Uint32(b[i:])^k)
		i += 4
	}
	for ; i < len(b); i++ {
		b[i] ^= byte(k >> (8 * uint(i&3)))
	}
	return pos + len(b)
}
