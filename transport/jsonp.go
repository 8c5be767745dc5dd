package transport

import (
	"github.com/sockjsd/sockjsd/internal/engine"
	"io"
	"mime"
	"net/http"

	"github.com/sockjsd/sockjsd/session"
)

// jsonp-polling (GET <session>/jsonp?c=callback) and jsonp_send.

// maxCallback bounds the callback name; real clients use ~30 characters.
const maxCallback = 256

// callback returns the validated "c" query parameter, answering 500 as the
// protocol requires when it is missing or has characters outside
// [a-zA-Z0-9_.] (anything else could inject script into the response).
func (h *Handler) callback(w http.ResponseWriter, r *http.Request) (string, bool) {
	c := r.URL.Query().Get("c")
	if c == "" {
		plainError(w, http.StatusInternalServerError, `"callback" parameter required`)
		return "", false
	}
	if !validCallback(c) {
		h.log.Info("sockjs: invalid callback refused", "prefix", h.prefix)
		plainError(w, http.StatusInternalServerError, `invalid "callback" parameter`)
		return "", false
	}
	return c, true
}

func validCallback(c string) bool {
	if len(c) > maxCallback {
		return false
	}
	for i := 0; i < len(c); i++ {
		b := c[i]
		if !(b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9' || b == '_' || b == '.') {
			return false
		}
	}
	return true
}

func (h *Handler) jsonp(w http.ResponseWriter, r *http.Request, sid string) {
	if !allowMethods(w, r, "GET") {
		return
	}
	noCache(w)
	cb, ok := h.callback(w, r)
	if !ok {
		return
	}
	h.setCookie(w, r)
	setHeader(w.Header(), "Content-Type", hdrJavaScript)
	// The body is script chosen partly by the client (the callback):
	// browsers must not sniff it as anything else.
	setHeader(w.Header(), "X-Content-Type-Options", hdrNoSniff)
	s := h.sessionFor(w, r, sid, session.JSONPPolling)
	if s == nil {
		return
	}
	// "/**/" defeats content-sniffing attacks that start a response with
	// attacker-chosen bytes (Rosetta Flash).
	enc := func(dst []byte, f *engine.Frame) []byte {
		dst = append(dst, "/**/"...)
		dst = append(dst, cb...)
		dst = append(dst, '(')
		dst = appendQuotedFrame(dst, f, false)
		return append(dst, ");\r\n"...)
	}
	h.serve(s, h.newPollReceiver(w, r, session.JSONPPolling, enc))
}

// appendQuotedFrame appends f's protocol encoding as a JavaScript string.
func appendQuotedFrame(dst []byte, f *engine.Frame, html bool) []byte {
	bp := bufPool.Get().(*[]byte)
	inner := appendFrame((*bp)[:0], f)
	dst = appendQuoted(dst, string(inner), html)
	*bp = inner[:0]
	bufPool.Put(bp)
	return dst
}

func (h *Handler) jsonpSend(w http.ResponseWriter, r *http.Request, sid string) {
	if !allowMethods(w, r, "POST") {
		return
	}
	h.setCookie(w, r)
	noCache(w)
	s := h.reg.Get(sid)
	if s == nil {
		notFound(w)
		return
	}
	body, held, ok := h.readBody(w, r, s) // body.go
	if !ok {
		return
	}
	defer held.release()
	// The client posts a form (d=<payload>) from a hidden iframe; other
	// clients may post the payload as is.
	payload := body
	if ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); ct == "application/x-www-form-urlencoded" {
		d, err := formValueInPlace(body, "d")
		if err != nil {
			plainError(w, http.StatusInternalServerError, ErrBrokenJSON.Error())
			return
		}
		payload = d
	}
	if !h.deliver(w, r, s, payload) {
		return
	}
	// Konqueror mishandles 204, hence 200 "ok".
	setHeader(w.Header(), "Content-Type", hdrTextPlain)
	_, _ = io.WriteString(w, "ok")
}
