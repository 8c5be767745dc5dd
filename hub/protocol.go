package hub

import (
	"encoding/json"
	"strconv"
)

// The hub's protocol: one JSON object per SockJS message.
//
// From the client:
//
//	{"op":"subscribe","channel":"news"}
//	{"op":"unsubscribe","channel":"news"}
//	{"op":"publish","channel":"news","data":<any JSON>}
//	{"op":"pong","id":N}
//
// From the server:
//
//	{"op":"message","channel":"news","seq":N,"data":<any JSON>}   seq counts per channel from 1
//	{"op":"subscribed","channel":"news","seq":N}                 seq: the channel's last sequence number
//	{"op":"unsubscribed","channel":"news"}
//	{"op":"published","channel":"news","seq":N}                  acknowledges a browser publish
//	{"op":"error","code":"...","message":"...","channel":"news"}
//	{"op":"ping","id":N}

// clientMsg is any message a client sends.
type clientMsg struct {
	Op      string          `json:"op"`
	Channel string          `json:"channel"`
	Data    json.RawMessage `json:"data"`
	ID      int64           `json:"id"`
}

// Error codes.
const (
	CodeBadRequest    = "bad_request"     // not a JSON object, or a field missing
	CodeUnknownOp     = "unknown_op"      // op is none of the above
	CodeUnknownChan   = "unknown_channel" // no channel pattern allows this name
	CodeForbidden     = "forbidden"       // token missing, invalid, expired, or not for this channel; or publish not allowed
	CodeTooMany       = "too_many_subscriptions"
	CodeTooLarge      = "too_large" // data over the size limit
	CodeNotSubscribed = "not_subscribed"
	CodeUnavailable   = "unavailable" // the broker failed
)

type errorMsg struct {
	Op      string `json:"op"`
	Code    string `json:"code"`
	Message string `json:"message"`
	Channel string `json:"channel,omitempty"`
}

func encodeError(code, msg, channel string) string {
	b, _ := json.Marshal(errorMsg{"error", code, msg, channel})
	return string(b)
}

type channelMsg struct {
	Op      string `json:"op"`
	Channel string `json:"channel"`
	Seq     uint64 `json:"seq,omitempty"`
}

func encodeChannelOp(op, channel string, seq uint64) string {
	b, _ := json.Marshal(channelMsg{op, channel, seq})
	return string(b)
}

// EncodeMessage is the frame every subscriber of a channel receives for
// one publish, built once per publish and shared by all of them.
func EncodeMessage(channel string, seq uint64, data json.RawMessage) string {
	ch, _ := json.Marshal(channel)
	b := make([]byte, 0, 40+len(ch)+len(data))
	b = append(b, `{"op":"message","channel":`...)
	b = append(b, ch...)
	b = append(b, `,"seq":`...)
	b = strconv.AppendUint(b, seq, 10)
	b = append(b, `,"data":`...)
	b = append(b, data...)
	b = append(b, '}')
	return string(b)
}

func encodePing(id int64) string {
	return `{"op":"ping","id":` + strconv.FormatInt(id, 10) + `}`
}
