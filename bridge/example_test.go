//go:build linux

package bridge_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/sockjsd/sockjsd/bridge"
	"github.com/sockjsd/sockjsd/client"
	"github.com/sockjsd/sockjsd/transport"
)

// An echo service that is one cat(1) per session: each message is a line
// on cat's stdin, each line cat writes a message back. When the client
// leaves, cat's process group gets SIGTERM; Shutdown ends and reaps every
// program still running.
func ExampleNew() {
	b, err := bridge.New(bridge.Options{
		Name:   "/cat",
		Argv:   []string{"cat"}, // found in PATH now, not per session
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	h := transport.New("/cat", transport.Options{}, b.Serve)
	mux := http.NewServeMux()
	mux.Handle("/cat/", h)
	srv := httptest.NewServer(transport.KeepPaths(mux, h))
	defer srv.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, srv.URL+"/cat", client.Options{})
	if err != nil {
		fmt.Println(err)
		return
	}
	_ = c.Send("hello")
	_ = c.Send("żółw")
	for range 2 {
		fmt.Println(c.Recv(ctx))
	}
	_ = c.Close()
	fmt.Println("shutdown:", b.Shutdown(ctx), "running:", b.Running())
	// Output:
	// hello <nil>
	// żółw <nil>
	// shutdown: <nil> running: 0
}

// ParseCommand splits a command line the way a reader expects from a
// shell, without running one: quotes group words, and nothing else is
// special.
func ExampleParseCommand() {
	argv, err := bridge.ParseCommand(`grep --line-buffered -e 'two words' "a \"quoted\" one" $HOME`)
	fmt.Printf("%q %v\n", argv, err)
	// Output:
	// ["grep" "--line-buffered" "-e" "two words" "a \"quoted\" one" "$HOME"] <nil>
}

// Several bridges can share one Limit, a server-wide bound on the programs
// running at once; past it a new session is closed with 3013 and no
// program starts. (Not run: it serves on a fixed port.)
func ExampleNewLimit() {
	procs := bridge.NewLimit(100)
	mux := http.NewServeMux()
	var handlers []*transport.Handler
	for prefix, argv := range map[string][]string{
		"/chat": {"./chat.sh"},
		"/logs": {"tail", "-F", "/var/log/app.log"},
	} {
		b, err := bridge.New(bridge.Options{Name: prefix, Argv: argv, Dir: "/srv/exec", Procs: procs})
		if err != nil {
			log.Fatal(err)
		}
		h := transport.New(prefix, transport.Options{}, b.Serve)
		mux.Handle(prefix+"/", h)
		handlers = append(handlers, h)
	}
	log.Fatal(http.ListenAndServe("127.0.0.1:8081", transport.KeepPaths(mux, handlers...)))
}
