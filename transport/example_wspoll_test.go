package transport_test

import (
	"net/http"

	"github.com/sockjsd/sockjsd/services"
	"github.com/sockjsd/sockjsd/transport"
)

// A service whose websockets each keep a reader goroutine, and whose
// streaming answers each keep a goroutine watching for the client
// leaving, instead of waiting in the kernel's poller while idle (to
// compare the two under a load, say). Either way only connections the
// transport can read directly are parked: a *net.TCPConn, or a
// listener's wrapper of one that reads nothing itself and says so with
// an UnwrapConn() net.Conn method; any other connection keeps its
// goroutine.
func ExampleOptions_readerGoroutines() {
	echo := transport.New("/echo", transport.Options{ReaderGoroutines: true}, services.Echo)
	mux := http.NewServeMux()
	mux.Handle("/echo/", echo)
	_ = transport.KeepPaths(mux, echo) // served as in the package example
}
