package hub

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"

	"github.com/gorilla/mux"
)

// APIOptions configure the backend HTTP API.
type APIOptions struct {
	// Key, when set, is required on every request, as
	// "Authorization: Bearer <key>" or "X-API-Key: <key>".
	Key string
	// MaxBodyBytes bounds a request body. Default 1 MiB.
	MaxBodyBytes int64
	// MaxBroadcastChannels bounds one broadcast. Default 1000.
	MaxBroadcastChannels int
	// AllowedOrigins are the origins ("https://app.example.com", "*"
	// for any, "https://*.example.com" for its subdomains) whose web
	// pages may call the API. A request carrying another Origin header
	// is refused with 403 before anything else is read. Empty: every
	// request with an Origin header is refused, since backends send
	// none and a browser always does on a cross-site POST.
	AllowedOrigins []string
	// Refused, when set, is told of each request refused by the
	// cross-site guard: RefusedOrigin or RefusedContentType.
	Refused func(reason string)
}

// Reasons the API's cross-site guard refuses a request, for
// APIOptions.Refused.
const (
	// RefusedOrigin: an Origin header not in APIOptions.AllowedOrigins
	// (403).
	RefusedOrigin = "origin"
	// RefusedContentType: a POST whose Content-Type is not
	// application/json (or missing): the kinds of body a web page can
	// send cross-site without a CORS preflight (415).
	RefusedContentType = "content_type"
)

// API is the HTTP API backends publish through.
type API struct {
	hub  *Hub
	opts APIOptions
}

// NewAPI returns the API of h.
func NewAPI(h *Hub, opts APIOptions) *API {
	if opts.MaxBodyBytes <= 0 {
		opts.MaxBodyBytes = 1 << 20
	}
	if opts.MaxBroadcastChannels <= 0 {
		opts.MaxBroadcastChannels = 1000
	}
	return &API{hub: h, opts: opts}
}

// Mount registers the API's routes under prefix (for example "/api").
func (a *API) Mount(r *mux.Router, prefix string) {
	r.Handle(prefix+"/publish", a.guard(http.MethodPost, a.publish))
	r.Handle(prefix+"/broadcast", a.guard(http.MethodPost, a.broadcast))
	r.Handle(prefix+"/channels", a.guard(http.MethodGet, a.channels))
	r.Handle(prefix+"/presence", a.guard(http.MethodGet, a.presence))
	r.Handle(prefix+"/history", a.guard(http.MethodGet, a.history))
}

type apiError struct {
	Error   string `json:"error"`
	Message string `json:"message"`
}

// WriteJSON answers status with v as JSON, not cached: how the backend
// APIs answer.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// Fail answers an API error: {"error":code,"message":msg}.
func Fail(w http.ResponseWriter, status int, code, msg string) {
	WriteJSON(w, status, apiError{code, msg})
}

// guard checks the method, the API key, the request's origin and content
// type.
func (a *API) guard(method string, next http.HandlerFunc) http.Handler {
	return Guard(method, a.opts.Key, a.opts.AllowedOrigins, a.opts.Refused, next)
}

// Guard is the door of an HTTP API meant for backends (the hub's API, the
// gateway's server API): it answers 405 to another method than method;
// when key is set, 401 without "Authorization: Bearer <key>" or
// "X-API-Key: <key>" and 403 with a wrong one (compared in constant time);
// then CrossSite's checks. Errors are JSON, as the API's are.
func Guard(method, key string, allowedOrigins []string, refused func(reason string), next http.Handler) http.Handler {
	checked := CrossSite(allowedOrigins, refused, next)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != method {
			w.Header().Set("Allow", method)
			Fail(w, http.StatusMethodNotAllowed, "method_not_allowed", "use "+method)
			return
		}
		if key != "" {
			got := r.Header.Get("X-API-Key")
			if auth := r.Header.Get("Authorization"); strings.HasPrefix(auth, "Bearer ") {
				got = strings.TrimPrefix(auth, "Bearer ")
			}
			if got == "" {
				w.Header().Set("WWW-Authenticate", `Bearer realm="sockjsd"`)
				Fail(w, http.StatusUnauthorized, "unauthorized", "an API key is required")
				return
			}
			if subtle.ConstantTimeCompare([]byte(got), []byte(key)) != 1 {
				Fail(w, http.StatusForbidden, "forbidden", "wrong API key")
				return
			}
		}
		checked.ServeHTTP(w, r)
	})
}

