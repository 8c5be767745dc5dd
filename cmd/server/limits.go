package main

import (
	"flag"
	"strings"
	"time"

	"github.com/sockjsd/sockjsd/session"
	"github.com/sockjsd/sockjsd/transport"
)

// LimitConfig holds the flags of the limits that bound what one client can
// make the server hold (issue 9). Like every flag, each has a SOCKJSD_*
// environment variable.
type LimitConfig struct {
	MaxIDBytes          int
	KeepHeaders         string
	MaxRequestInfoBytes int
	RecvQueueBytes      int
	MaxConcurrentSends  int
	BodyBudgetBytes     int
	BodyReadTimeout     time.Duration
	ReadHeaderTimeout   time.Duration // net/http: slow headers
	MaxHeaderBytes      int           // net/http: request line and headers
}

func (l *LimitConfig) register(fs *flag.FlagSet) {
	fs.IntVar(&l.MaxIDBytes, "max-id-bytes", transport.DefaultMaxIDBytes, "longest server or session id in a session URL (longer: 404)")
	fs.StringVar(&l.KeepHeaders, "keep-headers", strings.Join(transport.DefaultKeepHeaders(), ","), "comma-separated request headers a session keeps for the application (Cookie only with cookies exposed)")
	fs.IntVar(&l.RecvQueueBytes, "recv-queue-bytes", session.DefaultRecvQueueBytes, "bytes of received messages queued for the application before the client is slowed down (each message counts 32 bytes more)")
	fs.IntVar(&l.MaxConcurrentSends, "max-concurrent-sends", transport.DefaultMaxConcurrentSends, "xhr_send/jsonp_send requests in flight per session (more: 429)")
	fs.IntVar(&l.BodyBudgetBytes, "body-budget-bytes", transport.DefaultBodyBudgetBytes, "bytes of send bodies held at once by the whole server (a body that does not fit within -body-read-timeout: 503)")
	fs.DurationVar(&l.BodyReadTimeout, "body-read-timeout", transport.DefaultBodyReadTimeout, "longest wait for the body budget plus reading a send body (slower: 408, connection closed)")
	fs.DurationVar(&l.ReadHeaderTimeout, "read-header-timeout", 10*time.Second, "longest time to receive a request's headers (slower: connection closed)")
	fs.IntVar(&l.MaxHeaderBytes, "max-header-bytes", 64<<10, "largest request line and headers (larger: 431)")
	fs.IntVar(&l.MaxRequestInfoBytes, "max-request-info-bytes", transport.DefaultMaxRequestInfoBytes, "bytes of kept headers, query and path per session (a new session over it: 431)")
}

func (l LimitConfig) apply(o *transport.Options) {
	o.MaxIDBytes = l.MaxIDBytes
	o.KeepHeaders = []string{} // not nil: an empty flag keeps no header
	for _, k := range strings.Split(l.KeepHeaders, ",") {
		if k = strings.TrimSpace(k); k != "" {
			o.KeepHeaders = append(o.KeepHeaders, k)
		}
	}
	o.MaxRequestInfoBytes = l.MaxRequestInfoBytes
	o.Session.RecvQueueBytes = l.RecvQueueBytes
	o.MaxConcurrentSends = l.MaxConcurrentSends
	// One budget for every service: it bounds the process's memory.
	o.BodyBudget = transport.NewBodyBudget(l.BodyBudgetBytes)
	o.BodyReadTimeout = l.BodyReadTimeout
}
