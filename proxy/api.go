package proxy

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/mux"

	"github.com/sockjsd/sockjsd/hub"
	"github.com/sockjsd/sockjsd/internal/sign"
	"github.com/sockjsd/sockjsd/session"
)

// NodePath is where a node takes the server API's deliveries for its own
// sessions from other nodes: signed with the cluster secret, never from a
// client.
const NodePath = "/_sockjsd/gateway/deliver"

// Defaults of APIOptions.
const (
	DefaultAPIMaxBodyBytes = 1 << 20
	DefaultAPIMaxSessions  = 1000
	// nodeTolerance is how old a node-to-node delivery may be: nodes'
	// clocks agree within it, and a captured request replays within it
	// only once (its nonce is kept that long).
	nodeTolerance = 30 * time.Second
	maxNonces     = 100_000
)

// APIOptions configure the server API.
type APIOptions struct {
	// Key, when set, is required on every request, as
	// "Authorization: Bearer <key>" or "X-API-Key: <key>" (the hub API's
	// key).
	Key string
	// MaxBodyBytes bounds a request body. Default 1 MiB.
	MaxBodyBytes int64
	// MaxSessions bounds the sessions one call reaches or lists. Default
	// 1,000.
	MaxSessions int
	// NodeSecret signs deliveries to other nodes (the cluster secret).
	// Required with a Directory that spans nodes.
	NodeSecret []byte
	// NodeTransport carries deliveries to other nodes. Default: a pooled
	// transport.
	NodeTransport http.RoundTripper
	// NodeTimeout bounds one delivery to another node. Default 10s.
	NodeTimeout time.Duration
	// AllowedOrigins are the origins whose web pages may call the API
	// (hub.CrossSite, as on the hub's API: "*" for any,
	// "https://*.example.com"). A request carrying another Origin header
	// is refused with 403. Empty: every request with an Origin header is
	// refused (backends send none). A POST must be application/json (415
	// otherwise).
	AllowedOrigins []string
	// Refused, when set, is told of each request the cross-site guard
	// refused: "origin" or "content_type" (hub.RefusedOrigin,
	// hub.RefusedContentType).
	Refused func(reason string)
}

// API is the server API: a backend reaches any session or user, on any
// node, over plain HTTP.
type API struct {
	g    *Gateway
	opts APIOptions
	http *http.Client

	nonceMu sync.Mutex
	nonces  map[string]time.Time
}

// NewAPI returns g's server API.
func NewAPI(g *Gateway, opts APIOptions) *API {
	opts.MaxBodyBytes = cmp.Or(opts.MaxBodyBytes, DefaultAPIMaxBodyBytes)
	opts.MaxSessions = cmp.Or(opts.MaxSessions, DefaultAPIMaxSessions)
	opts.NodeTimeout = cmp.Or(opts.NodeTimeout, 10*time.Second)
	if opts.NodeTransport == nil {
		opts.NodeTransport = http.DefaultTransport.(*http.Transport).Clone()
	}
	return &API{g: g, opts: opts, http: &http.Client{Transport: opts.NodeTransport, Timeout: opts.NodeTimeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }},
		nonces: map[string]time.Time{}}
}

// Mount registers POST prefix/send, POST prefix/disconnect, GET
// prefix/sessions and the node-to-node NodePath.
func (a *API) Mount(r *mux.Router, prefix string) {
	r.Handle(prefix+"/send", a.guard(http.MethodPost, a.send))
	r.Handle(prefix+"/disconnect", a.guard(http.MethodPost, a.disconnect))
	r.Handle(prefix+"/sessions", a.guard(http.MethodGet, a.sessions))
	r.HandleFunc(NodePath, a.deliverFromNode)
}

// The API's door, answers and body decoding are the hub API's, so that
// one backend sees one API: hub.Guard, hub.WriteJSON, hub.Fail,
// hub.DecodeJSON.
func (a *API) guard(method string, next http.HandlerFunc) http.Handler {
	return hub.Guard(method, a.opts.Key, a.opts.AllowedOrigins, a.opts.Refused, next)
}

func (a *API) decode(w http.ResponseWriter, r *http.Request, v any) bool {
	return hub.DecodeJSON(w, r, a.opts.MaxBodyBytes, v)
}

// target is the sessions a call names: exactly one of the three.
type target struct {
	Session  string   `json:"session"`
	Sessions []string `json:"sessions"`
	User     string   `json:"user"`
}

func (t target) check(max int) error {
	n := 0
	for _, set := range []bool{t.Session != "", t.Sessions != nil, t.User != ""} {
		if set {
			n++
		}
	}
	switch {
	case n != 1:
		return errors.New(`name exactly one of "session", "sessions" or "user"`)
	case len(t.Sessions) > max:
		return fmt.Errorf("at most %d sessions per call", max)
	}
	return nil
}

