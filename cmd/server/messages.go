package main

import (
	"flag"
	"time"

	"github.com/sockjsd/sockjsd/transport"
)

// MessageConfig holds the flags of the websocket message gates (issue 20):
// the server-wide budget of message bytes being read and the payload
// deadline (transport/message.go).
type MessageConfig struct {
	BudgetBytes int
	ReadTimeout time.Duration
}

func (m *MessageConfig) register(fs *flag.FlagSet) {
	fs.IntVar(&m.BudgetBytes, "message-budget-bytes", transport.DefaultMessageBudgetBytes, "bytes of websocket messages past their first 1 KiB held at once by the whole server, while read and until queued (a message that cannot grow within -message-read-timeout: close 1013); keep it at least -max-message-bytes")
	fs.DurationVar(&m.ReadTimeout, "message-read-timeout", transport.DefaultMessageReadTimeout, "longest time from a websocket message's first byte to its last, waiting for the budget included (slower: close 1008); idle connections are not affected")
}

func (m MessageConfig) apply(o *transport.Options) {
	// One budget for every service: it bounds the process's memory.
	o.MessageBudget = transport.NewBodyBudget(m.BudgetBytes)
	o.MessageReadTimeout = m.ReadTimeout
}
