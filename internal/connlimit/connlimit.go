// Package connlimit caps the connections a listener holds open, in total
// and per client address, and refuses the ones past a cap as soon as they
// are accepted: before TLS or HTTP parsing, with no goroutine started.
package connlimit

import (
	"errors"
	"io"
	"net"
	"sync"
	"syscall"
	"time"
)

// Reasons a connection is refused, as given to Listener.OnRefuse.
const (
	ReasonMax        = "max_connections"
	ReasonPerAddress = "per_address"
)

// PeerIP is the default Listener.Key: the TCP peer's IP address, without
// the port. A later "real address" function (PROXY protocol) replaces it.
func PeerIP(c net.Conn) string {
	a := c.RemoteAddr()
	if t, ok := a.(*net.TCPAddr); ok {
		return t.IP.String()
	}
	if a == nil {
		return ""
	}
	if h, _, err := net.SplitHostPort(a.String()); err == nil {
		return h
	}
	return a.String()
}

// Listener wraps a net.Listener. Set its fields before the first Accept.
type Listener struct {
	net.Listener
	// Max is the most connections open at once; 0: no cap.
	Max int
	// PerAddress is the most connections open at once per Key; 0: no cap.
	PerAddress int
	// Key is the address a connection is counted under (nil: PeerIP);
	// "" counts it against Max only.
	Key func(net.Conn) string
	// Refusal, if set, is written to a refused connection (within
	// RefusalTimeout, 50ms if 0) before it is closed, e.g. an HTTP 503.
	Refusal        []byte
	RefusalTimeout time.Duration
	// OnRefuse, if set, is called once per refused connection.
	OnRefuse func(reason string)

	mu   sync.Mutex
	open int
	per  map[string]int
}

// Open is the number of connections accepted and not yet closed.
func (l *Listener) Open() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.open
}

// Accept returns the next connection within the caps; the ones past a cap
// are refused and closed here, and Accept waits for the next.
func (l *Listener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		key := l.key(c)
		if reason := l.acquire(key); reason != "" {
			l.refuse(c, reason)
			continue
		}
		return &conn{Conn: c, l: l, key: key}, nil
	}
}

func (l *Listener) key(c net.Conn) string {
	if l.Key != nil {
		return l.Key(c)
	}
	return PeerIP(c)
}

// acquire counts a new connection, or says why it is refused.
func (l *Listener) acquire(key string) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.Max > 0 && l.open >= l.Max {
		return ReasonMax
	}
	if l.PerAddress > 0 && key != "" && l.per[key] >= l.PerAddress {
		return ReasonPerAddress
	}
	l.open++
	if l.PerAddress > 0 && key != "" {
		if l.per == nil {
			l.per = make(map[string]int)
		}
		l.per[key]++
	}
	return ""
}

func (l *Listener) release(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.open--
	if n, ok := l.per[key]; ok {
		if n <= 1 {
			delete(l.per, key) // the map holds only addresses with connections
		} else {
			l.per[key] = n - 1
		}
	}
}

// refuse writes the refusal, if any, and closes c. A fresh socket's send
// buffer is empty, so the write does not wait; the deadline bounds it
// anyway.
func (l *Listener) refuse(c net.Conn, reason string) {
	if l.OnRefuse != nil {
		l.OnRefuse(reason)
	}
	if len(l.Refusal) > 0 {
		d := l.RefusalTimeout
		if d <= 0 {
			d = 50 * time.Millisecond
		}
		_ = c.SetWriteDeadline(time.Now().Add(d))
		_, _ = c.Write(l.Refusal)
	}
	_ = c.Close()
}

// conn gives its slot back when closed, once.
type conn struct {
	net.Conn
	l    *Listener
	key  string
	once sync.Once
}

func (c *conn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.l.release(c.key) })
	return err
}

// UnwrapConn is the connection the wrapper counts: the wrapper reads
// nothing itself, so websockets can be read from it directly (the
// transport package parks idle ones in the kernel's poller).
func (c *conn) UnwrapConn() net.Conn { return c.Conn }

// ReadFrom keeps the TCP connection's sendfile/splice path for net/http.
func (c *conn) ReadFrom(r io.Reader) (int64, error) { return io.Copy(c.Conn, r) }

// SyscallConn is the TCP connection's, for writes made on its descriptor
// (transport's non-blocking websocket writes): the wrapper changes no
// byte that is written, only when the slot is given back.
func (c *conn) SyscallConn() (syscall.RawConn, error) {
	if sc, ok := c.Conn.(syscall.Conn); ok {
		return sc.SyscallConn()
	}
	return nil, errNoSyscallConn
}

var errNoSyscallConn = errors.New("connlimit: the connection has no descriptor")

// CloseWrite lets net/http half-close the TCP connection as it does
// without the wrapper.
func (c *conn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}
