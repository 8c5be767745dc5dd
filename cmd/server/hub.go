package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/gorilla/mux"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/sockjsd/sockjsd/hub"
	"github.com/sockjsd/sockjsd/metrics"
	"github.com/sockjsd/sockjsd/transport"
)

// HubConfig configures the pub/sub hub at /hub and its API at /api/.
type HubConfig struct {
	APIKey              string
	TokenSecret         string
	Channels            string
	BrowserPublish      string
	PublishUnsubscribed bool
	PingInterval        time.Duration
	MaxSubs             int
	MaxSubsPerAddress   int
	MaxChannels         int
	MaxDataBytes        int
	HistorySize         int
	HistoryTTL          time.Duration
	HistoryMaxBytes     int64
	PresenceTTL         time.Duration
}

func (c *HubConfig) register(fs *flag.FlagSet) {
	fs.StringVar(&c.APIKey, "hub-api-key", "", "API key backends must send to /api/ (Authorization: Bearer or X-API-Key); empty: no key")
	fs.StringVar(&c.TokenSecret, "hub-token-secret", "", "HMAC-SHA256 secret of hub tokens (JWT in the `token` query parameter), needed to subscribe and to publish; empty: no token needed")
	fs.StringVar(&c.Channels, "hub-channels", "*", "comma-separated channel name patterns that exist")
	fs.StringVar(&c.BrowserPublish, "hub-browser-publish", "chat.*", "comma-separated channel patterns browsers may publish to")
	fs.BoolVar(&c.PublishUnsubscribed, "hub-browser-publish-unsubscribed", false, "let a browser publish to a channel it is not subscribed to")
	fs.DurationVar(&c.PingInterval, "hub-ping-interval", 25*time.Second, "how often hub sessions are pinged to measure their round trip")
	fs.IntVar(&c.MaxSubs, "hub-max-subscriptions", hub.DefaultMaxSubscriptions, "channels one hub session may subscribe to")
	fs.IntVar(&c.MaxSubsPerAddress, "hub-max-subscriptions-per-address", hub.DefaultMaxSubscriptionsPerAddress, "subscriptions of all hub sessions from one client IP address together")
	fs.IntVar(&c.MaxChannels, "hub-max-channels", hub.DefaultMaxChannels, "channels with subscribers on this node")
	fs.IntVar(&c.MaxDataBytes, "hub-max-data-bytes", 64<<10, "largest data of one publish")
	fs.IntVar(&c.HistorySize, "hub-history-size", hub.DefaultHistorySize, "messages each channel keeps for subscribers that resume with since (0: none)")
	fs.DurationVar(&c.HistoryTTL, "hub-history-ttl", hub.DefaultHistoryTTL, "how long a message stays in a channel's history")
	fs.Int64Var(&c.HistoryMaxBytes, "hub-history-max-bytes", hub.DefaultMaxHistoryBytes, "bytes of history all channels keep together in memory (without -redis); the least recently published channel's goes first")
	fs.DurationVar(&c.PresenceTTL, "hub-presence-ttl", 5*time.Second, "with -redis: how long a node's subscriber counts outlive its last heartbeat")
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// hubMount is the hub as the server runs it.
type hubMount struct {
	Handlers []*transport.Handler
	// Ready reports whether the broker can serve: nil on one node; a
	// Redis round trip in cluster mode. For /readyz.
	Ready func(ctx context.Context) error
	// Close releases the broker, after the sessions are gone.
	Close func() error
}

// hubMetrics counts the hub's refusals and shows the broker's state.
type hubMetrics struct {
	*metrics.Metrics
	refused *prometheus.CounterVec
}

func (m hubMetrics) Refused(reason string) { m.refused.WithLabelValues(reason).Inc() }

// The hub finds these by type assertion: a compile-time check that the
// server's observer counts refusals and resets.
var (
	_ hub.RefusalObserver = hubMetrics{}
	_ hub.ResetObserver   = hubMetrics{}
)

// mountHub mounts the hub's SockJS service at /hub and its HTTP API at
// /api/, on the Redis broker when cfg.RedisURL is set, else in memory.
func mountHub(r *mux.Router, cfg Config, opts transport.Options, m *metrics.Metrics, reg prometheus.Registerer, log *slog.Logger) (*hubMount, error) {
	hc := cfg.Hub
	historySize := hc.HistorySize
	if historySize == 0 {
		historySize = -1 // the options' "none"
	}
	hist := hub.HistoryOptions{Size: historySize, TTL: hc.HistoryTTL}
	hm := &hubMount{Ready: func(context.Context) error { return nil }}
	var broker hub.Broker
	up := func() bool { return true }
	if cfg.RedisURL != "" {
		ropts, err := redis.ParseURL(cfg.RedisURL)
		if err != nil {
			return nil, fmt.Errorf("-redis: %w", err) // the URL may hold a password: not echoed
		}
		rdb := redis.NewClient(ropts)
		rb, err := hub.NewRedisBroker(rdb, hub.RedisBrokerOptions{History: hist, PresenceTTL: hc.PresenceTTL, Logger: log})
		if err != nil {
			return nil, err
		}
		broker, up, hm.Ready = rb, rb.Up, rb.Ping
		hm.Close = func() error { rb.Close(); return rdb.Close() }
		log.Info("hub: cluster mode, Redis broker", "redis", ropts.Addr)
	} else {
		mb := hub.NewMemoryBroker(hub.MemoryBrokerOptions{History: hist, MaxHistoryBytes: hc.HistoryMaxBytes})
		broker, hm.Close = mb, mb.Close
	}
	hmet := hubMetrics{m, prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: metrics.Namespace, Name: "hub_refused_total",
		Help: "Hub subscribes and publishes refused, by reason: session_limit, address_limit, channel_limit, forbidden.",
	}, []string{"reason"})}
	for _, r := range []string{hub.RefusedSessionLimit, hub.RefusedAddressLimit, hub.RefusedChannelLimit, hub.RefusedForbidden} {
		hmet.refused.WithLabelValues(r)
	}
	brokerUp := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: metrics.Namespace, Name: "broker_up",
		Help: "1 when the hub's broker is connected (always, in memory), 0 while Redis is unreachable.",
	}, func() float64 {
		if up() {
			return 1
		}
		return 0
	})
	if err := reg.Register(hmet.refused); err != nil {
		return nil, err
	}
	if err := reg.Register(brokerUp); err != nil {
		return nil, err
	}
	h := hub.New(hub.Options{
		Rules: hub.Rules{
			Channels:            splitList(hc.Channels),
			BrowserPublish:      splitList(hc.BrowserPublish),
			PublishUnsubscribed: hc.PublishUnsubscribed,
			TokenSecret:         []byte(hc.TokenSecret),
		},
		Broker:                     broker,
		HistorySize:                historySize,
		PingInterval:               hc.PingInterval,
		MaxSubscriptions:           hc.MaxSubs,
		MaxSubscriptionsPerAddress: hc.MaxSubsPerAddress,
		MaxChannels:                hc.MaxChannels,
		MaxDataBytes:               hc.MaxDataBytes,
		Observer:                   hmet,
		Logger:                     log,
	})
	hub.NewAPI(h, hub.APIOptions{Key: hc.APIKey}).Mount(r, "/api")
	if hc.APIKey == "" && !strings.HasPrefix(cfg.Addr, "127.") && !strings.HasPrefix(cfg.Addr, "localhost") {
		log.Warn("the hub's publish API has no key and the server listens beyond loopback: set -hub-api-key")
	}
	hm.Handlers = []*transport.Handler{transport.New("/hub", opts, h.Serve)}
	return hm, nil
}
