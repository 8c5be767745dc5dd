package hub

// ChannelRefs is how many clients have joined or are joining ch on this
// node: tests wait on it to know a subscribe reached the broker.
func (h *Hub) ChannelRefs(ch string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	if l := h.channels[ch]; l != nil {
		return l.refs
	}
	return 0
}

// SetParallelMin sets the fewest subscribers fanned out in parallel by
// the hubs New makes until the test ends.
func SetParallelMin(t interface{ Cleanup(func()) }, n int) {
	old := parallelMin
	parallelMin = n
	t.Cleanup(func() { parallelMin = old })
}

// HoldFanOut keeps ch's fan-out from delivering until release is called:
// it takes the channel's lock, which each delivery holds (deliverNow),
// and so do subscribes and leaves. ch must have a subscriber here.
func (h *Hub) HoldFanOut(ch string) (release func()) {
	h.mu.Lock()
	l := h.channels[ch]
	h.mu.Unlock()
	l.mu.Lock()
	return l.mu.Unlock
}
