//go:build sockjsd_embed

package web

import _ "embed"

// The npm package's dist/sockjs.min.js, copied here by `make build`
// (web/clientdist/ is gitignored).
//
//go:embed clientdist/sockjs.min.js
var embeddedClient []byte
