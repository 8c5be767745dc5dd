package transport

import (
	"bytes"
	"net/http"

	"github.com/sockjsd/sockjsd/internal/engine"
	"github.com/sockjsd/sockjsd/session"
)

// xhr-polling, xhr-streaming and xhr_send: the CORS-capable XHR transports.

func encodeXHR(dst []byte, f *engine.Frame) []byte {
	return append(appendFrame(dst, f), '\n')
}

func (h *Handler) xhrPolling(w http.ResponseWriter, r *http.Request, sid string) {
	if r.Method == http.MethodOptions {
		h.preflight(w, r, "OPTIONS, POST")
		return
	}
	if !allowMethods(w, r, "POST", "OPTIONS") || !h.cors(w, r) {
		return
	}
	h.setCookie(w, r)
	noCache(w)
	setHeader(w.Header(), "Content-Type", hdrJavaScript)
	s := h.sessionFor(w, r, sid, session.XHRPolling)
	if s == nil {
		return
	}
	h.serve(s, h.newPollReceiver(w, r, session.XHRPolling, encodeXHR))
}

// xhrPrelude: 2 KiB of 'h' so that old browsers start delivering progress
// events before the first real frame.
var xhrPrelude = append(bytes.Repeat([]byte{'h'}, 2048), '\n')

func (h *Handler) xhrStreaming(w http.ResponseWriter, r *http.Request, sid string) {
	if r.Method == http.MethodOptions {
		h.preflight(w, r, "OPTIONS, POST")
		return
	}
	if !allowMethods(w, r, "POST", "OPTIONS") || !h.cors(w, r) {
		return
	}
	h.setCookie(w, r)
	s := h.sessionFor(w, r, sid, session.XHRStreaming)
	if s == nil {
		return
	}
	h.stream(w, r, s, session.XHRStreaming, "application/javascript; charset=UTF-8", encodeXHR, xhrPrelude)
}

// serve runs a receiver to completion, counted for Shutdown.
func (h *Handler) serve(s *engine.Session, rcv engine.Receiver) {
	h.active.Add(1)
	defer h.active.Add(-1)
	s.Serve(rcv)
}

func (h *Handler) xhrSend(w http.ResponseWriter, r *http.Request, sid string) {
	if r.Method == http.MethodOptions {
		h.preflight(w, r, "OPTIONS, POST")
		return
	}
	if !allowMethods(w, r, "POST", "OPTIONS") || !h.cors(w, r) {
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
	if !h.deliver(w, r, s, body) {
		return
	}
	// Firefox treats a body-less answer without a type as XML and
	// complains, so the 204 carries text/plain.
	setHeader(w.Header(), "Content-Type", hdrTextPlain)
	w.WriteHeader(http.StatusNoContent)
}

// deliver decodes a send payload and hands its messages to the session.
// Bad payloads get the protocol's 500 answers.
func (h *Handler) deliver(w http.ResponseWriter, r *http.Request, s *engine.Session, payload []byte) bool {
	err := deliverPayload(r.Context(), h, s, payload) // decode_stream.go
	if err == ErrBrokenJSON || err == ErrNoPayload {
		h.log.Debug("sockjs: bad send payload", "prefix", h.prefix, "err", err)
		plainError(w, http.StatusInternalServerError, err.Error())
		return false
	}
	// A closed session drops what it is sent, as a closed websocket does.
	h.delivered(s, err)
	return true
}
