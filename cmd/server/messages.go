package main

import (
	"flag"
	"fmt"
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
	fs.IntVar(&m.BudgetBytes, "message-budget-bytes", transport.DefaultMessageBudgetBytes, "bytes of websocket messages past their first 1 KiB held at once by the whole server, while read and until queued (a message that cannot grow within -message-read-timeout: close 1013); at least -max-message-bytes")
	fs.DurationVar(&m.ReadTimeout, "message-read-timeout", transport.DefaultMessageReadTimeout, "longest time from a websocket message's first byte to its last, waiting for the budget included (slower: close 1008); idle connections are not affected")
}

// check refuses a budget smaller than the largest message: such a message
// could never complete, and would close its connection with 1013 at its
// deadline every time.
func (m MessageConfig) check(maxMessageBytes int) error {
	if m.BudgetBytes > 0 && m.BudgetBytes < maxMessageBytes {
		return fmt.Errorf("-message-budget-bytes %d is below -max-message-bytes %d: the largest messages could never be read", m.BudgetBytes, maxMessageBytes)
	}
	return nil
}

func (m MessageConfig) apply(o *transport.Options) {
	// One budget for every service: it bounds the process's memory.
	o.MessageBudget = transport.NewBodyBudget(m.BudgetBytes)
	o.MessageReadTimeout = m.ReadTimeout
}
