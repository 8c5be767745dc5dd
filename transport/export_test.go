package transport

// PingersForTest is how many sessions h is pinging.
func PingersForTest(h *Handler) int {
	n := 0
	h.pingers.Range(func(_, _ any) bool { n++; return true })
	return n
}
