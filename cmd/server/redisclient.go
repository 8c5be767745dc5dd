package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"
)

// Schemes of -redis URLs naming a Redis Cluster rather than one server.
const (
	redisClusterScheme    = "redis+cluster"
	redisClusterTLSScheme = "rediss+cluster"
)

// errRedisURL is what a malformed -redis says. The URL may hold a
// password: errors say what is wrong with it, never what it is.
var errRedisURL = errors.New("-redis: not a redis:// or rediss:// URL (one server, such as redis://host:6379/0) " +
	"nor a redis+cluster:// or rediss+cluster:// URL (a Redis Cluster, such as redis+cluster://host1:6379,host2:6379)")

// newRedisClient builds the client of -redis: one server for redis:// and
// rediss:// (go-redis's ParseURL: database, timeouts and pool options in
// the query), a Redis Cluster for redis+cluster:// and rediss+cluster://
// (go-redis's ParseClusterURL, with the seed nodes comma-separated in the
// host part). Every user of -redis builds its client here, so that all of
// them reach the same Redis the same way. where says which Redis, for
// logs, without credentials.
//
// Both clients set ContextTimeoutEnabled: a command waiting for Redis's
// answer ends at its context's deadline (a store call's StoreTimeout, a
// readiness check's second), not only at the URL's read_timeout. Without
// it go-redis bounds the read by read_timeout alone (never with
// read_timeout=-1), and each retry on a fresh connection waits again.
// Nothing here sends a blocking command (BLPOP, XREAD BLOCK, WAIT) whose
// wait a deadline would cut short; pub/sub reads (PubSub.ReceiveTimeout)
// take their context as it is whatever the option says.
func newRedisClient(raw string) (rdb redis.UniversalClient, where string, err error) {
	scheme, _, _ := strings.Cut(raw, "://")
	switch scheme {
	case redisClusterScheme, redisClusterTLSScheme:
		opts, err := parseRedisClusterURL(raw)
		if err != nil {
			return nil, "", err
		}
		opts.ContextTimeoutEnabled = true
		cc := redis.NewClusterClient(opts)
		// On each node's client, so that the first attempt that fails
		// asks for the reload and go-redis's own retry (after its
		// backoff, 8 ms at first) finds the new master.
		cc.OnNewNode(func(node *redis.Client) { node.AddHook(reloadOnDown{cc}) })
		return cc, "cluster " + strings.Join(opts.Addrs, ","), nil
	case "redis", "rediss", "unix":
	default:
		return nil, "", errRedisURL
	}
	opts, err := redis.ParseURL(raw)
	if err != nil {
		return nil, "", redisURLError(err)
	}
	opts.ContextTimeoutEnabled = true
	return redis.NewClient(opts), opts.Addr + "/" + strconv.Itoa(opts.DB), nil
}

// redisURLError is err for the operator: go-redis's own errors (an
// unknown option, a bad database number) name no credentials and say
// what to fix; net/url's quote the whole URL, password included, so they
// become errRedisURL.
func redisURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return errRedisURL
	}
	return fmt.Errorf("-redis: %w", err)
}

// parseRedisClusterURL turns
// redis+cluster://[user:password@]host1[:port1],host2[:port2][/][?options]
// into ParseClusterURL's form (the first host in the URL, the others as
// addr options). A port defaults to 6379. A Redis Cluster has only
// database 0, so a path naming another is an error rather than ignored.
func parseRedisClusterURL(raw string) (*redis.ClusterOptions, error) {
	scheme, rest, _ := strings.Cut(raw, "://")
	authority, tail := rest, ""
	if i := strings.IndexAny(rest, "/?#"); i >= 0 {
		authority, tail = rest[:i], rest[i:]
	}
	userinfo, hosts := "", authority
	if i := strings.LastIndexByte(authority, '@'); i >= 0 {
		userinfo, hosts = authority[:i+1], authority[i+1:]
	}
	var addrs []string
	for _, h := range strings.Split(hosts, ",") {
		if h == "" {
			return nil, errors.New("-redis: a redis+cluster URL needs host:port seeds, comma-separated, none empty")
		}
		if _, _, err := net.SplitHostPort(h); err != nil {
			h = net.JoinHostPort(strings.Trim(h, "[]"), "6379")
		}
		addrs = append(addrs, h)
	}
	path, query, _ := strings.Cut(tail, "?")
	if path != "" && path != "/" && path != "/0" {
		return nil, errors.New("-redis: a Redis Cluster has only database 0: drop the path from the redis+cluster URL")
	}
	q, err := url.ParseQuery(query)
	if err != nil {
		return nil, fmt.Errorf("-redis: the query of the redis+cluster URL: %w", err)
	}
	for _, a := range addrs[1:] {
		q.Add("addr", a)
	}
	plain := strings.TrimSuffix(scheme, "+cluster") + "://" + userinfo + addrs[0] + "?" + q.Encode()
	opts, err := redis.ParseClusterURL(plain)
	if err != nil {
		return nil, redisURLError(err)
	}
	return opts, nil
}

// reloadOnDown makes a Redis Cluster client read the slot map again when a
// connection to one of its nodes cannot be made or a command to it fails
// for want of an answer (a refused connection, a timeout, a cut
// connection): the master serving its slot may be dead and failed over to
// its replica. go-redis reloads the map on MOVED, ASK and READONLY,
// which a dead master never answers, and otherwise only every
// ClusterStateReloadInterval (60 s), sending that master's slots to it
// meanwhile; every store call, publish and directory call on those slots
// failed for that long after a failover that took Redis 2 s
// (e2e/cluster TestClusterRedisClusterFailover). A reload is one read of
// the slot map, at most one every 200 ms (go-redis's own cooldown).
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