// CrossSite returns next behind the cross-site guard of an HTTP API meant
// for backends (the hub's API, the gateway's server API): what a web page
// on another site can make a browser send is refused before next reads
// anything, answered as the API's errors are, and told to refused (when
// not nil) by its reason:
//   - a request carrying an Origin header that allowedOrigins does not
//     list: 403 forbidden_origin, RefusedOrigin. Backends send no Origin;
//     a browser sends one on every cross-site POST. allowedOrigins holds
//     origins ("https://app.example.com"), "*" for any, and
//     "https://*.example.com" for the subdomains of one (any port unless
//     it names one); empty, no origin is allowed.
//   - a POST whose Content-Type is not application/json (parameters
//     aside), a missing one included: 415 unsupported_media_type,
//     RefusedContentType. Those bodies (text/plain, forms, a typeless
//     Blob) are what a page can send cross-site without a CORS preflight.
func CrossSite(allowedOrigins []string, refused func(reason string), next http.Handler) http.Handler {
	o := newOrigins(allowedOrigins)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reason := ""
		if v, ok := r.Header["Origin"]; ok && (len(v) != 1 || !o.allows(v[0])) {
			reason = RefusedOrigin
			Fail(w, http.StatusForbidden, "forbidden_origin", "requests from web pages of this origin are refused (-allowed-origins)")
		} else if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); r.Method == http.MethodPost && (err != nil || mt != "application/json") {
			reason = RefusedContentType
			Fail(w, http.StatusUnsupportedMediaType, "unsupported_media_type", "send Content-Type: application/json")
		}
		if reason == "" {
			next.ServeHTTP(w, r)
		} else if refused != nil {
			refused(reason)
		}
	})
}

// origins is a parsed list of allowed origins (see CrossSite).
type origins struct {
	any      bool
	exact    map[string]bool
	suffixes [][2]string // scheme, ".example.com[:port]"
}

func newOrigins(list []string) origins {
	o := origins{exact: map[string]bool{}}
	for _, s := range list {
		s = strings.TrimSuffix(strings.ToLower(strings.TrimSpace(s)), "/")
		if scheme, host, ok := strings.Cut(s, "://*."); ok {
			o.suffixes = append(o.suffixes, [2]string{scheme, "." + host})
		} else if s != "" {
			o.any = o.any || s == "*"
			o.exact[s] = true
		}
	}
	return o
}

// allows reports whether a request with this Origin header value may
// proceed.
func (o origins) allows(origin string) bool {
	origin = strings.ToLower(origin)
	if o.any || o.exact[origin] {
		return true
	}
	scheme, host, ok := strings.Cut(origin, "://")
	if !ok || strings.ContainsAny(host, "/@") {
		return false
	}
	for _, s := range o.suffixes {
		h := host
		if !strings.Contains(s[1], ":") {
			h, _, _ = strings.Cut(host, ":")
		}
		if scheme == s[0] && strings.HasSuffix(h, s[1]) {
			return true
		}
	}
	return false
}

// decode reads a JSON body under the size limit.
func (a *API) decode(w http.ResponseWriter, r *http.Request, v any) bool {
	return DecodeJSON(w, r, a.opts.MaxBodyBytes, v)
}

// DecodeJSON reads r's body, at most max bytes, into v. On a failure it
// answers (413 too_large, 400 bad_request or bad_json) and returns false.
func DecodeJSON(w http.ResponseWriter, r *http.Request, max int64, v any) bool {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, max))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			Fail(w, http.StatusRequestEntityTooLarge, "too_large", "body over the size limit")
		} else {
			Fail(w, http.StatusBadRequest, "bad_request", "could not read the body")
		}
		return false
	}
	if err := json.Unmarshal(body, v); err != nil {
		Fail(w, http.StatusBadRequest, "bad_json", "the body is not valid JSON: "+err.Error())
		return false
	}
	return true
}

// checkChannel answers 400 for a missing or malformed channel name and 404
// for a well-formed name no pattern allows.
func (a *API) checkChannel(w http.ResponseWriter, channel string) bool {
	switch {
	case channel == "":
		Fail(w, http.StatusBadRequest, "bad_request", "channel is required")
	case !validName.MatchString(channel):
		Fail(w, http.StatusBadRequest, "bad_channel", "channel names are 1-128 characters of A-Z a-z 0-9 _ . : -")
	case !a.hub.opts.Rules.Exists(channel):
		Fail(w, http.StatusNotFound, "unknown_channel", "no such channel: "+channel)
	default:
		return true
	}
	return false
}

