package main

import (
	"flag"
	"log/slog"
	"strings"
	"time"

	"github.com/gorilla/mux"

	"github.com/sockjsd/sockjsd/hub"
	"github.com/sockjsd/sockjsd/metrics"
	"github.com/sockjsd/sockjsd/transport"
)

// HubConfig configures the pub/sub hub at /hub and its API at /api/.
type HubConfig struct {
	APIKey         string
	TokenSecret    string
	Channels       string
	BrowserPublish string
	PingInterval   time.Duration
	MaxSubs        int
	MaxDataBytes   int
}

func (c *HubConfig) register(fs *flag.FlagSet) {
	fs.StringVar(&c.APIKey, "hub-api-key", "", "API key backends must send to /api/ (Authorization: Bearer or X-API-Key); empty: no key")
	fs.StringVar(&c.TokenSecret, "hub-token-secret", "", "HMAC-SHA256 secret of subscribe tokens (JWT in the `token` query parameter); empty: no token needed")
	fs.StringVar(&c.Channels, "hub-channels", "*", "comma-separated channel name patterns that exist")
	fs.StringVar(&c.BrowserPublish, "hub-browser-publish", "chat.*", "comma-separated channel patterns browsers may publish to")
	fs.DurationVar(&c.PingInterval, "hub-ping-interval", 25*time.Second, "how often hub sessions are pinged to measure their round trip")
	fs.IntVar(&c.MaxSubs, "hub-max-subscriptions", 100, "channels one hub session may subscribe to")
	fs.IntVar(&c.MaxDataBytes, "hub-max-data-bytes", 64<<10, "largest data of one publish")
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

// mountHub mounts the hub's SockJS service at /hub and its HTTP API at
// /api/, and returns the SockJS handler for graceful shutdown.
func mountHub(r *mux.Router, cfg Config, opts transport.Options, m *metrics.Metrics, log *slog.Logger) []*transport.Handler {
	hc := cfg.Hub
	h := hub.New(hub.Options{
		Rules: hub.Rules{
			Channels:       splitList(hc.Channels),
			BrowserPublish: splitList(hc.BrowserPublish),
			TokenSecret:    []byte(hc.TokenSecret),
		},
		PingInterval:     hc.PingInterval,
		MaxSubscriptions: hc.MaxSubs,
		MaxDataBytes:     hc.MaxDataBytes,
		Observer:         m,
		Logger:           log,
	})
	hub.NewAPI(h, hub.APIOptions{Key: hc.APIKey}).Mount(r, "/api")
	if hc.APIKey == "" && !strings.HasPrefix(cfg.Addr, "127.") && !strings.HasPrefix(cfg.Addr, "localhost") {
		log.Warn("the hub's publish API has no key and the server listens beyond loopback: set -hub-api-key")
	}
	return []*transport.Handler{transport.New("/hub", opts, h.Serve)}
}