type sendBody struct {
	target
	Data *string `json:"data"`
}

type disconnectBody struct {
	target
	Code   int    `json:"code"`
	Reason string `json:"reason"`
}

type countAnswer struct {
	Sessions int `json:"sessions"`
}

// Default close of POST /api/disconnect without a code.
const (
	DefaultDisconnectCode   = 4000
	DefaultDisconnectReason = "Disconnected by the backend"
)

func (a *API) send(w http.ResponseWriter, r *http.Request) {
	var b sendBody
	if !a.decode(w, r, &b) {
		return
	}
	if err := b.check(a.opts.MaxSessions); err != nil {
		hub.Fail(w, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	if b.Data == nil {
		hub.Fail(w, http.StatusBadRequest, "bad_request", `"data" (a string, the message's text) is required`)
		return
	}
	a.act(w, r, b.target, action{Op: "send", Data: *b.Data})
}

func (a *API) disconnect(w http.ResponseWriter, r *http.Request) {
	var b disconnectBody
	if !a.decode(w, r, &b) {
		return
	}
	if err := b.check(a.opts.MaxSessions); err != nil {
		hub.Fail(w, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	if b.Code == 0 {
		b.Code, b.Reason = DefaultDisconnectCode, cmp.Or(b.Reason, DefaultDisconnectReason)
	}
	if !validCode(b.Code) {
		hub.Fail(w, http.StatusBadRequest, "bad_code", "code must be 4000-4999")
		return
	}
	a.act(w, r, b.target, action{Op: "disconnect", Code: b.Code, Reason: cutReason(b.Reason)})
}

// action is what a call does to each session it names; also the body of
// a node-to-node delivery.
type action struct {
	Op       string   `json:"op"` // "send" or "disconnect"
	Sessions []string `json:"sessions"`
	Data     string   `json:"data,omitempty"`
	Code     int      `json:"code,omitempty"`
	Reason   string   `json:"reason,omitempty"`
	Nonce    string   `json:"nonce,omitempty"`
}

// act resolves t to sessions by node, acts on this node's and hands the
// others' to their nodes, in one request per node, and answers how many
// sessions it reached. Each node's part completes before the answer, so a
// backend that waits for it keeps its calls to one session in order.
func (a *API) act(w http.ResponseWriter, r *http.Request, t target, act action) {
	byNode, err := a.resolve(r.Context(), t)
	if err != nil {
		hub.Fail(w, http.StatusServiceUnavailable, "unavailable", err.Error())
		return
	}
	n := 0
	var errs []error
	for node, ids := range byNode {
		act.Sessions = ids
		if node == "" || node == a.g.opts.Node {
			n += a.apply(act)
			continue
		}
		got, err := a.toNode(r.Context(), node, act)
		n += got
		if err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 && n == 0 {
		a.g.opts.Logger.Warn("proxy api: delivery to another node failed", "err", errors.Join(errs...))
		hub.Fail(w, http.StatusBadGateway, "node_unreachable", "the sessions' node did not answer")
		return
	}
	hub.WriteJSON(w, http.StatusOK, countAnswer{n})
}

// resolve groups t's sessions by node ("" for this one).
func (a *API) resolve(ctx context.Context, t target) (map[string][]string, error) {
	out := map[string][]string{}
	ids := t.Sessions
	if t.Session != "" {
		ids = []string{t.Session}
	}
	d := a.g.opts.Directory
	if t.User != "" {
		if d == nil {
			for _, c := range a.g.local.user(t.User, a.opts.MaxSessions) {
				out[""] = append(out[""], c.id)
			}
			return out, nil
		}
		es, err := d.ByUser(ctx, t.User)
		if err != nil {
			return nil, fmt.Errorf("directory: %w", err)
		}
		for i, e := range es {
			if i == a.opts.MaxSessions {
				break
			}
			out[e.Node] = append(out[e.Node], e.ID)
		}
		return out, nil
	}
	for _, id := range ids {
		if a.g.local.get(id) != nil || d == nil {
			out[""] = append(out[""], id)
			continue
		}
		e, ok, err := d.Lookup(ctx, id)
		if err != nil {
			return nil, fmt.Errorf("directory: %w", err)
		}
		if ok {
			out[e.Node] = append(out[e.Node], id)
		}
	}
	return out, nil
}

// apply acts on this node's sessions and counts those it reached.
func (a *API) apply(act action) int {
	n := 0
	for _, id := range act.Sessions {
		c := a.g.local.get(id)
		if c == nil {
			continue
		}
		var err error
		switch act.Op {
		case "send":
			err = c.s.Send(act.Data)
		case "disconnect":
			err = c.s.CloseFor(session.CauseServer, act.Code, act.Reason)
		}
		if err == nil {
			n++
		}
	}
	return n
}

// toNode hands act to node, signed with the cluster secret.
func (a *API) toNode(ctx context.Context, node string, act action) (int, error) {
	act.Nonce = nonce()
	body, err := json.Marshal(act)
	if err != nil {
		return 0, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimSuffix(node, "/")+NodePath, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(sign.Header, sign.Value(a.opts.NodeSecret, time.Now(), body))
	resp, err := a.http.Do(req)
	if err != nil {
		return 0, fmt.Errorf("node %s: %w", node, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("node %s: status %d", node, resp.StatusCode)
	}
	var ans countAnswer
	if err := json.NewDecoder(io.LimitReader(resp.Body, 4<<10)).Decode(&ans); err != nil {
		return 0, fmt.Errorf("node %s: %w", node, err)
	}
	return ans.Sessions, nil
}

// nonce is 128 random bits, naming one node-to-node delivery.
func nonce() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	return hex.EncodeToString(b[:])
}

// deliverFromNode takes another node's delivery for sessions here.
func (a *API) deliverFromNode(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || len(a.opts.NodeSecret) == 0 {
		http.NotFound(w, r)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, a.opts.MaxBodyBytes+4<<10))
	if err != nil {
		hub.Fail(w, http.StatusRequestEntityTooLarge, "too_large", "body over the size limit")
		return
	}
	if err := sign.Verify(a.opts.NodeSecret, r.Header.Get(sign.Header), body, time.Now(), nodeTolerance); err != nil {
		a.g.opts.Logger.Warn("proxy api: node delivery with a bad signature", "remote", r.RemoteAddr, "err", err)
		hub.Fail(w, http.StatusForbidden, "forbidden", "bad signature")
		return
	}
	var act action
	if err := json.Unmarshal(body, &act); err != nil || (act.Op != "send" && act.Op != "disconnect") || act.Nonce == "" {
		hub.Fail(w, http.StatusBadRequest, "bad_request", "not a delivery")
		return
	}
	if !a.fresh(act.Nonce) {
		hub.Fail(w, http.StatusConflict, "replayed", "delivery seen already")
		return
	}
	hub.WriteJSON(w, http.StatusOK, countAnswer{a.apply(act)})
}

// fresh reports whether a delivery's nonce is new, and keeps it for the
// signature's tolerance, so that a captured delivery cannot be replayed.
func (a *API) fresh(nonce string) bool {
	now := time.Now()
	a.nonceMu.Lock()
	defer a.nonceMu.Unlock()
	if _, seen := a.nonces[nonce]; seen {
		return false
	}
	if len(a.nonces) >= maxNonces {
		for k, t := range a.nonces {
			if now.Sub(t) > 2*nodeTolerance {
				delete(a.nonces, k)
			}
		}
		if len(a.nonces) >= maxNonces {
			return false // a flood of valid signatures: refuse rather than grow
		}
	}
	a.nonces[nonce] = now
	return true
}

// SessionInfo is one session in GET /api/sessions.
type SessionInfo struct {
	Session   string    `json:"session"`
	Service   string    `json:"service"`
	User      string    `json:"user"`
	Transport string    `json:"transport"`
	Node      string    `json:"node,omitempty"`
	Remote    string    `json:"remote,omitempty"`
	Opened    time.Time `json:"opened"`
}

func (a *API) sessions(w http.ResponseWriter, r *http.Request) {
	user := r.URL.Query().Get("user")
	if user == "" {
		hub.Fail(w, http.StatusBadRequest, "bad_request", "user is required")
		return
	}
	var out []SessionInfo
	if d := a.g.opts.Directory; d != nil {
		es, err := d.ByUser(r.Context(), user)
		if err != nil {
			hub.Fail(w, http.StatusServiceUnavailable, "unavailable", "directory: "+err.Error())
			return
		}
		for _, e := range es[:min(len(es), a.opts.MaxSessions)] {
			out = append(out, SessionInfo{e.ID, e.Service, e.User, e.Transport, e.Node, e.Remote, e.Opened})
		}
	} else {
		for _, c := range a.g.local.user(user, a.opts.MaxSessions) {
			out = append(out, c.info())
		}
	}
	if out == nil {
		out = []SessionInfo{}
	}
	hub.WriteJSON(w, http.StatusOK, map[string]any{"sessions": out})
}
