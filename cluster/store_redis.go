package cluster

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sockjsd/sockjsd/internal/redisslot"
)

// RedisStoreOptions configure a RedisStore. Zero values mean the
// documented defaults.
type RedisStoreOptions struct {
	// KeyPrefix starts every key. Default "sockjsd:owner:", so a key is
	// "sockjsd:owner:/echo/<session id>".
	KeyPrefix string
	// TTL is how long a key outlives its last refresh: how long the
	// sessions of a node that died without a word keep pointing at it
	// (requests for them meanwhile find it unreachable and treat them as
	// unknown). Set Options.KeepInterval to TTL/3. Default 30s.
	TTL time.Duration
	// RecoveryGrace is how long after Redis lost the records (a restart
	// without persistence) a key without an owner is not taken as free:
	// the time every live node has to put its records back (each checks
	// every Options.CheckInterval, 500ms by default).
	// Requests for such keys wait meanwhile. Default 3s.
	RecoveryGrace time.Duration
}

// Defaults for Options.
const (
	DefaultKeyPrefix     = "sockjsd:owner:"
	DefaultTTL           = 30 * time.Second
	DefaultRecoveryGrace = 3 * time.Second
)

// RedisStore is the Store on Redis: one string key per HTTP
// session, holding its owner's URL, with a TTL.
//
// Beside the session keys it keeps a generation: a random value at
// "<prefix>{gen}" that lives as long as Redis keeps its data. Its absence
// means Redis lost every record; the first node to notice writes a new
// one and starts the recovery grace ("<prefix>{gen}:grace", expiring after
// RecoveryGrace), during which a missing key is reported as
// ErrRecovering rather than as free.
//
// On a Redis Cluster each master holds a generation of its own, at
// "<prefix>{<tag>}gen" in the lowest slot it serves, since one master
// can lose its data alone (restarted empty, without a replica): its
// records are then lost as after a whole restart, and must be put back
// before its keys are taken as free. The store's generation is those of
// every master; the grace is on while any master's is.
//
// A node that never saw a generation key (a cluster's first start, a
// master that just took its first slots) writes the first one without a
// grace: there were no records to lose, and new sessions need not wait.
type RedisStore struct {
	rdb    redis.UniversalClient
	prefix string
	ttl    time.Duration
	grace  time.Duration

	mu   sync.Mutex
	seen map[string]bool // generation keys this node read before
	gens []string        // the generation keys, as the topology was last read
}

// NewRedisStore returns the owner store on rdb.
//
// rdb should have ContextTimeoutEnabled, so that a store call ends at its
// context's deadline (Options.StoreTimeout) whatever the client's read
// timeout. A *redis.ClusterClient should also follow a master's failover
// without waiting for its periodic slot-map reload (go-redis: every 60 s,
// ClusterStateReloadInterval; sooner only on MOVED, ASK or READONLY, which
// a dead master never answers). redisclient.New builds such a client from
// a URL, as cmd/server's -redis does; redisclient.FollowFailover adds the
// failover part to a client of your own (docs/cluster.md, "Failover").
func NewRedisStore(rdb redis.UniversalClient, o RedisStoreOptions) *RedisStore {
	if o.KeyPrefix == "" {
		o.KeyPrefix = DefaultKeyPrefix
	}
	if o.TTL <= 0 {
		o.TTL = DefaultTTL
	}
	if o.RecoveryGrace <= 0 {
		o.RecoveryGrace = DefaultRecoveryGrace
	}
	return &RedisStore{rdb: rdb, prefix: o.KeyPrefix, ttl: o.TTL, grace: o.RecoveryGrace, seen: map[string]bool{}}
}

// TTL is the keys' time to live.
func (o *RedisStore) TTL() time.Duration { return o.ttl }

