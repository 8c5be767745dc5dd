package hub

import (
	"context"
	"encoding/json"
	"time"
)

// Close code of a session whose token expired.
const (
	CodeTokenExpired   = 3014 // the session's token expired and no refresh replaced it
	ReasonTokenExpired = "Token expired"
)

// The message a client gets when a hook could not decide.
const hookUnavailable = "unavailable"

// Bounds of an rpc op.
const (
	maxMethodBytes = 128
	maxRPCIDBytes  = 256
)

func denyReason(d *Denial) string {
	if d.Reason == "" {
		return "denied by the backend"
	}
	return d.Reason
}

// hookFailed logs a hook that could not decide (the metrics count it, by
// outcome, in HTTPHooks).
func (h *Hub) hookFailed(hook string, err error) {
	h.opts.Logger.Debug("hub: hook failed", "hook", hook, "err", err)
}

// handleRPC answers {"op":"rpc"} with the backend's rpc_result.
func (h *Hub) handleRPC(ctx context.Context, c *client, m clientMsg) {
	if h.opts.Hooks == nil {
		h.send(c, encodeError(CodeUnknownOp, "rpc is not enabled on this server", ""))
		return
	}
	if len(m.ID) > maxRPCIDBytes {
		h.send(c, encodeError(CodeBadRequest, "rpc id over 256 bytes", ""))
		return
	}
	switch {
	case m.Method == "" || len(m.Method) > maxMethodBytes:
		h.send(c, encodeRPCResult(m.ID, RPCResult{Error: &RPCError{CodeBadRequest, "method must be 1 to 128 bytes"}}))
		return
	case len(m.Data) > h.opts.MaxDataBytes:
		h.send(c, encodeRPCResult(m.ID, RPCResult{Error: &RPCError{CodeTooLarge, "data over the size limit"}}))
		return
	}
	res, err := h.opts.Hooks.RPC(ctx, RPCRequest{Session: c.id, Method: m.Method, Data: m.Data, User: c.user})
	if err != nil {
		h.hookFailed(HookRPC, err)
		res = RPCResult{Error: &RPCError{CodeUnavailable, hookUnavailable}}
	}
	h.send(c, encodeRPCResult(m.ID, res))
}

// handleRefresh replaces the session's token with a valid, unexpired one:
// its exp moves the session's end, and the subscriptions the new token no
// longer allows are ended (each with an unsubscribed op).
func (h *Hub) handleRefresh(c *client, m clientMsg) {
	if len(h.opts.Rules.TokenSecret) == 0 {
		h.send(c, encodeError(CodeBadRequest, "this hub takes no tokens", ""))
		return
	}
	claims, err := h.opts.Rules.parseToken(m.Token)
	if err == nil && !claims.ExpiresAt.After(time.Now()) {
		err = ErrBadToken // valid only within the leeway: it would end the session at once
	}
	if err != nil {
		h.refused(RefusedForbidden)
		h.send(c, encodeError(CodeForbidden, err.Error(), ""))
		return
	}
	c.token = m.Token
	h.setExpiry(c, claims)
	for ch := range c.subs {
		if !matchAny(claims.Channels, ch) {
			h.leave(c, ch)
			h.send(c, encodeChannelOp("unsubscribed", ch, 0))
		}
	}
	h.send(c, encodeRefreshed(claims.ExpiresAt.Unix()))
}

type rpcResultMsg struct {
	Op    string          `json:"op"`
	ID    json.RawMessage `json:"id"`
	Data  json.RawMessage `json:"data,omitempty"`
	Error *RPCError       `json:"error,omitempty"`
}

func encodeRPCResult(id json.RawMessage, r RPCResult) string {
	msg := rpcResultMsg{Op: "rpc_result", ID: id, Data: r.Data, Error: r.Error}
	if len(msg.ID) == 0 {
		msg.ID = json.RawMessage("null")
	}
	if msg.Error != nil {
		msg.Data = nil
	} else if len(msg.Data) == 0 {
		msg.Data = json.RawMessage("null")
	}
	b, err := json.Marshal(msg)
	if err != nil { // never: id and data were parsed as JSON
		b, _ = json.Marshal(rpcResultMsg{Op: "rpc_result", ID: json.RawMessage("null"), Error: &RPCError{CodeUnavailable, hookUnavailable}})
	}
	return string(b)
}

func encodeRefreshed(exp int64) string {
	b, _ := json.Marshal(struct {
		Op  string `json:"op"`
		Exp int64  `json:"exp"`
	}{"refreshed", exp})
	return string(b)
}
