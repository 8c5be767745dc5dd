package webhook

// Kill ends n's workers at once without releasing its Redis leases, as a
// node killed with -9 would: its partitions wait for LeaseTTL.
func (n *Notifier) Kill() { n.kill() }
