package hub

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Caller makes one JSON call to a backend: POST req, marshalled, to the
// backend's base URL plus path, and decode a 2xx answer into answer (an
// empty body as {}); anything else is an error. It must bound the call's
// time. sockjsd's is its internal backend.Client (signed, bounded in
// time, concurrency and answer size); a program of its own passes any
// implementation.
type Caller interface {
	Call(ctx context.Context, path string, req, answer any) error
}

// HTTPHooksOptions configure NewHTTPHooks.
type HTTPHooksOptions struct {
	// Observe, when set, is called once per hook call with the hook's
	// name (HookSubscribe, HookPublish, HookRPC), its error (nil: the
	// backend answered, allow or deny alike; ErrBadAnswer wraps an
	// answer of the wrong shape; else the Caller's) and its duration.
	Observe func(hook string, err error, d time.Duration)
}

// ErrBadAnswer is a backend's answer that is JSON but not an object of
// the hook's shape.
var ErrBadAnswer = errors.New("the backend's answer is not an object of the hook's shape")

// HTTPHooks are Hooks answered by a backend over HTTP: each hook is a
// JSON POST to the backend's URL plus /subscribe, /publish or /rpc
// through a Caller, which bounds its time. The wire is documented in
// docs/hub.md. A failed call (a timeout, a status other than 2xx, an
// answer that is not a JSON object of the expected shape) is an error:
// the hub refuses with unavailable.
type HTTPHooks struct {
	c       Caller
	observe func(string, error, time.Duration)
}

// NewHTTPHooks returns Hooks calling the backend through c.
func NewHTTPHooks(c Caller, opts HTTPHooksOptions) *HTTPHooks {
	h := &HTTPHooks{c: c, observe: opts.Observe}
	if h.observe == nil {
		h.observe = func(string, error, time.Duration) {}
	}
	return h
}

var _ Hooks = (*HTTPHooks)(nil)

// call POSTs req to /hook and decodes the answer, which must be a JSON
// object, into answer.
func (h *HTTPHooks) call(ctx context.Context, hook string, req, answer any) error {
	start := time.Now()
	var raw json.RawMessage
	err := h.c.Call(ctx, "/"+hook, req, &raw)
	if err == nil {
		if b := bytes.TrimSpace(raw); len(b) == 0 || b[0] != '{' {
			err = fmt.Errorf("hook %s: %w: not an object", hook, ErrBadAnswer)
		} else if jerr := json.Unmarshal(b, answer); jerr != nil {
			err = fmt.Errorf("hook %s: %w: %v", hook, ErrBadAnswer, jerr)
		}
	}
	h.observe(hook, err, time.Since(start))
	return err
}

// Subscribe is POST /subscribe.
func (h *HTTPHooks) Subscribe(ctx context.Context, req SubscribeRequest) (Decision, error) {
	var d Decision
	err := h.call(ctx, HookSubscribe, req, &d)
	return d, err
}

// Publish is POST /publish.
func (h *HTTPHooks) Publish(ctx context.Context, req PublishRequest) (PublishDecision, error) {
	var d PublishDecision
	err := h.call(ctx, HookPublish, req, &d)
	return d, err
}

// RPC is POST /rpc.
func (h *HTTPHooks) RPC(ctx context.Context, req RPCRequest) (RPCResult, error) {
	var r RPCResult
	err := h.call(ctx, HookRPC, req, &r)
	return r, err
}
