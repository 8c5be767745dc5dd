package transport

import (
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	hexenc "encoding/hex"
	"net/http"

	"github.com/sockjsd/sockjsd/fallback"
)

// ClientScriptPath is where, under its prefix, a service serves the
// sockjs-client copy it was given in Options.ClientScript.
const ClientScriptPath = "/sockjs.min.js"

// The client the iframe page loads when the application gives none:
// sockjs-client 1.6.1 from a CDN, pinned by its Subresource Integrity hash
// (the sha384 of the npm package's dist/sockjs.min.js; a test checks it
// against the installed package) so that a tampered copy never runs.
const (
	DefaultSockJSURL       = "https://cdn.jsdelivr.net/npm/sockjs-client@1.6.1/dist/sockjs.min.js"
	DefaultSockJSIntegrity = "sha384-svdnwiXBL+Js+yUneJSRFy24NgGiOfDM/vkQl/vCeVrcbYD6yW8EwPr1FnxTEZsR"
)

// Integrity is the Subresource Integrity value ("sha384-...") of a script.
func Integrity(script []byte) string {
	sum := sha512.Sum384(script)
	return "sha384-" + base64.StdEncoding.EncodeToString(sum[:])
}

// iframePage picks the client the iframe page loads: the application's URL
// as given (with its hash if it gave one), else the service's own copy
// under the prefix, else the pinned CDN copy with its integrity hash.
//
// Integrity goes only on a cross-origin copy. SRI guards against a third
// host serving other bytes; the service's own copy comes from the same
// server as the page that would carry its hash, so whoever could change
// the script could change the hash too, and the attribute buys nothing.
// Leaving it off keeps the page the protocol's page byte for byte, which
// the official suite's IframePage tests require; with the CDN default
// those three tests fail by design (docs/protocol.md).
func iframePage(prefix string, o Options) *fallback.IframePage {
	switch {
	case o.SockJSURL != "":
		return fallback.NewIframePageIntegrity(o.SockJSURL, o.SockJSIntegrity)
	case len(o.ClientScript) > 0:
		return fallback.NewIframePage(prefix + ClientScriptPath)
	default:
		return fallback.NewIframePageIntegrity(DefaultSockJSURL, DefaultSockJSIntegrity)
	}
}

// clientScript serves Options.ClientScript, cached like the iframe page
// that loads it.
type clientScript struct {
	body []byte
	etag string
}

func newClientScript(b []byte) *clientScript {
	if len(b) == 0 {
		return nil
	}
	sum := sha256.Sum256(b)
	return &clientScript{body: b, etag: `"` + hexenc.EncodeToString(sum[:8]) + `"`}
}

func (c *clientScript) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Cache-Control", fallback.CacheOneYear)
	h.Set("ETag", c.etag)
	h.Set("X-Content-Type-Options", "nosniff")
	if inm := r.Header.Get("If-None-Match"); inm == c.etag {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	h.Set("Content-Type", "application/javascript; charset=UTF-8")
	if r.Method == http.MethodHead {
		return
	}
	_, _ = w.Write(c.body)
}
