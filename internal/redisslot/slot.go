// Package redisslot computes Redis Cluster's hash slots, and finds for
// any slot a hash tag that lands in it: to place a key on the master that
// serves a given slot.
package redisslot

import (
	"strconv"
	"strings"
	"sync"
)

// Slots is the number of hash slots of a Redis Cluster.
const Slots = 16384

// Slot is Redis Cluster's slot of key: CRC16 of its hash tag (the part
// between the first '{' and the next '}', when not empty) or of the whole
// key, mod 16384.
func Slot(key string) int {
	if i := strings.IndexByte(key, '{'); i >= 0 {
		if j := strings.IndexByte(key[i+1:], '}'); j > 0 {
			key = key[i+1 : i+1+j]
		}
	}
	return int(crc16(key) % Slots)
}

// crc16 is CRC16-CCITT (XMODEM), the one Redis Cluster uses.
func crc16(s string) uint16 {
	var crc uint16
	for i := 0; i < len(s); i++ {
		crc ^= uint16(s[i]) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return crc
}

var (
	tagsOnce sync.Once
	tags     [Slots]string
)

// Tag is a short hash tag whose slot is slot (0 <= slot < Slots): a key
// containing "{" + Tag(slot) + "}" lives in that slot. The table is built
// on first use (about 160,000 CRCs of a few bytes) and never changes.
func Tag(slot int) string {
	tagsOnce.Do(func() {
		for i, left := uint64(0), Slots; left > 0; i++ {
			t := strconv.FormatUint(i, 36)
			if s := crc16(t) % Slots; tags[s] == "" {
				tags[s] = t
				left--
			}
		}
	})
	return tags[slot]
}
