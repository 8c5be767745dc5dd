package transport

import (
	"github.com/sockjsd/sockjsd/internal/engine"
	"net/http"

	"github.com/sockjsd/sockjsd/session"
)

// eventsource: a text/event-stream response, one "data:" event per frame.
// Frames are JSON, so they never contain the newlines or leading spaces
// that the event-stream format would mangle.

func encodeEventSource(dst []byte, f *engine.Frame) []byte {
	dst = append(dst, "data: "...)
	dst = appendFrame(dst, f)
	return append(dst, "\r\n\r\n"...)
}

func (h *Handler) eventSource(w http.ResponseWriter, r *http.Request, sid string) {
	if !allowMethods(w, r, "GET") {
		return
	}
	if !h.cors(w, r) {
		return
	}
	h.setCookie(w, r)
	s := h.sessionFor(w, r, sid, session.EventSource)
	if s == nil {
		return
	}
	// A leading newline works around an old Opera bug.
	h.stream(w, r, s, session.EventSource, "text/event-stream", encodeEventSource, []byte("\r\n"))
}
