package hub_test

import (
	"net"
	"sync"
	"testing"
)

// tcpProxy stands between a broker and redis-server, so that a test can
// break or stall the broker's connections at a moment it chooses, while
// other clients keep talking to Redis directly.
type tcpProxy struct {
	Addr   string
	target string
	ln     net.Listener

	mu    sync.Mutex
	conns map[net.Conn]bool
	down  bool          // cut: connections are closed, new ones refused
	gate  chan struct{} // closed while client-to-Redis bytes flow
	// held, when set, is sent (without blocking) a copy of each chunk
	// of client-to-Redis bytes as it starts waiting for the gate: a
	// test learns which command Redis is being kept from.
	held chan []byte
}

func startProxy(t *testing.T, target string) *tcpProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &tcpProxy{Addr: ln.Addr().String(), target: target, ln: ln, conns: map[net.Conn]bool{}, gate: make(chan struct{})}
	close(p.gate)
	go p.accept()
	t.Cleanup(func() {
		ln.Close()
		p.cut()
		p.release()
	})
	return p
}

func (p *tcpProxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		down := p.down
		p.mu.Unlock()
		if down {
			c.Close()
			continue
		}
		s, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		if p.down {
			p.mu.Unlock()
			c.Close()
			s.Close()
			continue
		}
		p.conns[c], p.conns[s] = true, true
		p.mu.Unlock()
		go p.pipe(s, c, true)
		go p.pipe(c, s, false)
	}
}

// pipe copies src to dst; client-to-Redis bytes wait for the gate.
func (p *tcpProxy) pipe(dst, src net.Conn, gated bool) {
	defer func() {
		dst.Close()
		src.Close()
		p.mu.Lock()
		delete(p.conns, dst)
		delete(p.conns, src)
		p.mu.Unlock()
	}()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 && gated {
			p.mu.Lock()
			gate, held := p.gate, p.held
			p.mu.Unlock()
			select {
			case <-gate:
			default:
				if held != nil {
					select {
					case held <- append([]byte(nil), buf[:n]...):
					default:
					}
				}
				<-gate
			}
		}
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return // EOF or closed: the other direction is closed with it
		}
	}
}

// cut closes every connection and refuses new ones until restore: the
// broker's Redis connections, pub/sub included, are lost.
func (p *tcpProxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = true
	for c := range p.conns {
		c.Close()
	}
}

func (p *tcpProxy) restore() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = false
}

// watchHeld returns the channel that gets each chunk of commands held by
// hold from now on (buffered: chunks beyond its room are not sent).
func (p *tcpProxy) watchHeld() <-chan []byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.held = make(chan []byte, 256)
	return p.held
}

// hold stalls every command sent to Redis through the proxy (Redis made
// slow) until release.
func (p *tcpProxy) hold() {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.gate:
		p.gate = make(chan struct{})
	default:
	}
}

func (p *tcpProxy) release() {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.gate:
	default:
		close(p.gate)
	}
}
