package transport

import (
	"bytes"
	"errors"
	"io"
	"net"
	"runtime"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// tcpPair returns both ends of a loopback TCP connection, the server's as
// an nbConn.
func tcpPair(t *testing.T) (*nbConn, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	server, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { server.Close() })
	nc, err := newNBConn(server, 10*time.Second)
	if err != nil {
		t.Skipf("no non-blocking writes on %s: %v", runtime.GOOS, err)
	}
	return nc, client
}

// TestNBConnWrite: small writes go to the socket at once; what a client
// that does not read leaves the socket unable to take is held, in order,
// until Flush writes it as the client reads; a write to a connection the
// client reset fails (without a SIGPIPE killing the process), and so do
// the writes after it.
func TestNBConnWrite(t *testing.T) {
	t.Run("taken", func(t *testing.T) {
		nc, client := tcpPair(t)
		for _, m := range []string{"one", "two"} {
			if n, err := nc.Write([]byte(m)); err != nil || n != len(m) {
				t.Fatalf("Write(%q): %d %v", m, n, err)
			}
			if nc.Held() {
				t.Fatalf("%q held by an idle socket", m)
			}
		}
		got := make([]byte, 6)
		_ = client.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.ReadFull(client, got); err != nil || string(got) != "onetwo" {
			t.Fatalf("read %q %v", got, err)
		}
	})
	t.Run("held", func(t *testing.T) {
		nc, client := tcpPair(t)
		// More than any loopback socket buffer takes: the rest is held.
		var want bytes.Buffer
		for i := 0; !nc.Held(); i++ {
			if i == 1000 {
				t.Fatal("1000 writes of 64 KiB never filled the socket")
			}
			p := bytes.Repeat([]byte{byte('a' + i%26)}, 64<<10)
			want.Write(p)
			if n, err := nc.Write(p); err != nil || n != len(p) {
				t.Fatalf("Write: %d %v", n, err)
			}
		}
		got := make(chan []byte, 1)
		go func() {
			b := make([]byte, want.Len())
			_ = client.SetReadDeadline(time.Now().Add(30 * time.Second))
			n, _ := io.ReadFull(client, b)
			got <- b[:n]
		}()
		if err := nc.Flush(); err != nil {
			t.Fatal(err)
		}
		if nc.Held() {
			t.Fatal("held after Flush")
		}
		if b := <-got; !bytes.Equal(b, want.Bytes()) {
			t.Fatalf("the client read %d bytes, not the %d written in order", len(b), want.Len())
		}
	})
	t.Run("reset", func(t *testing.T) {
		nc, client := tcpPair(t)
		_ = client.(*net.TCPConn).SetLinger(0) // close with a reset
		client.Close()
		var err error
		for i := 0; i < 1000 && err == nil; i++ {
			// The reset arrives after the first write at the latest.
			_, err = nc.Write([]byte("x"))
			if err == nil {
				runtime.Gosched()
			}
		}
		if err == nil {
			t.Fatal("writes to a reset connection did not fail")
		}
		if _, again := nc.Write([]byte("y")); !errors.Is(again, err) {
			t.Fatalf("the write after a failure: %v, want %v", again, err)
		}
	})
	t.Run("closed", func(t *testing.T) {
		nc, _ := tcpPair(t)
		nc.Conn.Close()
		if _, err := nc.Write([]byte("x")); err == nil {
			t.Fatal("a write to a closed connection succeeded")
		}
	})
}

// TestNBConnWriteData: data frames go out until gorilla writes a close
// frame; after it WriteData refuses (websocket.ErrCloseSent) and writes
// nothing, as gorilla's own writes would. Writes that only look like
// part of a close frame do not stop it.
func TestNBConnWriteData(t *testing.T) {
	nc, client := tcpPair(t)
	data := appendTextFrame(nil, []byte("a[\"x\"]"))
	for _, tc := range []struct {
		name string
		p    []byte
	}{
		{"a data frame", data},
		{"a pong", []byte{0x8a, 1, 'p'}},
		{"a close header inside a longer write", append([]byte{0x88, 0}, data...)},
	} {
		if _, err := nc.Write(tc.p); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if held, err := nc.WriteData(data); err != nil || held {
			t.Fatalf("WriteData after %s: held %v, %v", tc.name, held, err)
		}
	}
	closeFrame := append([]byte{0x88, 2}, websocket.FormatCloseMessage(1000, "")...)
	if _, err := nc.Write(closeFrame); err != nil {
		t.Fatal(err)
	}
	if _, err := nc.WriteData(data); !errors.Is(err, websocket.ErrCloseSent) {
		t.Fatalf("WriteData after a close frame: %v, want ErrCloseSent", err)
	}
	want := 5*len(data) + 3 + 2 + len(closeFrame) // data frames: two written (one in the lookalike), three by WriteData
	got := make([]byte, want)
	_ = client.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(client, got); err != nil {
		t.Fatal(err)
	}
	if !bytes.HasSuffix(got, closeFrame) {
		t.Fatalf("the stream does not end with the close frame: %q", got)
	}
	_ = client.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	if n, err := client.Read(make([]byte, 1)); n != 0 || err == nil {
		t.Fatalf("%d bytes after the close frame", n)
	}
}

// TestNBConnClosed: once closed, no write reaches the descriptor (whose
// number another connection may have by then): Write and WriteData fail
// with net.ErrClosed.
func TestNBConnClosed(t *testing.T) {
	nc, _ := tcpPair(t)
	if err := nc.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := nc.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Write after Close: %v, want net.ErrClosed", err)
	}
	if _, err := nc.WriteData(appendTextFrame(nil, []byte("x"))); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("WriteData after Close: %v, want net.ErrClosed", err)
	}
}
