// Package cluster holds the Redis side of cluster mode: the session owner
// store the transport package forwards by (transport.Owners), the
// Prometheus metrics of forwarded requests, and a readiness check.
package cluster

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// Options configure Owners. Zero values mean the documented defaults.
type Options struct {
	// KeyPrefix starts every key. Default "sockjsd:owner:", so a key is
	// "sockjsd:owner:/echo/<session id>".
	KeyPrefix string
	// TTL is how long a key outlives its last refresh: how long the
	// sessions of a node that died without a word keep pointing at it
	// (requests for them meanwhile find it unreachable and treat them as
	// unknown). The transport refreshes every TTL/3. Default 30s.
	TTL time.Duration
}

// Defaults for Options.
const (
	DefaultKeyPrefix = "sockjsd:owner:"
	DefaultTTL       = 30 * time.Second
)

// Owners implements transport.Owners on Redis: one string key per HTTP
// session, holding its owner's URL, with a TTL.
type Owners struct {
	rdb    redis.UniversalClient
	prefix string
	ttl    time.Duration
}

// NewOwners returns the owner store on rdb.
func NewOwners(rdb redis.UniversalClient, o Options) *Owners {
	if o.KeyPrefix == "" {
		o.KeyPrefix = DefaultKeyPrefix
	}
	if o.TTL <= 0 {
		o.TTL = DefaultTTL
	}
	return &Owners{rdb: rdb, prefix: o.KeyPrefix, ttl: o.TTL}
}

// TTL is the keys' time to live.
func (o *Owners) TTL() time.Duration { return o.ttl }

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
	// persistence), unless another node owns it now.
	keepScript = redis.NewScript(`
local cur = redis.call('GET', KEYS[1])
if (not cur) or cur == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
end
return 0`)
	releaseScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0`)
)

// Owner returns the node owning key, or "".
func (o *Owners) Owner(ctx context.Context, key string) (string, error) {
	v, err := o.rdb.Get(ctx, o.prefix+key).Result()
	if errors.Is(err, redis.Nil) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("redis: owner of %s: %w", key, err)
	}
	return v, nil
}

// Claim makes node the owner of key unless a node other than node or
// stale owns it, and returns the owner after the call.
func (o *Owners) Claim(ctx context.Context, key, node, stale string) (string, error) {
	v, err := claimScript.Run(ctx, o.rdb, []string{o.prefix + key}, node, stale, o.ttl.Milliseconds()).Text()
	if err != nil {
		return "", fmt.Errorf("redis: claim %s: %w", key, err)
	}
	return v, nil
}

// batch bounds the commands of one pipeline.
const batch = 500

// Keep refreshes the keys node owns. One script call per key (not one
// call over many keys) keeps it valid on Redis Cluster, where keys live
// in different slots.
func (o *Owners) Keep(ctx context.Context, keys []string, node string) error {
	return o.each(ctx, keepScript, keys, node, o.ttl.Milliseconds())
}

// Release deletes the keys node still owns.
func (o *Owners) Release(ctx context.Context, keys []string, node string) error {
	return o.each(ctx, releaseScript, keys, node)
}

func (o *Owners) each(ctx context.Context, s *redis.Script, keys []string, args ...any) error {
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
		for _, k := range keys[:n] {
			s.EvalSha(ctx, pipe, []string{o.prefix + k}, args...)
		}
		if _, err := pipe.Exec(ctx); err != nil {
			return fmt.Errorf("redis: %d keys: %w", n, err)
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
