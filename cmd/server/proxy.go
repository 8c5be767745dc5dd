package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/gorilla/mux"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/sockjsd/sockjsd/directory"
	"github.com/sockjsd/sockjsd/proxy"
	"github.com/sockjsd/sockjsd/session"
	"github.com/sockjsd/sockjsd/transport"
	"github.com/sockjsd/sockjsd/webhook"
)

// ProxyConfig configures the gateway: services driven by HTTP backends
// (-proxy), the server API to their sessions, and lifecycle webhooks
// (docs/proxy.md).
type ProxyConfig struct {
	Services        multiFlag
	Secret          string
	Timeout         time.Duration
	MaxInFlight     int
	MaxPendingBytes int
	MaxAnswerBytes  int64
	Headers         string
	Webhook         string
	WebhookSecret   string
	WebhookRetryFor time.Duration
	WebhookTimeout  time.Duration
	DirectoryTTL    time.Duration
	WebhookQueueLen int
	WebhookQueueMem int64
}

func (c *ProxyConfig) register(fs *flag.FlagSet) {
	fs.Var(&c.Services, "proxy", "a SockJS service driven by an HTTP backend, '/prefix=http://backend/base' (POST base/connect, base/message, base/close); repeatable (several in SOCKJSD_PROXY: one per line)")
	fs.StringVar(&c.Secret, "proxy-secret", "", "HMAC-SHA256 secret signing every request to -proxy backends (X-Sockjsd-Signature); required with -proxy, never logged")
	fs.DurationVar(&c.Timeout, "proxy-timeout", proxy.DefaultTimeout, "how long a backend may take to answer one connect, message or close; past it the session closes with 3504")
	fs.IntVar(&c.MaxInFlight, "proxy-max-in-flight", proxy.DefaultMaxInFlight, "requests in flight to one backend at once; more wait for a slot within -proxy-timeout")
	fs.IntVar(&c.MaxPendingBytes, "proxy-max-pending-bytes", proxy.DefaultMaxPendingBytes, "bytes of one session's messages waiting for its backend; past it the session closes with 3429")
	fs.Int64Var(&c.MaxAnswerBytes, "proxy-max-answer-bytes", proxy.DefaultMaxAnswerBytes, "largest answer a backend may give; a larger one closes the session with 3502")
	fs.StringVar(&c.Headers, "proxy-headers", strings.Join(proxy.DefaultHeaders, ","), "comma-separated request headers a connect carries; listing Cookie also keeps cookies in the request")
	fs.StringVar(&c.Webhook, "webhook", "", "URL receiving lifecycle events (session.opened, session.closed, user.online, user.offline) of -proxy sessions, one signed POST each, at least once, in order per user")
	fs.StringVar(&c.WebhookSecret, "webhook-secret", "", "secret signing webhooks (empty: -proxy-secret); never logged")
	fs.DurationVar(&c.WebhookRetryFor, "webhook-retry-for", webhook.DefaultRetryFor, "how long an event is retried (with backoff) before it is dropped, counted and logged")
	fs.DurationVar(&c.DirectoryTTL, "proxy-directory-ttl", 6*time.Second, "with -redis: how long a killed node's proxied sessions stay listed before a live node closes them (session.closed 1006 \"Node lost\") and their users' offline delay starts; refreshed every third of it")
	fs.IntVar(&c.WebhookQueueLen, "webhook-queue-len", webhook.DefaultMaxQueueLen, "with -redis: events each of the 64 ordered queues in Redis holds (an event is at most about 1 KB); past it new events are dropped, counted and logged once")
	fs.Int64Var(&c.WebhookQueueMem, "webhook-queue-bytes", webhook.DefaultMaxQueueBytes, "without -redis: bytes of events waiting in memory; past it new events are dropped, counted and logged once")
	fs.DurationVar(&c.WebhookTimeout, "webhook-timeout", webhook.DefaultTimeout, "how long the webhook receiver may take to answer one event")
}

// proxyMount is the gateway as the server runs it.
type proxyMount struct {
	handlers []*transport.Handler
	gw       *proxy.Gateway
	closers  []func(context.Context) error // after the sessions: directory, webhooks
}

// shutdown waits for the close requests and webhooks of the sessions the
// services' Shutdown ended, bounded by ctx.
func (p *proxyMount) shutdown(ctx context.Context) error {
	if p == nil || p.gw == nil {
		return nil
	}
	errs := []error{p.gw.Shutdown(ctx)}
	for _, c := range p.closers {
		errs = append(errs, c(ctx))
	}
	return errors.Join(errs...)
}

