package transport

import "testing"

func TestWildcardOrigins(t *testing.T) {
	l := newOriginList([]string{"https://*.example.com", "http://*.dev.test:8080", "https://exact.org"})
	cases := []struct {
		origin string
		want   bool
	}{
		{"https://a.example.com", true},
		{"https://a.example.com:8443", true}, // any port with a portless pattern
		{"https://A.Example.COM:443", true},
		{"https://a.b.example.com", true},
		{"https://example.com", false}, // the pattern needs a subdomain
		{"https://evilexample.com", false},
		{"https://a.example.com.evil.net", false},
		{"http://a.example.com", false}, // scheme
		{"http://x.dev.test:8080", true},
		{"http://x.dev.test:8081", false}, // a pattern's port is exact
		{"http://x.dev.test", false},
		{"https://exact.org", true},
		{"https://exact.org:444", false},
		{"", true}, // no Origin: not a browser
	}
	for _, tc := range cases {
		if got := l.allows(tc.origin); got != tc.want {
			t.Errorf("allows(%q) = %v, want %v", tc.origin, got, tc.want)
		}
	}
}
