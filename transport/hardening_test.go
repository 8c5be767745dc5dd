package transport_test

// Limits on what one client can make the server hold (issue 9): ids,
// request info kept per session, receive queue bytes, concurrent sends,
// body read time.

import (
	"strings"
	"testing"

	"github.com/sockjsd/sockjsd/services"
	"github.com/sockjsd/sockjsd/transport"
)

func TestLongIDsAre404(t *testing.T) {
	base := serveOne(t, transport.Options{}, services.Echo)
	long := strings.Repeat("x", transport.DefaultMaxIDBytes+1)
	ok := strings.Repeat("x", transport.DefaultMaxIDBytes)
	for _, tc := range []struct {
		path string
		code int
	}{
		{"/000/" + long + "/xhr", 404},
		{"/" + long + "/" + newSID() + "/xhr", 404},
		{"/000/" + ok + "/xhr", 200},
		{"/" + ok + "/" + newSID() + "/xhr", 200},
	} {
		if r := do(t, "POST", base+tc.path, ""); r.code != tc.code {
			t.Errorf("POST %s: %d, want %d", tc.path[:20], r.code, tc.code)
		}
	}
	if r := do(t, "GET", base+"/000/"+long+"/websocket", "", "Upgrade", "websocket", "Connection", "Upgrade"); r.code != 404 {
		t.Errorf("websocket with a long id: %d", r.code)
	}
}
