package main

import (
	"flag"

	"github.com/sockjsd/sockjsd/transport"
)

// LimitConfig holds the flags of the limits that bound what one client can
// make the server hold (issue 9). Like every flag, each has a SOCKJSD_*
// environment variable.
type LimitConfig struct {
	MaxIDBytes int
}

func (l *LimitConfig) register(fs *flag.FlagSet) {
	fs.IntVar(&l.MaxIDBytes, "max-id-bytes", transport.DefaultMaxIDBytes, "longest server or session id in a session URL (longer: 404)")
}

func (l LimitConfig) apply(o *transport.Options) {
	o.MaxIDBytes = l.MaxIDBytes
}
