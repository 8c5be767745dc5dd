package main

import (
	"net"
	"strings"
	"testing"
)

// TestDemoURL: the logged demo URL is one a person can open on this
// machine, whatever -addr was, and the log says what listens.
func TestDemoURL(t *testing.T) {
	for _, tc := range []struct {
		name, addr string // addr as net.Listen reports it
		url, on    string
	}{
		{"port only (:8081)", ":8081", "http://127.0.0.1:8081/", "every interface, IPv4 and IPv6"},
		{"IPv6 wildcard ([::]:8081)", "[::]:8081", "http://127.0.0.1:8081/", "every interface, IPv4 and IPv6"},
		{"IPv4 wildcard (0.0.0.0:8081)", "0.0.0.0:8081", "http://127.0.0.1:8081/", "every IPv4 interface"},
		{"loopback (the default)", "127.0.0.1:8081", "http://127.0.0.1:8081/", "loopback only"},
		{"other loopback", "127.0.0.2:9000", "http://127.0.0.2:9000/", "loopback only"},
		{"IPv6 loopback", "[::1]:8081", "http://[::1]:8081/", "loopback only"},
		{"one interface", "192.0.2.10:8081", "http://192.0.2.10:8081/", "this address only"},
		{"one IPv6 interface", "[2001:db8::1]:443", "http://[2001:db8::1]:443/", "this address only"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, err := net.ResolveTCPAddr("tcp", tc.addr)
			if err != nil {
				t.Fatal(err)
			}
			url, on := demoURL(a)
			if url != tc.url || !strings.HasPrefix(on, tc.on) {
				t.Errorf("demoURL(%s) = %q, %q; want %q, %q…", tc.addr, url, on, tc.url, tc.on)
			}
			if strings.Contains(url, "[::]") || strings.Contains(url, "0.0.0.0") {
				t.Errorf("demoURL(%s) = %q: no browser opens a wildcard address", tc.addr, url)
			}
		})
	}
}
