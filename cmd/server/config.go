package main

import (
	"flag"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/sockjsd/sockjsd/session"
	"github.com/sockjsd/sockjsd/transport"
)

// Config is everything the server can be told. Each field is a flag, and
// an environment variable SOCKJSD_<FLAG> (upper case, '-' as '_') sets its
// default, so containers can configure it without a command line.
type Config struct {
	Addr            string
	ResponseLimit   int
	Heartbeat       time.Duration
	DisconnectDelay time.Duration
	SockJSURL       string
	ClientDir       string
	Origins         string
	AllowIframe     bool
	MaxSessions     int
	MaxMessageBytes int
	SendQueueMsgs   int
	SendQueueBytes  int
	RecvQueueMsgs   int
	WriteTimeout    time.Duration
	ShutdownTimeout time.Duration
	ReceiverWait    time.Duration
	CloseWait       time.Duration
	LogLevel        string
	TrustedProxies  string
	PingInterval    time.Duration
	Hub             HubConfig
	Exec            ExecConfig
	Proxy           ProxyConfig
	RedisURL        string
	Cluster         ClusterConfig
	HandOff         HandOffConfig // handoff.go
	Limits          LimitConfig   // limits.go
	Messages        MessageConfig // messages.go
	Conns           ConnConfig    // listener.go
	TLS             TLSConfig     // tls.go
	Drain           DrainConfig   // drain.go
	WSRead          WSReadConfig  // wspoll.go
}

func parseConfig(args []string) (Config, error) {
	return parseConfigEnv(args, os.LookupEnv)
}

// parseConfigEnv is parseConfig with the environment read through lookup
// (a container's, in the Kubernetes manifests' test).
func parseConfigEnv(args []string, lookup func(string) (string, bool)) (Config, error) {
	var c Config
	fs := flag.NewFlagSet("server", flag.ContinueOnError)
	fs.StringVar(&c.Addr, "addr", "127.0.0.1:8081", "listen address")
	fs.IntVar(&c.ResponseLimit, "response-limit", transport.DefaultResponseLimit, "bytes a streaming response carries before it is ended so the client reconnects")
	fs.DurationVar(&c.Heartbeat, "heartbeat", session.DefaultHeartbeatDelay, "heartbeat frame interval on idle connections")
	fs.DurationVar(&c.DisconnectDelay, "disconnect-delay", session.DefaultDisconnectDelay, "how long a session without a connection is kept")
	fs.StringVar(&c.SockJSURL, "sockjs-url", "", "sockjs-client URL the iframe page loads (empty: the copy built into the binary, served under each service's prefix, else the integrity-pinned CDN copy)")
	fs.StringVar(&c.ClientDir, "client-dir", "", "directory of the browser side to serve instead of the built-in copy (public/ and node_modules/sockjs-client), for editing the demo live")
	fs.StringVar(&c.Origins, "allowed-origins", "", "comma-separated origins allowed to connect (empty: any, as the protocol requires)")
	fs.BoolVar(&c.AllowIframe, "allow-iframe-transports", false, "keep htmlfile, jsonp and iframe transports on when -allowed-origins is set")
	fs.IntVar(&c.MaxSessions, "max-sessions", transport.DefaultMaxSessions, "live sessions per service")
	fs.IntVar(&c.MaxMessageBytes, "max-message-bytes", transport.DefaultMaxMessageBytes, "largest websocket message or send body from a client")
	fs.IntVar(&c.SendQueueMsgs, "send-queue-messages", session.DefaultSendQueueMessages, "messages queued for one client before it is disconnected")
	fs.IntVar(&c.SendQueueBytes, "send-queue-bytes", session.DefaultSendQueueBytes, "bytes queued for one client before it is disconnected")
	fs.IntVar(&c.RecvQueueMsgs, "recv-queue-messages", session.DefaultRecvQueueMessages, "received messages queued for the application before the client is slowed down")
	fs.DurationVar(&c.WriteTimeout, "write-timeout", transport.DefaultWriteTimeout, "longest one write to a client may take")
	fs.DurationVar(&c.ShutdownTimeout, "shutdown-timeout", 10*time.Second, "how long shutdown waits for close frames to be written")
	fs.DurationVar(&c.ReceiverWait, "receiver-wait", session.DefaultReceiverWait, "how long a second receiving request waits for the attached one to go before it gets 2010")
	fs.DurationVar(&c.CloseWait, "ws-close-wait", transport.DefaultCloseWait, "how long a websocket stays open after the server's close frame, waiting for the client's")
	fs.StringVar(&c.TrustedProxies, "trusted-proxies", "", "comma-separated CIDRs (or addresses) of proxies whose X-Forwarded-For, X-Real-IP or PROXY protocol header (v1, v2) gives the client's address; from any other peer those headers are ignored, and a PROXY header closes the connection (empty: trust none)")
	fs.StringVar(&c.LogLevel, "log-level", "info", "debug, info, warn or error")
	fs.DurationVar(&c.PingInterval, "ping-interval", 5*time.Second, "how often the demo page's echo service (/demo) pings each session in-band to measure the browser's round trip (sockjsd.js answers; sockjs_ping_rtt_seconds); 0: off. /hub uses -hub-ping-interval")
	c.Hub.register(fs)
	c.Exec.register(fs)
	c.Proxy.register(fs)
	fs.StringVar(&c.RedisURL, "redis", "", "Redis URL that makes this node a cluster member: redis://host:6379/0 (one server) or redis+cluster://host1:6379,host2:6379 (a Redis Cluster); empty: one node")
	c.Cluster.register(fs)
	c.HandOff.register(fs)
	c.Limits.register(fs)
	c.Messages.register(fs)
	c.Conns.register(fs)
	c.TLS.register(fs)
	c.Drain.register(fs)
	c.WSRead.register(fs)

	// Environment variables set defaults; flags override them.
	if err := parseFlags(fs, args, lookup, helpOutput); err != nil {
		return c, err
	}
	if err := c.TLS.check(); err != nil {
		return c, err
	}
	if err := c.Messages.check(c.MaxMessageBytes); err != nil {
		return c, err
	}
	return c, nil
}

