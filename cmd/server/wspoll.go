package main

import (
	"flag"

	"github.com/sockjsd/sockjsd/transport"
)

// WSReadConfig chooses how websocket connections are read
// (transport/wspoll.go): parked in the kernel's poller while idle, or on
// a goroutine each.
type WSReadConfig struct {
	Goroutines bool
}

func (c *WSReadConfig) register(fs *flag.FlagSet) {
	fs.BoolVar(&c.Goroutines, "websocket-reader-goroutines", false, "keep a reader goroutine on every websocket connection; false: a plain TCP websocket waits in the kernel's poller while its client sends nothing, with no goroutine and no read buffer (TLS, PROXY-protocol and Hixie-76 connections keep their goroutine either way)")
}

func (c WSReadConfig) apply(o *transport.Options) {
	o.WebSocketReaderGoroutines = c.Goroutines
}
