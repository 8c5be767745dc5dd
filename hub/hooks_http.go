package hub

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/sockjsd/sockjsd/internal/backend"
)

// HTTPHooksOptions configure NewHTTPHooks.
type HTTPHooksOptions struct {
	// Observe, when set, is called once per hook call with the hook's
	// name (HookSubscribe, HookPublish, HookRPC), the call's outcome
	// (backend.Outcome: ok, timeout, unreachable, status, bad_answer,
	// too_large, busy, canceled: a bounded set) and its duration.
	Observe func(hook string, outcome backend.Outcome, d time.Duration)
}

// HTTPHooks are Hooks answered by a backend over HTTP: each hook is a
// signed JSON POST to the backend's URL plus /subscribe, /publish or /rpc
// through a backend.Client, which bounds its time, its concurrency and
// its answer. The wire is documented in docs/hub.md. A failed call (a
// timeout, a status other than 2xx, an answer that is not a JSON object
// of the expected shape) is an error: the hub refuses with unavailable.
type HTTPHooks struct {
	c       *backend.Client
	observe func(string, backend.Outcome, time.Duration)
}

// NewHTTPHooks returns Hooks calling the backend c.
func NewHTTPHooks(c *backend.Client, opts HTTPHooksOptions) *HTTPHooks {
	h := &HTTPHooks{c: c, observe: opts.Observe}
	if h.observe == nil {
		h.observe = func(string, backend.Outcome, time.Duration) {}
	}
	return h
}

var _ Hooks = (*HTTPHooks)(nil)

// call POSTs req to path and decodes the answer, which must be a JSON
// object, into answer.
func (h *HTTPHooks) call(ctx context.Context, hook string, req, answer any) error {
	start := time.Now()
	var raw json.RawMessage
	err := h.c.Call(ctx, "/"+hook, req, &raw)
	if err == nil {
		if b := bytes.TrimSpace(raw); len(b) == 0 || b[0] != '{' {
			err = &backend.Error{Outcome: backend.BadAnswer, Path: "/" + hook, Err: errors.New("answer is not a JSON object")}
		} else if jerr := json.Unmarshal(b, answer); jerr != nil {
			err = &backend.Error{Outcome: backend.BadAnswer, Path: "/" + hook, Err: jerr}
		}
	}
	h.observe(hook, backend.OutcomeOf(err), time.Since(start))
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
