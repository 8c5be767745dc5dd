package testenv

import (
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
)

// FreePort is a loopback TCP port free a moment ago, for a process the
// test starts later. It is taken below the kernel's ephemeral range: a
// port from that range (what listening on port 0 gives) may be handed to
// one of the many outgoing connections the test's processes open before
// the process that needs it binds it (haproxy failed so with "Address
// already in use" after three nodes had started).
func FreePort(t testing.TB) int {
	t.Helper()
	return freePortBelow(t, ephemeralLow(), 0)
}

// freePortBelow is a free port in [10000, max) such that port+also is
// free too when also is not 0 (a Redis Cluster node's bus port).
func freePortBelow(t testing.TB, max, also int) int {
	t.Helper()
	for range 200 {
		port := 10000 + rand.IntN(max-10000)
		ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
		if err != nil {
			continue
		}
		if also != 0 {
			ln2, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port+also))
			if err != nil {
				ln.Close()
				continue
			}
			ln2.Close()
		}
		ln.Close()
		return port
	}
	t.Fatalf("no free port in 10000-%d after 200 tries", max-1)
	return 0
}

// ephemeralLow is the first port of the kernel's ephemeral range (32768
// when it cannot be read).
func ephemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 32768
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return 32768
	}
	low, err := strconv.Atoi(f[0])
	if err != nil || low <= 11000 {
		return 32768
	}
	return low
}
