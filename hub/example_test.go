package hub_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/gorilla/mux"
	"github.com/redis/go-redis/v9"

	"github.com/sockjsd/sockjsd/client"
	"github.com/sockjsd/sockjsd/hub"
	"github.com/sockjsd/sockjsd/transport"
	"github.com/sockjsd/sockjsd/transport/gorillamux"
)

// exampleUntil returns the first message from c whose op is op, within
// ctx: a page gets other messages too (pings, acknowledgements).
func exampleUntil(ctx context.Context, c *client.Conn, op string) (string, error) {
	for {
		msg, err := c.Recv(ctx)
		if err != nil {
			return "", err
		}
		var m struct{ Op string }
		if json.Unmarshal([]byte(msg), &m) == nil && m.Op == op {
			return msg, nil
		}
	}
}

// A hub on the in-process broker: its Serve method is the session handler
// of a SockJS service. A client subscribes, and a publish in the same
// process (Hub.Publish) reaches it with the channel's next sequence number.
func ExampleNew() {
	broker := hub.NewMemoryBroker(hub.MemoryBrokerOptions{
		History: hub.HistoryOptions{Size: 100, TTL: 5 * time.Minute}, // for subscribers that resume
	})
	defer broker.Close()
	h := hub.New(hub.Options{
		Rules:  hub.Rules{Channels: []string{"news", "chat.*"}},
		Broker: broker,
	})
	r := mux.NewRouter()
	r.SkipClean(true)
	gorillamux.Mount(r, transport.New("/hub", transport.Options{}, h.Serve))
	srv := httptest.NewServer(r)
	defer srv.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, srv.URL+"/hub", client.Options{})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()
	_ = c.Send(`{"op":"subscribe","channel":"news"}`)
	if _, err := exampleUntil(ctx, c, "subscribed"); err != nil {
		fmt.Println(err)
		return
	}
	seq, err := h.Publish(ctx, "news", json.RawMessage(`{"title":"hello"}`))
	fmt.Println(seq, err)
	fmt.Println(exampleUntil(ctx, c, "message"))
	// Output:
	// 1 <nil>
	// {"op":"message","channel":"news","seq":1,"data":{"title":"hello"}} <nil>
}

// Backends publish through the HTTP API, with the API key when one is set.
func ExampleNewAPI() {
	h := hub.New(hub.Options{})
	r := mux.NewRouter()
	hub.NewAPI(h, hub.APIOptions{Key: "backend-key"}).Mount(r, "/api")
	srv := httptest.NewServer(r)
	defer srv.Close()

	publish := func(key string) {
		req, _ := http.NewRequest(http.MethodPost, srv.URL+"/api/publish",
			strings.NewReader(`{"channel":"news","data":{"title":"hello"}}`))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+key)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			fmt.Println(err)
			return
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		fmt.Println(res.StatusCode, strings.TrimSpace(string(b)))
	}
	publish("backend-key")
	publish("guess")
	// Output:
	// 200 {"channel":"news","seq":1}
	// 403 {"error":"forbidden","message":"wrong API key"}
}

// With Rules.TokenSecret, subscribing needs a token that the backend signs
// for the channels a page may read, passed in the SockJS URL's query.
func ExampleSignToken() {
	secret := []byte("a secret of at least 32 bytes, shared with backends")
	h := hub.New(hub.Options{Rules: hub.Rules{TokenSecret: secret}})
	r := mux.NewRouter()
	r.SkipClean(true)
	gorillamux.Mount(r, transport.New("/hub", transport.Options{}, h.Serve))
	srv := httptest.NewServer(r)
	defer srv.Close()

	token, err := hub.SignToken(secret, []string{"user.42.*"}, time.Hour)
	if err != nil {
		fmt.Println(err)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, srv.URL+"/hub?token="+token, client.Options{})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()
	for _, channel := range []string{"user.42.inbox", "user.43.inbox"} {
		_ = c.Send(`{"op":"subscribe","channel":"` + channel + `"}`)
		for {
			msg, err := c.Recv(ctx)
			if err != nil {
				fmt.Println(err)
				return
			}
			var m struct{ Op, Code string }
			_ = json.Unmarshal([]byte(msg), &m)
			if m.Op == "subscribed" || m.Op == "error" {
				fmt.Println(channel, strings.TrimSpace(m.Op+" "+m.Code))
				break
			}
		}
	}
	// Output:
	// user.42.inbox subscribed
	// user.43.inbox error forbidden
}

// On several nodes every node's hub uses a RedisBroker on the same Redis,
// so that a publish on any node reaches subscribers on all of them, in
// order, and history survives a client moving to another node. (Not run:
// it needs a Redis server.)
func ExampleNewRedisBroker() {
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379", ContextTimeoutEnabled: true})
	defer rdb.Close()
	broker, err := hub.NewRedisBroker(rdb, hub.RedisBrokerOptions{
		History: hub.HistoryOptions{Size: 100, TTL: 5 * time.Minute},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer broker.Close()
	h := hub.New(hub.Options{Broker: broker})

	r := mux.NewRouter()
	r.SkipClean(true)
	gorillamux.Mount(r, transport.New("/hub", transport.Options{}, h.Serve))
	hub.NewAPI(h, hub.APIOptions{}).Mount(r, "/api")
	log.Fatal(http.ListenAndServe("127.0.0.1:8081", r))
}
