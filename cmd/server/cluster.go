package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sockjsd/sockjsd/cluster"
	"github.com/sockjsd/sockjsd/transport"
)

// ClusterConfig is cluster mode's part of the config; -redis (Config.RedisURL)
// turns it on.
type ClusterConfig struct {
	Advertise string
	Secret    string
	OwnerTTL  time.Duration
	// ForwardTimeout, RecoveryGrace and StoreWait: see their flags.
	ForwardTimeout time.Duration
	RecoveryGrace  time.Duration
	StoreWait      time.Duration
}

func (c *ClusterConfig) register(fs *flag.FlagSet) {
	fs.StringVar(&c.Advertise, "cluster-advertise", "", "base URL other nodes reach this one at (default: http://<-addr>, https:// with -tls-cert, with the host name when -addr has no host)")
	fs.StringVar(&c.Secret, "cluster-secret", "", "shared secret authenticating requests between nodes; required with -redis, never logged")
	fs.DurationVar(&c.OwnerTTL, "cluster-owner-ttl", cluster.DefaultTTL, "how long a session's owner record outlives its last refresh (refreshed every third of it)")
	fs.DurationVar(&c.ForwardTimeout, "cluster-forward-timeout", cluster.DefaultForwardTimeout, "how long a session's owner may take to begin answering a forwarded request (beyond a poll's heartbeat wait); past it the client gets 504 and the session stays with its owner")
	fs.DurationVar(&c.RecoveryGrace, "cluster-recovery-grace", cluster.DefaultRecoveryGrace, "after Redis lost its records (restarted empty), how long a session id without an owner is not taken as free, so that live owners put their records back first")
	fs.DurationVar(&c.StoreWait, "cluster-store-wait", cluster.DefaultStoreWait, "how long a request for a session this node does not hold waits for Redis to say where it lives (a Redis outage, restart or failover); past it the request gets 503 rather than a second copy of the session served here")
}

// readyCheck is one condition of /readyz: nil when ready.
type readyCheck func(context.Context) error

// setupCluster turns opts into cluster mode when -redis is set and returns
// the readiness checks it adds. Without -redis it does nothing.
func setupCluster(cfg Config, opts *transport.Options, reg prometheus.Registerer, log *slog.Logger) ([]readyCheck, error) {
	if cfg.RedisURL == "" {
		return nil, nil
	}
	cc := cfg.Cluster
	if cc.Secret == "" {
		return nil, errors.New("-cluster-secret (SOCKJSD_CLUSTER_SECRET) is required with -redis")
	}
	self := cc.Advertise
	var err error
	if self == "" {
		if self, err = advertiseFromAddr(cfg.Addr, cfg.TLS.scheme()); err != nil {
			return nil, err
		}
	}
	if u, err := url.Parse(self); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("-cluster-advertise %q: want a base URL such as http://10.0.0.5:8081", self)
	}
	rdb, where, err := newRedisClient(cfg.RedisURL)
	if err != nil {
		return nil, err
	}
	ttl := cc.OwnerTTL
	if ttl <= 0 {
		ttl = cluster.DefaultTTL
	}
	node, err := cluster.New(cluster.Options{
		Store:          cluster.NewRedisStore(rdb, cluster.RedisStoreOptions{TTL: ttl, RecoveryGrace: cc.RecoveryGrace}),
		Self:           self,
		Secret:         []byte(cc.Secret),
		KeepInterval:   ttl / 3,
		ForwardTimeout: cc.ForwardTimeout,
		StoreWait:      cc.StoreWait,
		HandOffTTL:     cfg.HandOff.TTL,
		Observer:       cluster.NewMetrics(reg),
		Logger:         log,
	})
	if err != nil {
		_ = rdb.Close()
		return nil, err
	}
	opts.Cluster = node
	log.Info("cluster mode", "redis", where, "advertise", self, "owner_ttl", ttl,
		"forward_timeout", cmp.Or(cc.ForwardTimeout, cluster.DefaultForwardTimeout), "recovery_grace", cc.RecoveryGrace,
		"store_wait", cmp.Or(cc.StoreWait, cluster.DefaultStoreWait))
	return []readyCheck{cluster.Ping(rdb)}, nil
}

// advertiseFromAddr derives this node's URL from its listen address and
// scheme (https with -tls-cert: the other nodes forward to this listener).
func advertiseFromAddr(addr, scheme string) (string, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", fmt.Errorf("-addr %q: %w", addr, err)
	}
	if port == "0" || port == "" {
		return "", errors.New("-addr has no fixed port: set -cluster-advertise")
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		if host, err = os.Hostname(); err != nil {
			return "", fmt.Errorf("-addr listens on every interface and the host name is unknown (%v): set -cluster-advertise", err)
		}
	}
	return scheme + "://" + net.JoinHostPort(host, port), nil
}
