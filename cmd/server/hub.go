package main

import (
	"context"
	"errors"
	"flag"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/gorilla/mux"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sockjsd/sockjsd/hub"
	"github.com/sockjsd/sockjsd/internal/backend"
	"github.com/sockjsd/sockjsd/metrics"
	"github.com/sockjsd/sockjsd/transport"
)

// HubConfig configures the pub/sub hub at /hub and its API at /api/.
type HubConfig struct {
	APIKey         string
	TokenSecret    string
	Channels       string
	BrowserPublish string
	// BrowserPublishSet: -hub-browser-publish was given (flag or
	// environment), not its default.
	BrowserPublishSet   bool
	PublishUnsubscribed bool
	PingInterval        time.Duration
	MaxSubs             int
	MaxSubsPerAddress   int
	MaxChannels         int
	MaxDataBytes        int
	FanOutQueueBytes    int
	HistorySize         int
	HistoryTTL          time.Duration
	HistoryMaxBytes     int64
	PresenceTTL         time.Duration
	// Proxy is the backend's base URL for the hub's hooks (POST
	// {Proxy}/subscribe, /publish, /rpc); empty: no hooks.
	Proxy        string
	ProxySecret  string
	ProxyTimeout time.Duration
}

func (c *HubConfig) register(fs *flag.FlagSet) {
	fs.StringVar(&c.APIKey, "hub-api-key", "", "API key backends must send to /api/ (Authorization: Bearer or X-API-Key); empty: no key")
	fs.StringVar(&c.TokenSecret, "hub-token-secret", "", "HMAC-SHA256 secret of hub tokens (JWT in the `token` query parameter), needed to subscribe and to publish; empty: no token needed")
	fs.StringVar(&c.Channels, "hub-channels", "*", "comma-separated channel name patterns that exist")
	c.BrowserPublish = defaultBrowserPublish
	fs.Var(&givenString{&c.BrowserPublish, &c.BrowserPublishSet}, "hub-browser-publish", "comma-separated channel patterns browsers may publish to; beyond loopback without -hub-token-secret, anonymous browsers publish only when this is given")
	fs.BoolVar(&c.PublishUnsubscribed, "hub-browser-publish-unsubscribed", false, "let a browser publish to a channel it is not subscribed to")
	fs.DurationVar(&c.PingInterval, "hub-ping-interval", 25*time.Second, "how often hub sessions are pinged to measure their round trip")
	fs.IntVar(&c.MaxSubs, "hub-max-subscriptions", hub.DefaultMaxSubscriptions, "channels one hub session may subscribe to")
	fs.IntVar(&c.MaxSubsPerAddress, "hub-max-subscriptions-per-address", hub.DefaultMaxSubscriptionsPerAddress, "subscriptions of all hub sessions from one client IP address together")
	fs.IntVar(&c.MaxChannels, "hub-max-channels", hub.DefaultMaxChannels, "channels with subscribers on this node")
	fs.IntVar(&c.MaxDataBytes, "hub-max-data-bytes", 64<<10, "largest data of one publish")
	fs.IntVar(&c.FanOutQueueBytes, "hub-fanout-queue-bytes", hub.DefaultMaxFanOutQueueBytes, "bytes of publishes one channel may have waiting for its fan-out (data plus 128 each); past it publishing to the channel waits")
	fs.IntVar(&c.HistorySize, "hub-history-size", hub.DefaultHistorySize, "messages each channel keeps for subscribers that resume with since (0: none)")
	fs.DurationVar(&c.HistoryTTL, "hub-history-ttl", hub.DefaultHistoryTTL, "how long a message stays in a channel's history")
	fs.Int64Var(&c.HistoryMaxBytes, "hub-history-max-bytes", hub.DefaultMaxHistoryBytes, "bytes of history all channels keep together in memory (without -redis); the least recently published channel's goes first")
	fs.DurationVar(&c.PresenceTTL, "hub-presence-ttl", 5*time.Second, "with -redis: how long a node's subscriber counts outlive its last heartbeat")
	fs.StringVar(&c.Proxy, "hub-proxy", "", "backend base URL that decides hub subscribes and browser publishes and answers rpc (POST <url>/subscribe, /publish, /rpc); empty: the hub's rules alone decide")
	fs.StringVar(&c.ProxySecret, "hub-proxy-secret", "", "secret signing the hub's requests to -hub-proxy (X-Sockjsd-Signature); empty: -proxy-secret, else unsigned")
	fs.DurationVar(&c.ProxyTimeout, "hub-proxy-timeout", 5*time.Second, "bound on one -hub-proxy request; past it the subscribe or publish is refused with unavailable")
}