// Every multi-step change is a script, so it is atomic: a node never
// overwrites or deletes a key another node took over in between.
var (
	// KEYS[1] key; ARGV node, stale ("" for none), ttl ms.
	claimScript = redis.NewScript(`
local cur = redis.call('GET', KEYS[1])
if (not cur) or cur == ARGV[1] or (ARGV[2] ~= '' and cur == ARGV[2]) then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[3])
  return ARGV[1]
end
return cur`)
	// Refresh, or restore a key Redis lost (a restart without
	// persistence), unless another node owns it now; returns the owner
	// after the call.
	keepScript = redis.NewScript(`
local cur = redis.call('GET', KEYS[1])
if (not cur) or cur == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return ARGV[1]
end
return cur`)
	// KEYS gen, grace; ARGV a new generation, grace ms (0: none).
	// Returns the generation and the grace left in ms (<= 0: none),
	// writing a new generation, and starting the grace, when Redis has
	// none.
	genScript = redis.NewScript(`
local g = redis.call('GET', KEYS[1])
if not g then
  g = ARGV[1]
  redis.call('SET', KEYS[1], g)
  if tonumber(ARGV[2]) > 0 then
    redis.call('SET', KEYS[2], '1', 'PX', ARGV[2])
  end
end
return {g, redis.call('PTTL', KEYS[2])}`)
	// KEYS[1] key; ARGV node, the record (marker and state), ttl ms.
	// A key Redis lost (nil) is still this node's to hand off.
	handOffScript = redis.NewScript(`
local cur = redis.call('GET', KEYS[1])
if cur and cur ~= ARGV[1] then
  return cur
end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return ARGV[1]`)
	// KEYS[1] key; ARGV node, marker, owner ttl ms. Returns the owner
	// after the call and, when node took the key, the record's state.
	takeScript = redis.NewScript(`
local cur = redis.call('GET', KEYS[1])
if cur and string.sub(cur, 1, #ARGV[2]) == ARGV[2] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[3])
  return {ARGV[1], string.sub(cur, #ARGV[2] + 1)}
end
return {cur or '', ''}`)
	releaseScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0`)
)

// Owner returns the node owning key, or "" (RecoveringError
// during the recovery grace).
func (o *RedisStore) Owner(ctx context.Context, key string) (string, error) {
	v, err := o.rdb.Get(ctx, o.prefix+key).Result()
	if err == nil {
		return ownerOf(v), nil
	}
	if !errors.Is(err, redis.Nil) {
		return "", fmt.Errorf("redis: owner of %s: %w", key, err)
	}
	// A missing key: free, unless Redis lost it with everything else
	// and its owner has yet to put it back. A second round trip, but
	// only for ids nobody owns (new sessions, unknown ids).
	if err := o.settled(ctx); err != nil {
		return "", err
	}
	return "", nil
}

// Claim makes node the owner of key unless a node other than node or
// stale owns it, and returns the owner after the call. During the
// recovery grace it claims nothing (RecoveringError).
func (o *RedisStore) Claim(ctx context.Context, key, node, stale string) (string, error) {
	if err := o.settled(ctx); err != nil {
		return "", err
	}
	v, err := claimScript.Run(ctx, o.rdb, []string{o.prefix + key}, node, stale, o.ttl.Milliseconds()).Text()
	if err != nil {
		return "", fmt.Errorf("redis: claim %s: %w", key, err)
	}
	return ownerOf(v), nil
}

// handOffMarker starts the value of a key that holds a hand-off record;
// the session's state follows it. No node's URL starts so.
const handOffMarker = HandOffOwner + "\n"

// ownerOf is the owner a key's value names: HandOffOwner for a hand-off
// record.
func ownerOf(v string) string {
	if strings.HasPrefix(v, handOffMarker) {
		return HandOffOwner
	}
	return v
}

// HandOff implements HandOffStore: the record replaces the owner in the
// same key (one key per session, so that it works on Redis Cluster too).
func (o *RedisStore) HandOff(ctx context.Context, key, node string, state []byte, ttl time.Duration) error {
	v, err := handOffScript.Run(ctx, o.rdb, []string{o.prefix + key}, node, handOffMarker+string(state), ttl.Milliseconds()).Text()
	if err != nil {
		return fmt.Errorf("redis: hand off %s: %w", key, err)
	}
	if v != node {
		return fmt.Errorf("redis: hand off %s: %w (%s)", key, ErrNotOwner, ownerOf(v))
	}
	return nil
}

// Take implements HandOffStore.
func (o *RedisStore) Take(ctx context.Context, key, node string) ([]byte, string, error) {
	v, err := takeScript.Run(ctx, o.rdb, []string{o.prefix + key}, node, handOffMarker, o.ttl.Milliseconds()).Slice()
	if err != nil {
		return nil, "", fmt.Errorf("redis: take %s: %w", key, err)
	}
	if len(v) != 2 {
		return nil, "", fmt.Errorf("redis: take %s: unexpected answer %v", key, v)
	}
	owner, _ := v[0].(string)
	state, _ := v[1].(string)
	if owner != node {
		return nil, ownerOf(owner), nil
	}
	return []byte(state), owner, nil
}

// Generation implements Store: it reads (or, when Redis lost
// it, writes) the generation. On a Redis Cluster it reads the shards
// (CLUSTER SHARDS, Redis 7) first, and the generation is every master's,
// joined.
func (o *RedisStore) Generation(ctx context.Context) (string, error) {
	g, _, err := o.generation(ctx, true)
	return g, err
}

// generation reads every generation key (with refresh, the list of them
// too) and returns the generation and the longest grace left.
func (o *RedisStore) generation(ctx context.Context, refresh bool) (string, time.Duration, error) {
	keys, err := o.genKeys(ctx, refresh)
	if err != nil {
		return "", 0, err
	}
	if len(keys) == 1 { // one Redis
		g, left, err := o.generationOf(ctx, keys[0])
		return g, left, err
	}
	// One script per key, all at once: on a Redis Cluster each key is
	// on a master of its own, and a lookup of a session that is not
	// there and every claim wait for this, so N masters cost one round
	// trip rather than N.
	gens := make([]string, len(keys))
	lefts := make([]time.Duration, len(keys))
	errs := make([]error, len(keys))
	var wg sync.WaitGroup
	for i, gen := range keys {
		wg.Add(1)
		go func() {
			defer wg.Done()
			gens[i], lefts[i], errs[i] = o.generationOf(ctx, gen)
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return "", 0, err // the first: a Redis down fails them all alike
		}
	}
	return strings.Join(gens, ","), slices.Max(lefts), nil
}

// generationOf reads (or writes) one generation key and its grace left.
func (o *RedisStore) generationOf(ctx context.Context, gen string) (string, time.Duration, error) {
	grace := int64(0)
	o.mu.Lock()
	if o.seen[gen] {
		grace = o.grace.Milliseconds()
	}
	o.mu.Unlock()
	v, err := genScript.Run(ctx, o.rdb, []string{gen, gen + ":grace"}, randomID(), grace).Slice()
	if err != nil {
		return "", 0, fmt.Errorf("redis: owner store generation: %w", err)
	}
	if len(v) != 2 {
		return "", 0, fmt.Errorf("redis: owner store generation: unexpected answer %v", v)
	}
	g, _ := v[0].(string)
	l, _ := v[1].(int64)
	o.mu.Lock()
	o.seen[gen] = true
	o.mu.Unlock()
	return g, time.Duration(l) * time.Millisecond, nil
}

// genKeys are the generation keys: "<prefix>{gen}" on one Redis; on a
// Redis Cluster one per master, in the lowest slot it serves, in slot
// order. refresh reads the cluster's slots again (the keep loop does,
// every CheckInterval); otherwise the keys last read serve.
func (o *RedisStore) genKeys(ctx context.Context, refresh bool) ([]string, error) {
	cc, ok := o.rdb.(*redis.ClusterClient)
	if !ok {
		return []string{o.prefix + "{gen}"}, nil
	}
	o.mu.Lock()
	keys := o.gens
	o.mu.Unlock()
	if keys != nil && !refresh {
		return keys, nil
	}
	starts, err := lowestSlots(ctx, cc)
	if err != nil {
		return nil, fmt.Errorf("redis: owner store generation: %w", err)
	}
	if len(starts) == 0 {
		return nil, errors.New("redis: owner store generation: the cluster serves no slot")
	}
	slices.Sort(starts)
	keys = make([]string, len(starts))
	for i, slot := range starts {
		keys[i] = o.prefix + "{" + redisslot.Tag(slot) + "}gen"
	}
	o.mu.Lock()
	o.gens = keys
	o.mu.Unlock()
	return keys, nil
}

// lowestSlots is the lowest slot of each shard of the cluster, from
// CLUSTER SHARDS (Redis 7), or from CLUSTER SLOTS where Redis does not
// know CLUSTER SHARDS (an error reply: Redis 6).
func lowestSlots(ctx context.Context, cc *redis.ClusterClient) ([]int, error) {
	shards, err := cc.ClusterShards(ctx).Result()
	var reply redis.Error
	if errors.As(err, &reply) {
		return lowestSlotsBefore7(ctx, cc)
	}
	if err != nil {
		return nil, fmt.Errorf("cluster shards: %w", err)
	}
	var starts []int
	for _, sh := range shards {
		if len(sh.Slots) == 0 {
			continue
		}
		lowest := sh.Slots[0].Start
		for _, r := range sh.Slots[1:] {
			lowest = min(lowest, r.Start)
		}
		starts = append(starts, int(lowest))
	}
	return starts, nil
}

// lowestSlotsBefore7 is lowestSlots from CLUSTER SLOTS: its ranges, each
// with its master first, grouped by master.
func lowestSlotsBefore7(ctx context.Context, cc *redis.ClusterClient) ([]int, error) {
	//lint:ignore SA1019 CLUSTER SHARDS, its replacement, is Redis 7 only; this serves Redis 6.
	ranges, err := cc.ClusterSlots(ctx).Result()
	if err != nil {
		return nil, fmt.Errorf("cluster slots: %w", err)
	}
	lowest := map[string]int{} // a master's ID (its address where Redis gives none) -> its lowest slot
	for _, r := range ranges {
		if len(r.Nodes) == 0 {
			continue
		}
		id := cmp.Or(r.Nodes[0].ID, r.Nodes[0].Addr)
		if cur, ok := lowest[id]; !ok || r.Start < cur {
			lowest[id] = r.Start
		}
	}
	return slices.Collect(maps.Values(lowest)), nil
}

// settled returns a RecoveringError during the recovery grace.
func (o *RedisStore) settled(ctx context.Context) error {
	_, left, err := o.generation(ctx, false)
	if err != nil {
		return err
	}
	if left > 0 {
		return &RecoveringError{Left: left}
	}
	return nil
}

func randomID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// batch bounds the commands of one pipeline.
const batch = 500

// Keep refreshes the keys node owns, restores those Redis lost, and
// returns those another node owns now. One script call per key (not one
// call over many keys) keeps it valid on Redis Cluster, where keys live
// in different slots.
func (o *RedisStore) Keep(ctx context.Context, keys []string, node string) ([]string, error) {
	var lost []string
	err := o.each(ctx, keepScript, keys, func(key string, c *redis.Cmd) {
		if v, err := c.Text(); err == nil && v != node {
			lost = append(lost, key)
		}
	}, node, o.ttl.Milliseconds())
	return lost, err
}

// Release deletes the keys node still owns.
func (o *RedisStore) Release(ctx context.Context, keys []string, node string) error {
	return o.each(ctx, releaseScript, keys, nil, node)
}

// each runs s on every key in pipelines of at most batch, handing each
// key's result to got (when not nil).
func (o *RedisStore) each(ctx context.Context, s *redis.Script, keys []string, got func(string, *redis.Cmd), args ...any) error {
	if len(keys) == 0 {
		return nil
	}
	// Load once, then EvalSha in pipelines: a pipeline cannot fall back
	// from NOSCRIPT to EVAL per command.
	if err := s.Load(ctx, o.rdb).Err(); err != nil {
		return fmt.Errorf("redis: load script: %w", err)
	}
	for len(keys) > 0 {
		n := min(len(keys), batch)
		pipe := o.rdb.Pipeline()
		cmds := make([]*redis.Cmd, n)
		for i, k := range keys[:n] {
			cmds[i] = s.EvalSha(ctx, pipe, []string{o.prefix + k}, args...)
		}
		if _, err := pipe.Exec(ctx); err != nil {
			return fmt.Errorf("redis: %d keys: %w", n, err)
		}
		if got != nil {
			for i, k := range keys[:n] {
				got(k, cmds[i])
			}
		}
		keys = keys[n:]
	}
	return nil
}

// Ping is a readiness check: Redis answers within ctx.
func Ping(rdb redis.UniversalClient) func(context.Context) error {
	return func(ctx context.Context) error {
		if err := rdb.Ping(ctx).Err(); err != nil {
			return fmt.Errorf("redis: %w", err)
		}
		return nil
	}
}
