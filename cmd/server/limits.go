package main

import (
	"flag"
	"strings"

	"github.com/sockjsd/sockjsd/transport"
)

// LimitConfig holds the flags of the limits that bound what one client can
// make the server hold (issue 9). Like every flag, each has a SOCKJSD_*
// environment variable.
type LimitConfig struct {
	MaxIDBytes          int
	KeepHeaders         string
	MaxRequestInfoBytes int
}

func (l *LimitConfig) register(fs *flag.FlagSet) {
	fs.IntVar(&l.MaxIDBytes, "max-id-bytes", transport.DefaultMaxIDBytes, "longest server or session id in a session URL (longer: 404)")
	fs.StringVar(&l.KeepHeaders, "keep-headers", strings.Join(transport.DefaultKeepHeaders(), ","), "comma-separated request headers a session keeps for the application (Cookie only with cookies exposed)")
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
}
