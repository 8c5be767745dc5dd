package transport

// PingersForTest is how many sessions h is pinging.
func PingersForTest(h *Handler) int {
	n := 0
	h.pingers.Range(func(_, _ any) bool { n++; return true })
	return n
}

// AttachedForTest reports whether h has a session with URL session id sid
// and a receiving connection is attached to it now.
func AttachedForTest(h *Handler, sid string) bool {
	s := h.reg.Get(sid)
	return s != nil && s.Attached()
}

// waitersForTest is the number of messages or bodies waiting for b.
func (b *BodyBudget) waitersForTest() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.waiters.Len()
}
