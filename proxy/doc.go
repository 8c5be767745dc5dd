// Package proxy makes sockjsd a SockJS gateway in front of an HTTP backend
// written in any language.
//
// A proxied service (Gateway.Service) drives each session from the
// backend: POST {base}/connect when the session opens (the backend
// accepts, with a user, meta, first messages and hub channels, or rejects
// with a 4000-4999 close code the page receives), POST {base}/message with
// the client's messages in order and batched (one request in flight per
// session: what arrives meanwhile goes in the next), and POST {base}/close
// once when an accepted session ends. Every request is signed
// (X-Sockjsd-Signature, internal/sign), bounded in time, size and
// concurrency (internal/backend), and a backend that is down, slow or
// answers garbage closes only the affected sessions, with CodeBackendFailed
// or CodeBackendTimeout.
//
// The server API (NewAPI) lets the backend reach any session or user at
// any time, wherever it lives: POST /api/send, POST /api/disconnect, GET
// /api/sessions. With a Directory spanning nodes (package directory on
// Redis), a call for sessions on another node is handed to that node,
// signed with the cluster secret (NodePath).
//
// The wire contract, with JSON examples, is docs/proxy.md.
package proxy