// checkPublish validates one channel and its data.
func (a *API) checkPublish(w http.ResponseWriter, channel string, data json.RawMessage) bool {
	if !a.checkChannel(w, channel) {
		return false
	}
	switch {
	case len(data) == 0:
		Fail(w, http.StatusBadRequest, "bad_request", "data is required")
	case len(data) > a.hub.opts.MaxDataBytes:
		Fail(w, http.StatusRequestEntityTooLarge, "too_large", "data over the size limit")
	default:
		return true
	}
	return false
}

type published struct {
	Channel string `json:"channel"`
	Seq     uint64 `json:"seq"`
}

func (a *API) publish(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Channel string          `json:"channel"`
		Data    json.RawMessage `json:"data"`
	}
	if !a.decode(w, r, &req) || !a.checkPublish(w, req.Channel, req.Data) {
		return
	}
	seq, err := a.hub.Publish(r.Context(), req.Channel, req.Data)
	if err != nil {
		Fail(w, http.StatusServiceUnavailable, "unavailable", err.Error())
		return
	}
	WriteJSON(w, http.StatusOK, published{req.Channel, seq})
}

func (a *API) broadcast(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Channels []string        `json:"channels"`
		Data     json.RawMessage `json:"data"`
	}
	if !a.decode(w, r, &req) {
		return
	}
	if len(req.Channels) == 0 || len(req.Channels) > a.opts.MaxBroadcastChannels {
		Fail(w, http.StatusBadRequest, "bad_request", "channels must list 1 to the broadcast limit of channels")
		return
	}
	for _, ch := range req.Channels {
		if !a.checkPublish(w, ch, req.Data) {
			return
		}
	}
	out := make([]published, 0, len(req.Channels))
	for _, ch := range req.Channels {
		seq, err := a.hub.Publish(r.Context(), ch, req.Data)
		if err != nil {
			Fail(w, http.StatusServiceUnavailable, "unavailable", err.Error())
			return
		}
		out = append(out, published{ch, seq})
	}
	WriteJSON(w, http.StatusOK, map[string]any{"results": out})
}

func (a *API) channels(w http.ResponseWriter, r *http.Request) {
	chans, err := a.hub.opts.Broker.Channels(r.Context())
	if err != nil {
		Fail(w, http.StatusServiceUnavailable, "unavailable", err.Error())
		return
	}
	WriteJSON(w, http.StatusOK, map[string]any{"channels": chans})
}

func (a *API) presence(w http.ResponseWriter, r *http.Request) {
	ch := r.URL.Query().Get("channel")
	if !a.checkChannel(w, ch) {
		return
	}
	n, err := a.hub.opts.Broker.Presence(r.Context(), ch)
	if err != nil {
		Fail(w, http.StatusServiceUnavailable, "unavailable", err.Error())
		return
	}
	WriteJSON(w, http.StatusOK, map[string]any{"channel": ch, "subscribers": n})
}

type historyMessage struct {
	Seq  uint64          `json:"seq"`
	Data json.RawMessage `json:"data"`
}

// history answers GET ?channel=C&since=N&limit=L: the messages after seq
// N still held (oldest first, at most L, default and maximum the hub's
// history size), the channel's epoch and latest seq, and complete=false
// when history no longer reaches back to N.
func (a *API) history(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	ch := q.Get("channel")
	if !a.checkChannel(w, ch) {
		return
	}
	var since uint64
	if v := q.Get("since"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			Fail(w, http.StatusBadRequest, "bad_request", "since must be a sequence number")
			return
		}
		since = n
	}
	limit := a.hub.opts.HistorySize
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			Fail(w, http.StatusBadRequest, "bad_request", "limit must be a positive number")
			return
		}
		limit = min(n, limit)
	}
	hist, err := a.hub.opts.Broker.History(r.Context(), ch, since, limit)
	if err != nil {
		Fail(w, http.StatusServiceUnavailable, "unavailable", err.Error())
		return
	}
	// An incomplete history answers no messages, as documented: a
	// backend that reads only messages cannot mistake what is left after
	// a gap for everything since its seq.
	msgs := []historyMessage{}
	if hist.Complete {
		for _, m := range hist.Messages {
			msgs = append(msgs, historyMessage{m.Seq, m.Data})
		}
	}
	WriteJSON(w, http.StatusOK, map[string]any{
		"channel": ch, "epoch": hist.Epoch, "seq": hist.Seq, "complete": hist.Complete, "messages": msgs,
	})
}
