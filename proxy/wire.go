package proxy

import "encoding/json"

// The JSON sockjsd sends to a backend and reads back. The field names are
// a wire contract (docs/proxy.md): extend it, never rename.

// connectRequest is the body of POST {base}/connect.
type connectRequest struct {
	Session   string            `json:"session"`
	Service   string            `json:"service"`
	Transport string            `json:"transport"`
	Remote    string            `json:"remote"`
	Node      string            `json:"node,omitempty"`
	Headers   map[string]string `json:"headers"`
	Query     map[string]string `json:"query"`
}

// Closing is a close code and reason, in a reject or a close.
type Closing struct {
	Code   int    `json:"code"`
	Reason string `json:"reason"`
}

// connectAnswer is the backend's answer to a connect.
type connectAnswer struct {
	Reject   *Closing        `json:"reject"`
	User     string          `json:"user"`
	Meta     json.RawMessage `json:"meta"`
	Messages []string        `json:"messages"`
	Channels []string        `json:"channels"`
}

// messageRequest is the body of POST {base}/message.
type messageRequest struct {
	Session  string          `json:"session"`
	User     string          `json:"user,omitempty"`
	Meta     json.RawMessage `json:"meta,omitempty"`
	Messages []string        `json:"messages"`
}

// messageAnswer is the backend's answer to a message batch.
type messageAnswer struct {
	Messages    []string `json:"messages"`
	Subscribe   []string `json:"subscribe"`
	Unsubscribe []string `json:"unsubscribe"`
	Close       *Closing `json:"close"`
}

// closeRequest is the body of POST {base}/close.
type closeRequest struct {
	Session string          `json:"session"`
	User    string          `json:"user,omitempty"`
	Meta    json.RawMessage `json:"meta,omitempty"`
	Code    int             `json:"code"`
	Reason  string          `json:"reason"`
}
