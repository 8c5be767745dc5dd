package session

// PendingSend returns the messages, and their bytes, that Send queued and
// no receiver has taken yet. A producer that must not outrun its client
// (the exec bridge reading a program's stdout) waits while it is high,
// instead of letting Send close the session with 3009.
func (s *Session) PendingSend() (msgs, bytes int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.out), s.outBytes
}
