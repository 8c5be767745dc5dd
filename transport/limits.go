package transport

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/sockjsd/sockjsd/session"
)

// Limits on what one client can make a service hold (see Options). Each
// refusal is counted by the observer (session.Observer.LimitHit) and
// logged, at most once per limit per logEvery so that a flood of bad
// requests cannot flood the log: the line after a quiet spell says how
// many were not logged.

// Defaults for the limit options.
const (
	// DefaultMaxIDBytes bounds the server and session ids in a URL.
	// sockjs-client uses 3 and 8 characters, the protocol suite a
	// 36-character UUID.
	DefaultMaxIDBytes = 64
	// DefaultMaxRequestInfoBytes bounds the headers, query, path and
	// addresses a session keeps of its opening request. Browsers send a
	// Referer of at most 4 KiB; a token in the query fits easily.
	DefaultMaxRequestInfoBytes = 8 << 10
)

func (o *Options) limitDefaults() {
	if o.MaxIDBytes <= 0 {
		o.MaxIDBytes = DefaultMaxIDBytes
	}
	if o.MaxRequestInfoBytes <= 0 {
		o.MaxRequestInfoBytes = DefaultMaxRequestInfoBytes
	}
}

const logEvery = 10 * time.Second

// limitLog remembers, per limit, when it was last logged and how many
// hits were not.
type limitLog struct {
	mu         sync.Mutex
	last       [session.NumLimits]time.Time
	suppressed [session.NumLimits]int
}

// limitHit counts a refusal and logs it (rate-limited).
func (h *Handler) limitHit(t session.Transport, l session.Limit) {
	h.obs.LimitHit(t, l)
	h.limits.mu.Lock()
	now := time.Now()
	if l >= session.NumLimits || now.Sub(h.limits.last[l]) < logEvery {
		if l < session.NumLimits {
			h.limits.suppressed[l]++
		}
		h.limits.mu.Unlock()
		return
	}
	h.limits.last[l] = now
	n := h.limits.suppressed[l]
	h.limits.suppressed[l] = 0
	h.limits.mu.Unlock()
	h.log.Warn("sockjs: limit refused a client", "prefix", h.prefix, "limit", l.String(), "transport", t.String(), "not_logged_since_last", n)
}

// logFail logs a connection closed because its client broke a rule: at
// Info, except for limits, which limitHit already logged (at most once
// per limit every logEvery), so that thousands of sockets cut at once
// by a deadline do not flood the log.
func (h *Handler) logFail(msg string, code int, why session.CloseCause) {
	level := slog.LevelInfo
	if why == session.CauseLimit {
		level = slog.LevelDebug
	}
	h.log.Log(context.Background(), level, msg, "prefix", h.prefix, "code", code, "limit", h.opts.MaxMessageBytes)
}