// defaultBrowserPublish is -hub-browser-publish's default: what the demo's
// chat needs.
const defaultBrowserPublish = "chat.*"

// givenString is a string flag that records whether it was given.
type givenString struct {
	v   *string
	set *bool
}

func (g *givenString) String() string {
	if g.v == nil {
		return ""
	}
	return *g.v
}

func (g *givenString) Set(s string) error {
	*g.v, *g.set = s, true
	return nil
}

func (g *givenString) Get() any { return *g.v }

// loopbackAddr reports whether a listen address (-addr) accepts only this
// machine's connections: a loopback IP or "localhost". A wildcard (":8081",
// "0.0.0.0:8081") or another address is beyond loopback.
func loopbackAddr(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// browserPublish is the channel patterns anonymous and token-holding
// browsers may publish to. A server reachable beyond loopback with no
// token secret would let any browser publish anonymously: only when the
// operator asked for it with -hub-browser-publish; else none, said once.
func browserPublish(cfg Config, log *slog.Logger) []string {
	hc := cfg.Hub
	if hc.TokenSecret != "" || hc.BrowserPublishSet || loopbackAddr(cfg.Addr) {
		if hc.TokenSecret == "" && !loopbackAddr(cfg.Addr) && len(splitList(hc.BrowserPublish)) > 0 {
			log.Warn("hub: anonymous browsers may publish (-hub-browser-publish without -hub-token-secret, beyond loopback)", "channels", hc.BrowserPublish)
		}
		return splitList(hc.BrowserPublish)
	}
	log.Warn("hub: browsers may not publish: the server listens beyond loopback without -hub-token-secret; give -hub-browser-publish to let anonymous browsers publish", "addr", cfg.Addr)
	return nil
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
	// Hub is the hub, for the services that subscribe their own sessions
	// to its channels (Hub.Attach).
	Hub *hub.Hub
	// APIRefused counts a request the cross-site guard of an HTTP API
	// refused, by reason (hub.RefusedOrigin, hub.RefusedContentType), in
	// sockjs_api_refused_total: for every /api, the gateway's too
	// (proxy.APIOptions.Refused).
	APIRefused func(reason string)
}

// hubMetrics counts the hub's refusals and shows the broker's state.
type hubMetrics struct {
	*metrics.Metrics
	refused *prometheus.CounterVec
}

// hookMetrics count the hub's hook calls by hook and outcome, with their
// latency. Their series are resolved up front, with -hub-proxy only, so
// that recording allocates nothing and a server without hooks shows none.
type hookMetrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	counters map[string]map[backend.Outcome]prometheus.Counter
	latency  map[string]prometheus.Observer
}

var hookOutcomes = []backend.Outcome{backend.OK, backend.Timeout, backend.Unreachable, backend.BadStatus,
	backend.BadAnswer, backend.TooLarge, backend.Busy, backend.Canceled}

func newHookMetrics() *hookMetrics {
	return &hookMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: metrics.Namespace, Name: "hub_hook_requests_total",
			Help: "Hub hook requests to -hub-proxy, by hook (subscribe, publish, rpc) and outcome (ok, timeout, unreachable, status, bad_answer, too_large, busy, canceled).",
		}, []string{"hook", "outcome"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: metrics.Namespace, Name: "hub_hook_duration_seconds",
			Help: "Duration of hub hook requests to -hub-proxy, whatever their outcome.", Buckets: metrics.LatencyBuckets,
		}, []string{"hook"}),
	}
}

// resolve makes every series, for Observe.
func (m *hookMetrics) resolve() {
	m.counters = map[string]map[backend.Outcome]prometheus.Counter{}
	m.latency = map[string]prometheus.Observer{}
	for _, h := range []string{hub.HookSubscribe, hub.HookPublish, hub.HookRPC} {
		m.counters[h] = map[backend.Outcome]prometheus.Counter{}
		for _, o := range hookOutcomes {
			m.counters[h][o] = m.requests.WithLabelValues(h, string(o))
		}
		m.latency[h] = m.duration.WithLabelValues(h)
	}
}

