package webhook_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/sockjsd/sockjsd/internal/sign"
	"github.com/sockjsd/sockjsd/webhook"
)

// A receiver checks the signature, drops ids it saw already, and answers
// 2xx; the Notifier posts each event once it is enqueued.
func Example() {
	secret := []byte("shared with the backend")
	got := make(chan webhook.Event, 1)
	seen := map[string]bool{}
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if sign.Verify(secret, r.Header.Get(sign.Header), body, time.Now(), 0) != nil {
			http.Error(w, "bad signature", http.StatusUnauthorized)
			return
		}
		id := r.Header.Get(webhook.EventIDHeader)
		if !seen[id] { // at least once: a repeat is possible
			seen[id] = true
			var e webhook.Event
			_ = json.Unmarshal(body, &e)
			got <- e
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	defer backend.Close()

	n, err := webhook.New(webhook.Options{URL: backend.URL + "/hooks/sockjs", Secret: secret})
	if err != nil {
		log.Fatal(err)
	}
	defer n.Shutdown(context.Background())

	_ = n.Enqueue(context.Background(), webhook.Event{Type: webhook.UserOnline, User: "alice", Session: "s1"})
	e := <-got
	fmt.Println(e.Type, e.User, e.Session, len(e.ID))
	// Output: user.online alice s1 32
}