// mountProxy builds one SockJS service per -proxy backend, the server API
// at /api (send, disconnect, sessions), and webhooks. In cluster mode the
// directory and the webhook queue are in Redis.
func mountProxy(r *mux.Router, cfg Config, opts transport.Options, hm *hubMount, reg prometheus.Registerer, log *slog.Logger) (*proxyMount, error) {
	pc := cfg.Proxy
	if len(pc.Services) == 0 {
		if pc.Webhook != "" {
			return nil, errors.New("-webhook needs at least one -proxy service")
		}
		return &proxyMount{}, nil
	}
	if pc.Secret == "" {
		return nil, errors.New("-proxy-secret (SOCKJSD_PROXY_SECRET) is required with -proxy")
	}
	out := &proxyMount{}
	node := ""
	var rdb redis.UniversalClient
	if cfg.RedisURL != "" {
		var err error
		if node, err = advertise(cfg); err != nil {
			return nil, err
		}
		if rdb, _, err = newRedisClient(cfg.RedisURL); err != nil {
			return nil, err
		}
		// Closed last, after the directory and the webhooks that use it.
		defer func() { out.closers = append(out.closers, func(context.Context) error { return rdb.Close() }) }()
	}

	var events webhook.Queue
	if pc.Webhook != "" {
		met := webhook.NewMetrics(reg)
		n, err := webhook.New(webhook.Options{
			URL: pc.Webhook, Secret: []byte(cmp.Or(pc.WebhookSecret, pc.Secret)),
			Timeout: pc.WebhookTimeout, RetryFor: pc.WebhookRetryFor,
			MaxQueueLen: pc.WebhookQueueLen, MaxQueueBytes: pc.WebhookQueueMem,
			Redis: rdb, Logger: log, Observer: met,
		})
		if err != nil {
			return nil, fmt.Errorf("-webhook: %w", err)
		}
		events = n
		// Shut down after the directory (deferred calls run last first:
		// this one before Redis's), which may still enqueue the last
		// sessions' events.
		defer func() { out.closers = append(out.closers, n.Shutdown) }()
		log.Info("proxy: webhooks", "queue", map[bool]string{true: "redis", false: "memory"}[rdb != nil])
	}
	var dir proxy.Directory
	switch {
	case rdb != nil:
		d, err := directory.NewRedis(rdb, directory.RedisOptions{
			Node: node, TTL: pc.DirectoryTTL, Events: events != nil, MaxQueue: pc.WebhookQueueLen, OfflineDelay: cfg.DisconnectDelay, Logger: log,
		})
		if err != nil {
			return nil, err
		}
		dir = d
		out.closers = append(out.closers, func(context.Context) error { return d.Close() })
	case events != nil:
		d := directory.NewMemory(directory.MemoryOptions{Events: events, OfflineDelay: cfg.DisconnectDelay, Logger: log})
		dir = d
		out.closers = append(out.closers, func(context.Context) error { return d.Close() })
	}

	if dropped, ok := dir.(interface{ Dropped() int64 }); ok {
		// The directory enqueues its events itself (atomically with its
		// state, in Redis): what it could not enqueue is counted here.
		if err := reg.Register(prometheus.NewCounterFunc(prometheus.CounterOpts{
			Namespace: "sockjs", Name: "directory_events_dropped_total",
			Help: "Lifecycle events the session directory could not enqueue because the webhook queue held its limit.",
		}, func() float64 { return float64(dropped.Dropped()) })); err != nil {
			return nil, err
		}
	}
	met, err := proxy.NewMetrics(reg)
	if err != nil {
		return nil, err
	}
	po := proxy.Options{
		Secret: []byte(pc.Secret), Timeout: pc.Timeout, MaxInFlight: pc.MaxInFlight,
		MaxPendingBytes: pc.MaxPendingBytes, MaxAnswerBytes: pc.MaxAnswerBytes,
		Headers: splitList(pc.Headers), Node: node, Directory: dir,
		Observer: met, Logger: log,
	}
	if po.Headers == nil {
		po.Headers = []string{}
	}
	if h := hm.Hub; h != nil {
		po.Attach = func(s *session.Session) proxy.Subscriber { return h.Attach(s) }
	}
	for _, hd := range po.Headers {
		if strings.EqualFold(hd, "Cookie") {
			opts.ExposeCookies = true // configured on purpose, as for -exec-headers
		}
	}
	gw, err := proxy.New(po)
	if err != nil {
		return nil, err
	}
	out.gw = gw
	seen := map[string]bool{}
	for _, v := range pc.Services {
		prefix, base, ok := strings.Cut(strings.TrimSpace(v), "=")
		prefix = strings.TrimSuffix(prefix, "/")
		if !ok || !strings.HasPrefix(prefix, "/") || seen[prefix] {
			return nil, fmt.Errorf("-proxy %q: want '/prefix=http://backend/base', each prefix once", redactURL(v))
		}
		seen[prefix] = true
		serve, err := gw.Service(prefix, base)
		if err != nil {
			return nil, fmt.Errorf("-proxy %s: %w", prefix, err)
		}
		so := opts
		if cfg.RedisURL != "" && cfg.HandOff.Enabled {
			// handoff.go: HTTP sessions move to another node at shutdown,
			// without a close or connect request to the backend.
			if so.HandOff, err = gw.HandOff(prefix); err != nil {
				return nil, err
			}
		}
		out.handlers = append(out.handlers, transport.New(prefix, so, serve))
		log.Info("proxy: service mounted", "prefix", prefix, "backend", redactURL(base))
	}
	// The same key and cross-site rules as the hub's API, counted in the
	// same metric.
	proxy.NewAPI(gw, proxy.APIOptions{Key: cfg.Hub.APIKey, NodeSecret: []byte(cfg.Cluster.Secret),
		AllowedOrigins: opts.AllowedOrigins, Refused: hm.APIRefused}).Mount(r, "/api")
	return out, nil
}

// advertise is this node's URL, as setupCluster computes it.
func advertise(cfg Config) (string, error) {
	if cfg.Cluster.Advertise != "" {
		return cfg.Cluster.Advertise, nil
	}
	return advertiseFromAddr(cfg.Addr, cfg.TLS.scheme())
}

// redactURL drops the password of a URL in a log line or error.
func redactURL(s string) string {
	if i := strings.Index(s, "://"); i >= 0 {
		if at := strings.Index(s[i+3:], "@"); at >= 0 {
			if slash := strings.Index(s[i+3:], "/"); slash < 0 || at < slash {
				return s[:i+3] + "xxxxx@" + s[i+3+at+1:]
			}
		}
	}
	return s
}
