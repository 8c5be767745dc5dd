package hub

import (
	"encoding/json"
	"strconv"
	"time"
)

// The hub's protocol: one JSON object per SockJS message.
//
// From the client:
//
//	{"op":"subscribe","channel":"news"}
//	{"op":"subscribe","channel":"news","since":N,"epoch":"E"}   resume after seq N of epoch E (epoch optional)
//	{"op":"unsubscribe","channel":"news"}
//	{"op":"publish","channel":"news","data":<any JSON>}
//	{"op":"pong","id":N}
//	{"op":"subscribe","channel":"news","data":<any JSON>}      data: for the backend's subscribe hook
//	{"op":"rpc","id":<any JSON>,"method":"m","data":<any JSON>} with Hooks: answered by the backend
//	{"op":"refresh","token":"T"}                                a new token for the session
//
// From the server:
//
//	{"op":"message","channel":"news","seq":N,"data":<any JSON>}   seq counts per channel from 1
//	{"op":"subscribed","channel":"news","seq":N,"epoch":"E"}     seq: the channel's last sequence number
//	{"op":"subscribed",...,"recovered":true}   with since: the messages after since follow, then live ones
//	{"op":"subscribed",...,"recovered":false}  with since: history no longer reaches back to since (or the
//	                                           channel's epoch changed): reload state; live messages follow.
//	                                           Also sent, unasked, before a live message that does not
//	                                           continue the subscriber's sequence (a new epoch, or
//	                                           messages lost that history no longer held), with the
//	                                           position just before that message.
//	{"op":"unsubscribed","channel":"news"}
//	{"op":"published","channel":"news","seq":N}                  acknowledges a browser publish
//	{"op":"error","code":"...","message":"...","channel":"news"}
//	{"op":"ping","id":N}                   every PingInterval; answer {"op":"pong","id":N} (or ignore it)
//	{"op":"ping","id":N,"rtt":R}           R: the last answered ping's round trip, in ms (µs precision)
//	{"op":"rpc_result","id":<the rpc's>,"data":<any JSON>}
//	{"op":"rpc_result","id":<the rpc's>,"error":{"code":"...","message":"..."}}
//	{"op":"refreshed","exp":<unix seconds>}   the refresh's token is the session's now
//
// With a TokenSecret, a session whose valid token expires is closed with
// CodeTokenExpired (3014) at its exp, unless a refresh came first.

// clientMsg is any message a client sends.
type clientMsg struct {
	Op      string          `json:"op"`
	Channel string          `json:"channel"`
	Data    json.RawMessage `json:"data"`
	ID      json.RawMessage `json:"id"` // a number for pong; any JSON for rpc
	Since   *uint64         `json:"since"`
	Epoch   string          `json:"epoch"`
	Method  string          `json:"method"`
	Token   string          `json:"token"`
}

// Error codes.
const (
	CodeBadRequest      = "bad_request"            // not a JSON object, or a field missing
	CodeUnknownOp       = "unknown_op"             // op is none of the above
	CodeUnknownChan     = "unknown_channel"        // no channel pattern allows this name
	CodeForbidden       = "forbidden"              // token missing, invalid, expired, or not for this channel; or publish not allowed
	CodeTooMany         = "too_many_subscriptions" // the session's or the address's subscription limit
	CodeTooManyChannels = "too_many_channels"      // this node's channel limit
	CodeTooLarge        = "too_large"              // data over the size limit
	CodeNotSubscribed   = "not_subscribed"
	CodeUnavailable     = "unavailable" // the broker failed
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

type subscribedMsg struct {
	Op        string `json:"op"`
	Channel   string `json:"channel"`
	Seq       uint64 `json:"seq"`
	Epoch     string `json:"epoch,omitempty"`
	Recovered *bool  `json:"recovered,omitempty"`
}

func encodeSubscribed(channel string, p Position, recovered *bool) string {
	b, _ := json.Marshal(subscribedMsg{"subscribed", channel, p.Seq, p.Epoch, recovered})
	return string(b)
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

// encodePing is a ping, with the last round trip when there was one.
func encodePing(id int64, lastRTT time.Duration) string {
	b := make([]byte, 0, 48)
	b = append(b, `{"op":"ping","id":`...)
	b = strconv.AppendInt(b, id, 10)
	if us := lastRTT.Microseconds(); us > 0 {
		b = append(b, `,"rtt":`...)
		b = strconv.AppendFloat(b, float64(us)/1000, 'f', -1, 64)
	}
	return string(append(b, '}'))
}
