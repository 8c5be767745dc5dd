package session_test

import (
	"context"
	"errors"
	"fmt"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/sockjsd/sockjsd/client"
	"github.com/sockjsd/sockjsd/session"
	"github.com/sockjsd/sockjsd/transport"
)

// A feed is a bridge-like service: it forwards what a producer makes (a
// program's output, a log, a market feed) to its client, and the producer
// can outrun the client. Send never blocks, so without back-pressure the
// session's send queue would fill until the session is closed with 3009
// and the client loses the feed.
const (
	// window is the most messages the feed keeps queued for one client:
	// far below the send queue limit (Options.SendQueueMessages), so that
	// a slow client slows the producer down instead of being closed.
	window = 8
	// maxLine is the longest line forwarded; a longer one is the
	// producer's fault, and the service closes the session for it.
	maxLine = 64

	codeLineTooLong = 4001 // 4000-4999 are the application's codes
	codeEndOfFeed   = 4000
)

// forward sends each line to s, never more than window messages ahead of
// the client, and reports the most it ever had queued.
func forward(s *session.Session, lines <-chan string) (mostQueued int) {
	for line := range lines {
		if len(line) > maxLine {
			// The client still gets every line sent so far, then the
			// close frame; metrics count the close under "limit", not
			// as an ordinary end ("server", what Close counts).
			_ = s.CloseFor(session.CauseLimit, codeLineTooLong, "Line too long")
			return mostQueued
		}
		if !waitRoom(s) {
			return mostQueued // the client left
		}
		if s.Send(line) != nil {
			return mostQueued
		}
		mostQueued = max(mostQueued, queued(s))
	}
	_ = s.Close(codeEndOfFeed, "End of feed")
	return mostQueued
}

// waitRoom waits until fewer than window messages are queued for s, and
// reports false if s closed meanwhile.
func waitRoom(s *session.Session) bool {
	for {
		// Written before Buffered: a batch written between the two
		// would otherwise be missed, and the wait would never end.
		written := s.Written()
		if queued(s) < window {
			return true
		}
		select {
		case <-written: // the client took a batch: look again
		case <-s.Context().Done():
			return false
		}
	}
}

func queued(s *session.Session) int {
	n, _ := s.Buffered()
	return n
}

// produce makes 100 lines as fast as it is let, then one too long. It
// stops when ctx is done, as a program whose pipe is closed would.
func produce(ctx context.Context) <-chan string {
	lines := make(chan string)
	go func() {
		defer close(lines)
		for i := 1; i <= 101; i++ {
			line := fmt.Sprintf("line %d", i)
			if i == 101 {
				line = strings.Repeat("x", maxLine+1)
			}
			select {
			case lines <- line:
			case <-ctx.Done():
				return
			}
		}
	}()
	return lines
}

// closeReasons tells the reason each session was closed for, as a metrics
// observer would count it.
type closeReasons struct {
	session.NopObserver
	reasons chan session.CloseCause
}

func (o closeReasons) SessionClosed(_ session.Transport, r session.CloseCause, _ time.Duration) {
	select {
	case o.reasons <- r:
	default: // observers must not block; the example needs only the first
	}
}

// A service that forwards a fast producer's output to a SockJS client
// with back-pressure (Buffered and Written) and closes the session with
// CloseFor when the producer breaks a limit: what this module's exec
// bridge does with a program's stdout, built on the public API alone.
func Example() {
	obs := closeReasons{reasons: make(chan session.CloseCause, 1)}
	mostQueued := make(chan int, 1)
	feed := transport.New("/feed", transport.Options{Session: session.Options{Observer: obs}},
		func(s *session.Session) {
			mostQueued <- forward(s, produce(s.Context()))
		})
	srv := httptest.NewServer(feed)
	defer srv.Close()

	ctx := context.Background()
	c, err := client.Dial(ctx, srv.URL+"/feed", client.Options{})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()
	var got []string
	for {
		msg, err := c.Recv(ctx)
		if errors.Is(err, client.ErrClosed) {
			break
		}
		if err != nil {
			fmt.Println(err)
			return
		}
		got = append(got, msg)
		time.Sleep(100 * time.Microsecond) // a client slower than its producer
	}
	code, reason, _ := c.CloseInfo()
	fmt.Println("received", len(got), "lines, the last", got[len(got)-1])
	fmt.Println("then the close frame", code, reason)
	fmt.Println("never more than", window, "queued:", <-mostQueued <= window)
	fmt.Println("counted as", <-obs.reasons)
	// Output:
	// received 100 lines, the last line 100
	// then the close frame 4001 Line too long
	// never more than 8 queued: true
	// counted as limit
}
