package testenv

import (
	"context"
	"testing"
)

func TestStartRedisCluster(t *testing.T) {
	rc := StartRedisCluster(t)
	if len(rc.Addrs) != clusterMasters {
		t.Fatalf("addrs %v", rc.Addrs)
	}
	for _, a := range rc.Addrs {
		info, err := clusterInfo(a)
		if err != nil || info["cluster_state"] != "ok" || info["cluster_size"] != "3" {
			t.Fatalf("%s: %v %v", a, info, err)
		}
	}
	// hashSlot agrees with the cluster's CLUSTER KEYSLOT.
	c := rc.Client(t)
	keys := []string{"a", "b", "{x}:meta", "sockjsd:{webhook}:q:3", "x}{y", "{}z"}
	for _, k := range keys {
		if got, err := c.ClusterKeySlot(context.Background(), k).Result(); err != nil || int(got) != hashSlot(k) {
			t.Errorf("CLUSTER KEYSLOT %q = %d, %v; hashSlot %d", k, got, err, hashSlot(k))
		}
	}
	if m := rc.Masters(t, "a", "b", "c", "d", "e", "f", "g", "h"); len(m) != clusterMasters {
		t.Errorf("8 keys on masters %v, want all %d", m, clusterMasters)
	}
}

func TestHashSlot(t *testing.T) {
	// Values from the Redis Cluster specification and CLUSTER KEYSLOT.
	for _, c := range []struct {
		key  string
		slot int
	}{
		{"123456789", 12739}, // CRC16 check value 0x31C3
		{"foo", 12182},
		{"{user1000}.following", hashSlot("user1000")},
		{"foo{}{bar}", hashSlot("foo{}{bar}")},
		{"foo{{bar}}zap", hashSlot("{bar")},
	} {
		if got := hashSlot(c.key); got != c.slot {
			t.Errorf("hashSlot(%q) = %d, want %d", c.key, got, c.slot)
		}
	}
}