// transportOptions turns the config into the library's options.
func (c Config) transportOptions() transport.Options {
	var origins []string
	for _, o := range strings.Split(c.Origins, ",") {
		if o = strings.TrimSpace(o); o != "" {
			origins = append(origins, o)
		}
	}
	o := transport.Options{
		Session: session.Options{
			HeartbeatDelay:    c.Heartbeat,
			DisconnectDelay:   c.DisconnectDelay,
			SendQueueMessages: c.SendQueueMsgs,
			SendQueueBytes:    c.SendQueueBytes,
			RecvQueueMessages: c.RecvQueueMsgs,
			ReceiverWait:      c.ReceiverWait,
		},
		MaxSessions:           c.MaxSessions,
		ResponseLimit:         c.ResponseLimit,
		MaxMessageBytes:       c.MaxMessageBytes,
		WriteTimeout:          c.WriteTimeout,
		CloseWait:             c.CloseWait,
		SockJSURL:             c.SockJSURL,
		AllowedOrigins:        origins,
		AllowIframeTransports: c.AllowIframe,
	}
	c.Limits.apply(&o)
	c.Messages.apply(&o)
	c.WSRead.apply(&o)
	o.MaxHandOffBytes = c.HandOff.MaxBytes
	return o
}

// trustedProxies is the parsed -trusted-proxies; parseFlags has refused
// a malformed value.
func (c Config) trustedProxies() trustedProxies {
	t, _ := parseTrustedProxies(c.TrustedProxies)
	return t
}

// logLevel is the parsed -log-level; parseFlags has refused any other
// value than the four levels.
func (c Config) logLevel() slog.Level {
	l, _ := parseLogLevel(c.LogLevel)
	return l
}
