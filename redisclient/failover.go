package redisclient

import (
	"context"
	"errors"
	"net"

	"github.com/redis/go-redis/v9"
)

// FollowFailover makes c read the slot map again as soon as a connection
// to one of its nodes cannot be made or a command to it fails for want of
// an answer (a refused connection, a timeout, a cut connection): the
// master serving its slot may be dead and failed over to its replica.
// go-redis reloads the map on MOVED, ASK and READONLY, which a dead master
// never answers, and otherwise only every ClusterStateReloadInterval
// (60 s), sending that master's slots to it meanwhile; every owner-store
// call, publish and directory call on those slots failed for that long
// after a failover that took Redis 2 s (e2e/cluster
// TestClusterRedisClusterFailover). A reload is one read of the slot map,
// at most one every 200 ms (go-redis's own cooldown).
//
// The hook goes on each node's client as go-redis makes it, so that the
// attempt that fails asks for the reload and go-redis's own retry of the
// command (after its backoff, 8 ms at first) finds the new master. Call it
// once, before c's first command: nodes c already made do not get it.
func FollowFailover(c *redis.ClusterClient) {
	c.OnNewNode(func(node *redis.Client) { node.AddHook(reloadOnDown{c}) })
}

// reloadOnDown is FollowFailover's hook on one node's client.
type reloadOnDown struct{ c *redis.ClusterClient }

func (h reloadOnDown) DialHook(next redis.DialHook) redis.DialHook {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		conn, err := next(ctx, network, addr)
		h.check(ctx, err)
		return conn, err
	}
}

func (h reloadOnDown) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		h.check(ctx, err)
		return err
	}
}

func (h reloadOnDown) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		err := next(ctx, cmds)
		h.check(ctx, err)
		return err
	}
}

// check asks for a reload when err says Redis did not answer: not an
// answer of Redis's own (an error reply, nil), and not the caller's
// context ending.
func (h reloadOnDown) check(ctx context.Context, err error) {
	if err == nil || ctx.Err() != nil {
		return
	}
	var reply redis.Error
	if errors.As(err, &reply) {
		return
	}
	h.c.ReloadState(context.WithoutCancel(ctx))
}
