package main

import (
	"flag"
	"fmt"
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
	LogLevel        string
	RedisURL        string
	Hub             HubConfig
}

func parseConfig(args []string) (Config, error) {
	var c Config
	fs := flag.NewFlagSet("server", flag.ContinueOnError)
	fs.StringVar(&c.Addr, "addr", "127.0.0.1:8081", "listen address")
	fs.IntVar(&c.ResponseLimit, "response-limit", transport.DefaultResponseLimit, "bytes a streaming response carries before it is ended so the client reconnects")
	fs.DurationVar(&c.Heartbeat, "heartbeat", session.DefaultHeartbeatDelay, "heartbeat frame interval on idle connections")
	fs.DurationVar(&c.DisconnectDelay, "disconnect-delay", session.DefaultDisconnectDelay, "how long a session without a connection is kept")
	fs.StringVar(&c.SockJSURL, "sockjs-url", "/sockjs-client/sockjs.min.js", "sockjs-client URL the iframe page loads (the server serves the pinned npm copy at /sockjs-client/)")
	fs.StringVar(&c.ClientDir, "client-dir", "web/sockjs-client", "directory of the browser side (demo page, wrapper, node_modules/sockjs-client)")
	fs.StringVar(&c.Origins, "allowed-origins", "", "comma-separated origins allowed to connect (empty: any, as the protocol requires)")
	fs.BoolVar(&c.AllowIframe, "allow-iframe-transports", false, "keep htmlfile, jsonp and iframe transports on when -allowed-origins is set")
	fs.IntVar(&c.MaxSessions, "max-sessions", session.DefaultMaxSessions, "live sessions per service")
	fs.IntVar(&c.MaxMessageBytes, "max-message-bytes", transport.DefaultMaxMessageBytes, "largest websocket message or send body from a client")
	fs.IntVar(&c.SendQueueMsgs, "send-queue-messages", session.DefaultSendQueueMessages, "messages queued for one client before it is disconnected")
	fs.IntVar(&c.SendQueueBytes, "send-queue-bytes", session.DefaultSendQueueBytes, "bytes queued for one client before it is disconnected")
	fs.IntVar(&c.RecvQueueMsgs, "recv-queue-messages", session.DefaultRecvQueueMessages, "received messages queued for the application before the client is slowed down")
	fs.DurationVar(&c.WriteTimeout, "write-timeout", transport.DefaultWriteTimeout, "longest one write to a client may take")
	fs.DurationVar(&c.ShutdownTimeout, "shutdown-timeout", 10*time.Second, "how long shutdown waits for close frames to be written")
	fs.StringVar(&c.LogLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&c.RedisURL, "redis", "", "Redis URL (redis://host:6379/0) that makes this node a cluster member; empty: one node, in memory")
	c.Hub.register(fs)

	// Environment variables set defaults; flags override them.
	var envErr error
	fs.VisitAll(func(f *flag.Flag) {
		name := "SOCKJSD_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v, ok := os.LookupEnv(name); ok {
			if err := f.Value.Set(v); err != nil && envErr == nil {
				envErr = fmt.Errorf("%s=%q: %w", name, v, err)
			}
		}
	})
	if envErr != nil {
		return c, envErr
	}
	if err := fs.Parse(args); err != nil {
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
	return transport.Options{
		Session: session.Options{
			HeartbeatDelay:    c.Heartbeat,
			DisconnectDelay:   c.DisconnectDelay,
			SendQueueMessages: c.SendQueueMsgs,
			SendQueueBytes:    c.SendQueueBytes,
			RecvQueueMessages: c.RecvQueueMsgs,
		},
		MaxSessions:           c.MaxSessions,
		ResponseLimit:         c.ResponseLimit,
		MaxMessageBytes:       c.MaxMessageBytes,
		WriteTimeout:          c.WriteTimeout,
		SockJSURL:             c.SockJSURL,
		AllowedOrigins:        origins,
		AllowIframeTransports: c.AllowIframe,
	}
}

func (c Config) logLevel() slog.Level {
	var l slog.Level
	if err := l.UnmarshalText([]byte(c.LogLevel)); err != nil {
		return slog.LevelInfo
	}
	return l
}
