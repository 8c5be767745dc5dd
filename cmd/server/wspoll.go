package main

import (
	"flag"

	"github.com/sockjsd/sockjsd/transport"
)

// WSReadConfig chooses how websocket and streaming connections are read
// (transport/wspoll.go, streampoll.go): parked in the kernel's poller
// while idle, or on a goroutine each.
type WSReadConfig struct {
	Goroutines bool
}

func (c *WSReadConfig) register(fs *flag.FlagSet) {
	fs.BoolVar(&c.Goroutines, "reader-goroutines", false, "keep a goroutine reading every websocket and watching every streaming answer's connection; false: on a plain TCP connection they wait in the kernel's poller while the client sends nothing, with no goroutine and no read buffer (TLS, PROXY-protocol and Hixie-76 connections keep their goroutine either way)")
}

func (c WSReadConfig) apply(o *transport.Options) {
	o.ReaderGoroutines = c.Goroutines
}
