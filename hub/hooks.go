package hub

import (
	"context"
	"encoding/json"
)

// Hooks let a backend decide what hub sessions may do: whether a
// subscribe goes through, whether a browser's publish goes out and with
// what data, and the answer to a browser's rpc. NewHTTPHooks is the
// implementation sockjsd runs (-hub-proxy): each call is a signed JSON
// POST to the backend, documented in docs/hub.md.
//
// The hub calls a hook on the session's message goroutine, with c.mu of
// that session held, like everything else it does for one message: a
// slow hook delays that session's later messages (never another
// session's), so an implementation must bound its time (HTTPHooks does,
// with its Caller's timeout). ctx is the session's: it is
// cancelled when the session ends.
//
// An error means the hook could not decide (the backend failed): the hub
// refuses a subscribe or a publish with the code unavailable, and
// answers an rpc with an error of that code. It never retries.
type Hooks interface {
	Subscribe(ctx context.Context, req SubscribeRequest) (Decision, error)
	Publish(ctx context.Context, req PublishRequest) (PublishDecision, error)
	RPC(ctx context.Context, req RPCRequest) (RPCResult, error)
}

// SubscribeRequest asks whether a session may subscribe to a channel,
// after the hub's own rules (the channel exists, the token allows it, the
// session's limit) said yes.
type SubscribeRequest struct {
	// Session is the hub session's opaque id: crypto-random, the same in
	// every hook call of one session, never the SockJS URL's session id.
	Session string `json:"session"`
	Channel string `json:"channel"`
	// Remote is the client's IP address (the connection's).
	Remote string `json:"remote"`
	// User is the sub claim of the session's token; "" without one.
	User string `json:"user"`
	// Data is the subscribe op's optional data, as the client sent it.
	Data json.RawMessage `json:"data,omitempty"`
}

// Denial is a hook's refusal: the client gets an error op with the code
// forbidden and this reason as its message.
type Denial struct {
	Reason string `json:"reason"`
}

// Decision is a subscribe hook's answer: allowed unless Deny is set.
type Decision struct {
	Deny *Denial `json:"deny,omitempty"`
}

// PublishRequest asks whether a browser's publish may go out, after the
// hub's own rules said yes.
type PublishRequest struct {
	Session string          `json:"session"`
	Channel string          `json:"channel"`
	Data    json.RawMessage `json:"data"`
	User    string          `json:"user"`
}

// PublishDecision is a publish hook's answer: Deny refuses the publish;
// otherwise Data, when set, is published instead of the client's data.
type PublishDecision struct {
	Data json.RawMessage `json:"data,omitempty"`
	Deny *Denial         `json:"deny,omitempty"`
}

// RPCRequest is a client's {"op":"rpc"}: a call answered by the backend
// alone, to this session alone.
type RPCRequest struct {
	Session string          `json:"session"`
	Method  string          `json:"method"`
	Data    json.RawMessage `json:"data,omitempty"`
	User    string          `json:"user"`
}

// RPCResult is an rpc's answer: Error, or Data (null when unset).
type RPCResult struct {
	Data  json.RawMessage `json:"data,omitempty"`
	Error *RPCError       `json:"error,omitempty"`
}

// RPCError is an rpc's failure as the client gets it.
type RPCError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// Hook names, as HookObserver and the metrics label them.
const (
	HookSubscribe = "subscribe"
	HookPublish   = "publish"
	HookRPC       = "rpc"
)
