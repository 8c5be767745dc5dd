package transport

import (
	"net/http"
	"time"

	"github.com/sockjsd/sockjsd/session"
)

// statusRecorder remembers the status an HTTP answer had, for the
// observer. Unwrap keeps http.ResponseController (Flush, write deadlines)
// working through it.
type statusRecorder struct {
	http.ResponseWriter
	status int
	e      session.Endpoint
	start  time.Time
	// takenOver: the answer went on past the handler on its own
	// connection (stream.go), which reports it when it ends.
	takenOver bool
}

// takeOverReport marks the answer behind w as taken over from net/http
// and returns what reports it, with its whole duration, when it ends.
func (h *Handler) takeOverReport(w http.ResponseWriter) func() {
	for {
		switch x := w.(type) {
		case *statusRecorder:
			x.takenOver = true
			e, start := x.e, x.start // not x: it holds the request
			return func() { h.obs.HTTPRequest(e, http.StatusOK, time.Since(start)) }
		case interface{ Unwrap() http.ResponseWriter }:
			w = x.Unwrap()
		default:
			return func() {}
		}
	}
}

func (s *statusRecorder) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

var endpoints = map[string]session.Endpoint{
	"xhr":           session.EndpointXHR,
	"xhr_send":      session.EndpointXHRSend,
	"xhr_streaming": session.EndpointXHRStreaming,
	"eventsource":   session.EndpointEventSource,
	"htmlfile":      session.EndpointHTMLFile,
	"jsonp":         session.EndpointJSONP,
	"jsonp_send":    session.EndpointJSONPSend,
}

// observed routes a session request (endpoint e) with the answer's
// status and duration reported to the observer.
func (h *Handler) observed(w http.ResponseWriter, r *http.Request, e session.Endpoint, sid, endpoint string) {
	start := time.Now()
	rec := &statusRecorder{ResponseWriter: w, e: e, start: start}
	h.route(rec, r, sid, endpoint)
	if rec.takenOver {
		return
	}
	if rec.status == 0 {
		rec.status = http.StatusOK
	}
	h.obs.HTTPRequest(e, rec.status, time.Since(start))
}
