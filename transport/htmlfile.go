package transport

import (
	"github.com/sockjsd/sockjsd/internal/engine"
	"net/http"
	"strings"

	"github.com/sockjsd/sockjsd/session"
)

// htmlfile: a never-ending HTML page in a hidden iframe; each frame is a
// <script> calling back into the parent page.

const htmlfileHead = `<!doctype html>
<html><head>
  <meta http-equiv="X-UA-Compatible" content="IE=edge" />
  <meta http-equiv="Content-Type" content="text/html; charset=UTF-8" />
</head><body><h2>Don't panic!</h2>
  <script>
    document.domain = document.domain;
    var c = parent.{{callback}};
    c.start();
    function p(d) {c.message(d);};
    window.onload = function() {c.stop();};
  </script>`

// htmlfilePrelude is the page head, padded past 1 KiB because some
// browsers render nothing of a page before its first kilobyte.
func htmlfilePrelude(cb string) []byte {
	head := strings.Replace(htmlfileHead, "{{callback}}", cb, 1)
	// sockjs-node's padding, byte for byte: it counts the template with
	// its 14-character placeholder, whatever the callback's length.
	pad := 1024 - (len(head) - len(cb) + len("{{ callback }}")) + 13
	if pad < 0 {
		pad = 0
	}
	return []byte(head + strings.Repeat(" ", pad) + "\r\n\r\n")
}

func encodeHTMLFile(dst []byte, f *engine.Frame) []byte {
	dst = append(dst, "<script>\np("...)
	// <, > and & are escaped so that no message can close the script
	// element early.
	dst = appendQuotedFrame(dst, f, true)
	return append(dst, ");\n</script>\r\n"...)
}

func (h *Handler) htmlFile(w http.ResponseWriter, r *http.Request, sid string) {
	if !allowMethods(w, r, "GET") {
		return
	}
	noCache(w)
	cb, ok := h.callback(w, r)
	if !ok {
		return
	}
	h.setCookie(w, r)
	s := h.sessionFor(w, r, sid, session.HTMLFile)
	if s == nil {
		return
	}
	h.stream(w, r, s, session.HTMLFile, "text/html; charset=UTF-8", encodeHTMLFile, htmlfilePrelude(cb))
}
