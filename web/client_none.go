//go:build !sockjsd_embed

package web

// Built without the sockjsd_embed tag: no sockjs-client inside.
var embeddedClient []byte
