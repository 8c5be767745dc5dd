package cluster

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sockjsd/sockjsd/internal/testenv"
)

// sessionKeys are n store keys "/echo/<name><i>" and the Redis keys
// they live at.
func sessionKeys(name string, n int) (keys, full []string) {
	for i := range n {
		keys = append(keys, fmt.Sprintf("/echo/%s%d", name, i))
		full = append(full, DefaultKeyPrefix+keys[i])
	}
	return keys, full
}

// TestRedisClusterStore runs the owner store on a Redis Cluster of three
// masters, with 600 session keys spread over them: claims, lookups, a
// take-over, the keep sweep (EvalSha per key in pipelines that go-redis
// splits by slot), hand-off records written and taken once, release, and
// the recovery after every master lost its data.
func TestRedisClusterStore(t *testing.T) {
	rc := testenv.StartRedisCluster(t)
	rdb := rc.Client(t)
	ctx := context.Background()
	o := NewRedisStore(rdb, RedisStoreOptions{TTL: 5 * time.Second, RecoveryGrace: 300 * time.Millisecond})
	const a, b, c = "http://a", "http://b", "http://c"
	keys, full := sessionKeys("s", 600)
	if m := rc.Masters(t, full...); len(m) != 3 {
		t.Fatalf("keys on masters %v, want all three", m)
	}
	if _, err := o.Generation(ctx); err != nil {
		t.Fatal(err)
	}

	for _, k := range keys {
		if got, err := o.Claim(ctx, k, a, ""); err != nil || got != a {
			t.Fatalf("a claims %s: %q %v", k, got, err)
		}
	}
	for i, k := range keys {
		owner, err := o.Owner(ctx, k)
		if err != nil || owner != a {
			t.Fatalf("owner of %s: %q %v", k, owner, err)
		}
		if got, err := o.Claim(ctx, k, b, ""); err != nil || got != a {
			t.Fatalf("b claims a's %s: %q %v", k, got, err)
		}
		if i%2 == 1 { // b takes the odd ones over from a (a taken for dead)
			if got, err := o.Claim(ctx, k, b, a); err != nil || got != b {
				t.Fatalf("b takes over %s: %q %v", k, got, err)
			}
		}
	}

	// a's keep sweep refreshes the even keys and reports the odd lost.
	if err := rdb.PExpire(ctx, full[0], time.Second).Err(); err != nil {
		t.Fatal(err)
	}
	lost, err := o.Keep(ctx, keys, a)
	if err != nil || len(lost) != 300 {
		t.Fatalf("Keep: %d lost, %v", len(lost), err)
	}
	for _, k := range lost {
		if owner, _ := o.Owner(ctx, k); owner != b {
			t.Fatalf("lost %s owned by %q", k, owner)
		}
	}
	if ttl := rdb.PTTL(ctx, full[0]).Val(); ttl < 4*time.Second {
		t.Fatalf("Keep left %s's TTL at %s", keys[0], ttl)
	}

	// b hands its keys off; c takes each, once, with its state.
	for _, k := range lost {
		if err := o.HandOff(ctx, k, b, []byte("state of "+k), time.Minute); err != nil {
			t.Fatalf("hand off %s: %v", k, err)
		}
		if err := o.HandOff(ctx, k, a, nil, time.Minute); !errors.Is(err, ErrNotOwner) {
			t.Fatalf("a hands off b's %s: %v", k, err)
		}
		if owner, _ := o.Owner(ctx, k); owner != HandOffOwner {
			t.Fatalf("owner of handed-off %s: %q", k, owner)
		}
	}
	for _, k := range lost {
		state, owner, err := o.Take(ctx, k, c)
		if err != nil || owner != c || string(state) != "state of "+k {
			t.Fatalf("c takes %s: %q %q %v", k, state, owner, err)
		}
		if state, owner, err := o.Take(ctx, k, a); err != nil || owner != c || state != nil {
			t.Fatalf("a takes %s after c: %q %q %v", k, state, owner, err)
		}
	}

	// Every master loses its data: a missing key is not free during the
	// grace; the owners' keep sweeps put their keys back.
	if err := rdb.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error {
		return m.FlushAll(ctx).Err()
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := o.Generation(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := o.Owner(ctx, keys[0]); !errors.Is(err, ErrRecovering) {
		t.Fatalf("Owner during the grace: %v", err)
	}
	var even []string
	for i, k := range keys {
		if i%2 == 0 {
			even = append(even, k)
		}
	}
	if again, err := o.Keep(ctx, even, a); err != nil || len(again) != 0 {
		t.Fatalf("a's Keep after the loss: %v %v", again, err)
	}
	if again, err := o.Keep(ctx, lost, c); err != nil || len(again) != 0 {
		t.Fatalf("c's Keep after the loss: %v %v", again, err)
	}
	waitGrace(t, o)
	for i, k := range keys {
		want := []string{a, c}[i%2]
		if owner, err := o.Owner(ctx, k); err != nil || owner != want {
			t.Fatalf("owner of %s after the put-back: %q %v, want %q", k, owner, err, want)
		}
	}

	// Release: each node deletes only its own keys.
	if err := o.Release(ctx, keys, a); err != nil {
		t.Fatal(err)
	}
	var left []string
	for _, k := range keys {
		if owner, _ := o.Owner(ctx, k); owner != "" {
			left = append(left, owner)
		}
	}
	if len(left) != 300 || slices.ContainsFunc(left, func(s string) bool { return s != c }) {
		t.Fatalf("after a's release: %d owned, want c's 300", len(left))
	}
}

// TestRedisClusterStoreOneMasterLost: one master of three loses its data
// (restarted empty, without a replica; FLUSHALL here), not the one that
// holds the generation of a single Redis. A key that lived there is not
// taken as free: the generation changes (the owners put their records
// back at once) and a missing key is ErrRecovering during the grace, as
// after a whole restart; once the owner's Keep put them back, every key
// names its owner again.
func TestRedisClusterStoreOneMasterLost(t *testing.T) {
	rc := testenv.StartRedisCluster(t)
	rdb := rc.Client(t)
	ctx := context.Background()
	o := NewRedisStore(rdb, RedisStoreOptions{TTL: 5 * time.Second, RecoveryGrace: 300 * time.Millisecond})
	const a = "http://a"
	keys, full := sessionKeys("m", 60)
	if m := rc.Masters(t, full...); len(m) != 3 {
		t.Fatalf("keys on masters %v, want all three", m)
	}
	g1, err := o.Generation(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		if got, err := o.Claim(ctx, k, a, ""); err != nil || got != a {
			t.Fatalf("a claims %s: %q %v", k, got, err)
		}
	}
	// The master to lose: one that holds session keys and not the
	// single-Redis generation key.
	genMaster := rc.Masters(t, DefaultKeyPrefix+"{gen}")
	var victim string
	for addr := range rc.Masters(t, full...) {
		if !genMaster[addr] {
			victim = addr
			break
		}
	}
	var lostKeys []string
	for i, k := range full {
		if rc.Masters(t, k)[victim] {
			lostKeys = append(lostKeys, keys[i])
		}
	}
	vc := redis.NewClient(&redis.Options{Addr: victim})
	defer vc.Close()
	if err := vc.FlushAll(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	g2, err := o.Generation(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if g2 == g1 {
		t.Fatalf("generation %q unchanged after master %s lost its data: the owners would not put their records back", g1, victim)
	}
	if _, err := o.Owner(ctx, lostKeys[0]); !errors.Is(err, ErrRecovering) {
		t.Fatalf("Owner of %s, lost with its master, during the grace: %v, want ErrRecovering", lostKeys[0], err)
	}
	if _, err := o.Claim(ctx, lostKeys[0], "http://b", ""); !errors.Is(err, ErrRecovering) {
		t.Fatalf("Claim of %s during the grace: %v, want ErrRecovering", lostKeys[0], err)
	}
	if again, err := o.Keep(ctx, keys, a); err != nil || len(again) != 0 {
		t.Fatalf("a's Keep after the loss: %v %v", again, err)
	}
	waitGrace(t, o)
	for _, k := range keys {
		if owner, err := o.Owner(ctx, k); err != nil || owner != a {
			t.Fatalf("owner of %s after the put-back: %q %v", k, owner, err)
		}
	}
}

// refuseShards answers CLUSTER SHARDS with an error reply, as Redis 6
// does (it has no such subcommand), without sending it.
type refuseShards struct{}

type replyError string

func (e replyError) Error() string { return string(e) }
func (replyError) RedisError()     {}

func (refuseShards) DialHook(next redis.DialHook) redis.DialHook { return next }
func (refuseShards) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if args := cmd.Args(); len(args) > 1 && cmd.Name() == "cluster" && fmt.Sprint(args[1]) == "shards" {
			err := replyError("ERR unknown subcommand 'shards'. Try CLUSTER HELP.")
			cmd.SetErr(err)
			return err
		}
		return next(ctx, cmd)
	}
}
func (refuseShards) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

// TestRedisClusterStoreBefore7: where Redis does not know CLUSTER SHARDS
// (Redis 6), the store finds the masters' generation keys from CLUSTER
// SLOTS, the same keys.
func TestRedisClusterStoreBefore7(t *testing.T) {
	rc := testenv.StartRedisCluster(t)
	ctx := context.Background()
	want, err := NewRedisStore(rc.Client(t), RedisStoreOptions{}).genKeys(ctx, true)
	if err != nil || len(want) != 3 {
		t.Fatalf("generation keys from CLUSTER SHARDS: %v %v, want three", want, err)
	}
	old := rc.Client(t)
	old.AddHook(refuseShards{})
	if _, err := old.ClusterShards(ctx).Result(); err == nil {
		t.Fatal("the hook let CLUSTER SHARDS through")
	}
	got, err := NewRedisStore(old, RedisStoreOptions{}).genKeys(ctx, true)
	if err != nil || !slices.Equal(got, want) {
		t.Fatalf("generation keys from CLUSTER SLOTS: %v %v, want %v", got, err, want)
	}
}
