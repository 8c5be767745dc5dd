package testenv

import "strings"

// protocolIframePage is the iframe page of the official protocol suite
// (sockjs-protocol.py, IframePage.iframe_body), copied here rather than
// taken from package fallback so that a change to the page we serve
// fails the tests instead of moving their expectation with it. The suite
// accepts this text byte for byte (after trimming surrounding space), with
// any client URL in src and nothing else on the script tag.
const protocolIframePage = `<!DOCTYPE html>
<html>
<head>
  <meta http-equiv="X-UA-Compatible" content="IE=edge" />
  <meta http-equiv="Content-Type" content="text/html; charset=UTF-8" />
  <script src="SOCKJS_URL"></script>
  <script>
    document.domain = document.domain;
    SockJS.bootstrap_iframe();
  </script>
</head>
<body>
  <h2>Don't panic!</h2>
  <p>This is a SockJS hidden iframe. It's used for cross domain magic.</p>
</body>
</html>`

// ProtocolIframePage is the protocol's iframe page loading the client
// from sockjsURL (a URL without characters HTML would escape).
func ProtocolIframePage(sockjsURL string) string {
	return strings.Replace(protocolIframePage, "SOCKJS_URL", sockjsURL, 1)
}

// IframePageWithIntegrity is the page we serve for a cross-origin client
// copy pinned by its Subresource Integrity hash: the protocol's page with
// integrity and crossorigin on the script tag, which the suite's IframePage
// tests reject by design.
func IframePageWithIntegrity(sockjsURL, integrity string) string {
	return strings.Replace(ProtocolIframePage(sockjsURL), `"></script>`,
		`" integrity="`+integrity+`" crossorigin="anonymous"></script>`, 1)
}
