package connlimit

import (
	"io"
	"net"
	"sync"
	"syscall"
	"testing"
	"time"
)

// dial opens a connection from the loopback address src.
func dial(t *testing.T, ln net.Listener, src string) net.Conn {
	t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	c, err := d.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	return c
}

// TestCaps: past each cap a connection gets the refusal and EOF, and is
// counted under its reason; a closed connection frees its slot.
func TestCaps(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	refused := map[string]int{}
	l := &Listener{Listener: inner, Max: 3, PerAddress: 2, Refusal: []byte("no\n"),
		OnRefuse: func(r string) { mu.Lock(); refused[r]++; mu.Unlock() }}
	defer l.Close()
	accepted := make(chan net.Conn, 10)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				close(accepted)
				return
			}
			accepted <- c
		}
	}()
	expectRefused := func(src string) {
		t.Helper()
		b, err := io.ReadAll(dial(t, l, src))
		if string(b) != "no\n" || err != nil {
			t.Fatalf("refused connection from %s read %q, %v", src, b, err)
		}
	}
	dial(t, l, "127.0.0.1")
	dial(t, l, "127.0.0.1")
	s1, s2 := <-accepted, <-accepted
	expectRefused("127.0.0.1") // per address
	dial(t, l, "127.0.0.2")
	s3 := <-accepted
	expectRefused("127.0.0.3") // total
	if n := l.Open(); n != 3 {
		t.Errorf("open: %d, want 3", n)
	}
	s1.Close()
	s1.Close() // twice: released once
	dial(t, l, "127.0.0.1")
	s4 := <-accepted
	if n := l.Open(); n != 3 {
		t.Errorf("open after one closed and one more: %d, want 3", n)
	}
	for _, c := range []net.Conn{s2, s3, s4} {
		c.Close()
	}
	if n := l.Open(); n != 0 {
		t.Errorf("open after all closed: %d", n)
	}
	if len(l.per) != 0 {
		t.Errorf("per-address map keeps %d addresses with no connection", len(l.per))
	}
	mu.Lock()
	defer mu.Unlock()
	if refused[ReasonPerAddress] != 1 || refused[ReasonMax] != 1 {
		t.Errorf("refusals: %v", refused)
	}
}

// A connection whose Key is "" (a trusted proxy's, carrying many clients)
// counts against Max only.
func TestEmptyKeyCountsAgainstMaxOnly(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := &Listener{Listener: inner, Max: 3, PerAddress: 1, Key: func(net.Conn) string { return "" }}
	defer l.Close()
	var clients []net.Conn
	defer func() {
		for _, c := range clients {
			c.Close()
		}
	}()
	for i := range 3 {
		c, err := net.Dial("tcp", inner.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		clients = append(clients, c)
		if _, err := l.Accept(); err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
	}
	if n := l.Open(); n != 3 {
		t.Fatalf("Open() = %d, want 3 (one address, PerAddress 1, exempt)", n)
	}
}

// TestSyscallConn: an accepted connection hands out its TCP descriptor
// (a websocket's non-blocking writes need it), and writes made on it reach
// the peer.
func TestSyscallConn(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := &Listener{Listener: inner}
	defer l.Close()
	peer := dial(t, l, "127.0.0.1")
	c, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	sc, ok := c.(syscall.Conn)
	if !ok {
		t.Fatal("the accepted connection is not a syscall.Conn")
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var werr error
	if err := rc.Write(func(fd uintptr) bool {
		_, werr = syscall.Write(int(fd), []byte("hi"))
		return true
	}); err != nil || werr != nil {
		t.Fatal(err, werr)
	}
	b := make([]byte, 2)
	if _, err := io.ReadFull(peer, b); err != nil || string(b) != "hi" {
		t.Fatalf("peer read %q, %v", b, err)
	}
}

// TestUnwrapConn: a counted connection gives the one it wraps (so that
// the transport package can park its websockets in the kernel's poller),
// and closing the wrapper still gives the slot back.
func TestUnwrapConn(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := &Listener{Listener: inner, Max: 1}
	defer l.Close()
	client, err := net.Dial("tcp", inner.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	c, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	u, ok := c.(interface{ UnwrapConn() net.Conn })
	if !ok {
		t.Fatalf("%T has no UnwrapConn", c)
	}
	if _, ok := u.UnwrapConn().(*net.TCPConn); !ok {
		t.Fatalf("UnwrapConn gave %T, want the *net.TCPConn", u.UnwrapConn())
	}
	if l.Open() != 1 {
		t.Fatalf("%d open, want 1", l.Open())
	}
	c.Close()
	if l.Open() != 0 {
		t.Fatalf("%d open after Close, want 0", l.Open())
	}
}
