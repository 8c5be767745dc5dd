package redisslot

import "testing"

// TestSlot: the examples of the Redis Cluster specification.
func TestSlot(t *testing.T) {
	for _, c := range []struct {
		key  string
		slot int
	}{
		{"123456789", 0x31C3 % Slots}, // the spec's CRC16 check value
		{"{user1000}.following", Slot("user1000")},
		{"{user1000}.followers", Slot("user1000")},
		{"foo{}{bar}", Slot("foo{}{bar}")},
		{"foo{{bar}}zap", Slot("{bar")},
		{"foo{bar}{zap}", Slot("bar")},
	} {
		if got := Slot(c.key); got != c.slot {
			t.Errorf("Slot(%q) = %d, want %d", c.key, got, c.slot)
		}
	}
}

// TestTag: every slot has a tag, and a key with it lives in that slot.
func TestTag(t *testing.T) {
	for s := range Slots {
		tag := Tag(s)
		if tag == "" {
			t.Fatalf("no tag for slot %d", s)
		}
		if got := Slot("prefix:{" + tag + "}gen"); got != s {
			t.Fatalf("Tag(%d) = %q lands in slot %d", s, tag, got)
		}
	}
}
