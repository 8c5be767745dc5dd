package transport

import (
	"math/rand/v2"
	"testing"
)

// TestUnmask: the word loop XORs what the byte loop does, for every start
// position in the key, every length around the word size, and chunks
// that continue one another.
func TestUnmask(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for n := 0; n < 2000; n++ {
		key := [4]byte{byte(r.Uint32()), byte(r.Uint32()), byte(r.Uint32()), byte(r.Uint32())}
		size := r.IntN(40)
		b := make([]byte, size)
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		want := append([]byte(nil), b...)
		pos := r.IntN(1000)
		for i := range want {
			want[i] ^= key[(pos+i)&3]
		}
		cut := 0
		if size > 0 {
			cut = r.IntN(size + 1)
		}
		got := append([]byte(nil), b...)
		p := unmask(key, pos, got[:cut])
		if p = unmask(key, p, got[cut:]); p != pos+size {
			t.Fatalf("position %d after %d bytes from %d", p, size, pos)
		}
		if string(got) != string(want) {
			t.Fatalf("key %x from %d, %d bytes cut at %d: % x, want % x", key, pos, size, cut, got, want)
		}
	}
}
