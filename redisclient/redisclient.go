// Package redisclient builds the go-redis client that sockjsd's
// Redis-backed parts take (cluster.NewRedisStore, hub.NewRedisBroker, the
// gateway's directory and webhook queue) from one URL, as the server's
// -redis flag does: one server (redis://, rediss://, unix://) or a Redis
// Cluster (redis+cluster://, rediss+cluster://, the seed nodes
// comma-separated in the host part).
//
// Two settings matter to those parts and are easy to miss when a client
// is built by hand:
//
//   - ContextTimeoutEnabled, so that a command ends at its context's
//     deadline (the owner store's StoreTimeout, a readiness check's
//     second), not only at the client's read timeout;
//   - on a Redis Cluster, following a master's failover at once
//     (FollowFailover): go-redis otherwise sends a dead master's slots to
//     the dead master for up to a minute.
//
// New sets both. An application that builds its own client calls
// FollowFailover on a *redis.ClusterClient before its first command.
package redisclient

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"
)

// Schemes of URLs naming a Redis Cluster rather than one server.
const (
	ClusterScheme    = "redis+cluster"
	ClusterTLSScheme = "rediss+cluster"
)

// ErrURL is what a malformed URL gets. The URL may hold a password:
// errors say what is wrong with it, never what it is.
var ErrURL = errors.New("not a redis:// or rediss:// URL (one server, such as redis://host:6379/0) " +
	"nor a redis+cluster:// or rediss+cluster:// URL (a Redis Cluster, such as redis+cluster://host1:6379,host2:6379)")

// New returns a client for raw: a *redis.Client for redis://, rediss://
// and unix:// (go-redis's ParseURL: database, timeouts and pool options in
// the query), a *redis.ClusterClient for redis+cluster:// and
// rediss+cluster:// (go-redis's ParseClusterURL options, the seeds
// comma-separated: redis+cluster://[user:password@]host1[:port1],host2[:port2][/][?options],
// a port defaulting to 6379). Both have ContextTimeoutEnabled; the cluster
// client follows failovers (FollowFailover).
//
// Nothing in sockjsd sends a blocking command (BLPOP, XREAD BLOCK, WAIT)
// whose wait a context's deadline would cut short; pub/sub reads
// (PubSub.ReceiveTimeout) take their context as it is whatever the option
// says.
func New(raw string) (redis.UniversalClient, error) {
	scheme, _, _ := strings.Cut(raw, "://")
	switch scheme {
	case ClusterScheme, ClusterTLSScheme:
		opts, err := parseClusterURL(raw)
		if err != nil {
			return nil, err
		}
		opts.ContextTimeoutEnabled = true
		cc := redis.NewClusterClient(opts)
		FollowFailover(cc)
		return cc, nil
	case "redis", "rediss", "unix":
	default:
		return nil, ErrURL
	}
	opts, err := redis.ParseURL(raw)
	if err != nil {
		return nil, urlError(err)
	}
	opts.ContextTimeoutEnabled = true
	return redis.NewClient(opts), nil
}

// Where says which Redis c reaches, for logs, without credentials:
// "host:port/db" for one server, "cluster host1:port1,host2:port2" (the
// seeds) for a Redis Cluster.
func Where(c redis.UniversalClient) string {
	switch c := c.(type) {
	case *redis.Client:
		o := c.Options()
		return o.Addr + "/" + strconv.Itoa(o.DB)
	case *redis.ClusterClient:
		return "cluster " + strings.Join(c.Options().Addrs, ",")
	default:
		return fmt.Sprintf("%T", c)
	}
}

// urlError is err for the operator: go-redis's own errors (an unknown
// option, a bad database number) name no credentials and say what to fix;
// net/url's quote the whole URL, password included, so they become
// ErrURL.
func urlError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ErrURL
	}
	return err
}

// parseClusterURL turns
// redis+cluster://[user:password@]host1[:port1],host2[:port2][/][?options]
// into ParseClusterURL's form (the first host in the URL, the others as
// addr options). A Redis Cluster has only database 0, so a path naming
// another is an error rather than ignored.
func parseClusterURL(raw string) (*redis.ClusterOptions, error) {
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
			return nil, errors.New("a redis+cluster URL needs host:port seeds, comma-separated, none empty")
		}
		if _, _, err := net.SplitHostPort(h); err != nil {
			h = net.JoinHostPort(strings.Trim(h, "[]"), "6379")
		}
		addrs = append(addrs, h)
	}
	path, query, _ := strings.Cut(tail, "?")
	if path != "" && path != "/" && path != "/0" {
		return nil, errors.New("a Redis Cluster has only database 0: drop the path from the redis+cluster URL")
	}
	q, err := url.ParseQuery(query)
	if err != nil {
		return nil, fmt.Errorf("the query of the redis+cluster URL: %w", err)
	}
	for _, a := range addrs[1:] {
		q.Add("addr", a)
	}
	plain := strings.TrimSuffix(scheme, "+cluster") + "://" + userinfo + addrs[0] + "?" + q.Encode()
	opts, err := redis.ParseClusterURL(plain)
	if err != nil {
		return nil, urlError(err)
	}
	return opts, nil
}