func (m *hookMetrics) observe(hook string, err error, d time.Duration) {
	o := backend.OutcomeOf(err) // an error not the client's (hub.ErrBadAnswer) is bad_answer
	if c := m.counters[hook][o]; c != nil {
		c.Inc()
	} else {
		m.requests.WithLabelValues(hook, string(o)).Inc() // an outcome added to backend later
	}
	if l := m.latency[hook]; l != nil {
		l.Observe(d.Seconds())
	}
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
		rdb, where, err := newRedisClient(cfg.RedisURL)
		if err != nil {
			return nil, err
		}
		rb, err := hub.NewRedisBroker(rdb, hub.RedisBrokerOptions{History: hist, PresenceTTL: hc.PresenceTTL, Logger: log})
		if err != nil {
			_ = rdb.Close()
			return nil, err
		}
		broker, up, hm.Ready = rb, rb.Up, rb.Ping
		hm.Close = func() error { rb.Close(); return rdb.Close() }
		log.Info("hub: cluster mode, Redis broker", "redis", where)
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
	apiRefused := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: metrics.Namespace, Name: "api_refused_total",
		Help: "Requests to /api refused as cross-site, by reason: origin (an Origin header not in -allowed-origins: 403), content_type (a POST not application/json: 415).",
	}, []string{"reason"})
	apiRefusedBy := map[string]prometheus.Counter{}
	for _, r := range []string{hub.RefusedOrigin, hub.RefusedContentType} {
		apiRefusedBy[r] = apiRefused.WithLabelValues(r)
	}
	hm.APIRefused = func(reason string) {
		if c := apiRefusedBy[reason]; c != nil {
			c.Inc()
		}
	}
	for _, c := range []prometheus.Collector{hmet.refused, apiRefused} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	if err := reg.Register(brokerUp); err != nil {
		return nil, err
	}
	hookm := newHookMetrics()
	for _, c := range []prometheus.Collector{hookm.requests, hookm.duration} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	var hooks hub.Hooks
	if hc.ProxySecret == "" {
		hc.ProxySecret = cfg.Proxy.Secret
	}
	if hc.Proxy != "" {
		bc, err := backend.New(backend.Options{URL: hc.Proxy, Secret: []byte(hc.ProxySecret), Timeout: hc.ProxyTimeout,
			Header: http.Header{"User-Agent": {"sockjsd-hub"}}})
		if err != nil {
			return nil, errors.New("-hub-proxy: want an http:// or https:// URL") // it may hold a password: not echoed
		}
		if hc.ProxySecret == "" {
			log.Warn("hub: -hub-proxy without -hub-proxy-secret: the backend cannot tell sockjsd's requests from anyone's")
		}
		hookm.resolve()
		hooks = hub.NewHTTPHooks(bc, hub.HTTPHooksOptions{Observe: hookm.observe})
		closeBroker := hm.Close
		hm.Close = func() error { bc.Close(); return closeBroker() }
		log.Info("hub: hooks", "timeout", bc.Timeout())
	}
	h := hub.New(hub.Options{
		Rules: hub.Rules{
			Channels:            splitList(hc.Channels),
			BrowserPublish:      browserPublish(cfg, log),
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
		MaxFanOutQueueBytes:        hc.FanOutQueueBytes,
		Hooks:                      hooks,
		Observer:                   hmet,
		Logger:                     log,
	})
	hub.NewAPI(h, hub.APIOptions{Key: hc.APIKey, AllowedOrigins: opts.AllowedOrigins, Refused: hm.APIRefused}).Mount(r, "/api")
	if hc.APIKey == "" && !loopbackAddr(cfg.Addr) {
		log.Warn("the hub's publish API has no key and the server listens beyond loopback: set -hub-api-key")
	}
	hm.Hub = h
	if cfg.RedisURL != "" && cfg.HandOff.Enabled {
		opts.HandOff = h // handoff.go: HTTP hub sessions move to another node at shutdown
	}
	hm.Handlers = []*transport.Handler{transport.New("/hub", opts, h.Serve)}
	return hm, nil
}
