package hub_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/gorilla/mux"

	"github.com/sockjsd/sockjsd/client"
	"github.com/sockjsd/sockjsd/hub"
	"github.com/sockjsd/sockjsd/session"
	"github.com/sockjsd/sockjsd/transport"
	"github.com/sockjsd/sockjsd/transport/gorillamux"
)

// poster is a minimal hub.Caller: a JSON POST bounded by a timeout.
// sockjsd's own (-hub-proxy) also signs each request and bounds the
// requests in flight and the size of answers.
type poster struct {
	url    string
	client *http.Client
}

func (p poster) Call(ctx context.Context, path string, req, answer any) error {
	body, err := json.Marshal(req)
	if err != nil {
		return err
	}
	r, err := http.NewRequestWithContext(ctx, http.MethodPost, p.url+path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	r.Header.Set("Content-Type", "application/json")
	res, err := p.client.Do(r)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	if res.StatusCode/100 != 2 {
		return fmt.Errorf("%s: status %d", path, res.StatusCode)
	}
	return json.NewDecoder(io.LimitReader(res.Body, 1<<20)).Decode(answer)
}

// A backend decides: it denies subscribes to chat.staff, stamps every
// browser publish with the user, and answers rpc calls.
func ExampleNewHTTPHooks() {
	app := http.NewServeMux()
	app.HandleFunc("POST /subscribe", func(w http.ResponseWriter, r *http.Request) {
		var req hub.SubscribeRequest
		_ = json.NewDecoder(r.Body).Decode(&req)
		if req.Channel == "chat.staff" {
			fmt.Fprint(w, `{"deny":{"reason":"staff only"}}`)
			return
		}
		fmt.Fprint(w, `{}`)
	})
	app.HandleFunc("POST /publish", func(w http.ResponseWriter, r *http.Request) {
		var req hub.PublishRequest
		_ = json.NewDecoder(r.Body).Decode(&req)
		_ = json.NewEncoder(w).Encode(map[string]any{"data": map[string]any{"text": req.Data, "by": "alice"}})
	})
	app.HandleFunc("POST /rpc", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, `{"data":{"time":"12:00"}}`)
	})
	backendSrv := httptest.NewServer(app)
	defer backendSrv.Close()

	h := hub.New(hub.Options{
		Rules: hub.Rules{Channels: []string{"chat.*"}, BrowserPublish: []string{"chat.*"}},
		Hooks: hub.NewHTTPHooks(poster{backendSrv.URL, &http.Client{Timeout: 2 * time.Second}}, hub.HTTPHooksOptions{}),
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
	_ = c.Send(`{"op":"subscribe","channel":"chat.staff"}`)
	fmt.Println(exampleUntil(ctx, c, "error"))
	_ = c.Send(`{"op":"subscribe","channel":"chat.lobby"}`)
	_, _ = exampleUntil(ctx, c, "subscribed")
	_ = c.Send(`{"op":"publish","channel":"chat.lobby","data":"hi"}`)
	fmt.Println(exampleUntil(ctx, c, "message"))
	_ = c.Send(`{"op":"rpc","id":1,"method":"time"}`)
	fmt.Println(exampleUntil(ctx, c, "rpc_result"))
	// Output:
	// {"op":"error","code":"forbidden","message":"staff only","channel":"chat.staff"} <nil>
	// {"op":"message","channel":"chat.lobby","seq":1,"data":{"by":"alice","text":"hi"}} <nil>
	// {"op":"rpc_result","id":1,"data":{"time":"12:00"}} <nil>
}

// Another service's session (here one that subscribes on "join <room>")
// gets hub channels' frames, the same a /hub client gets, without the
// hub owning the session: its handler keeps OnMessage.
func ExampleHub_Attach() {
	h := hub.New(hub.Options{Rules: hub.Rules{Channels: []string{"room.*"}}})
	r := mux.NewRouter()
	r.SkipClean(true)
	gorillamux.Mount(r, transport.New("/app", transport.Options{}, func(s *session.Session) {
		m := h.Attach(s) // released when the session ends
		s.OnMessage(func(msg string) {
			if room, ok := strings.CutPrefix(msg, "join "); ok {
				if err := m.Subscribe(s.Context(), "room."+room); err != nil {
					b, _ := json.Marshal(map[string]string{"op": "app_error", "message": err.Error()})
					_ = s.Send(string(b))
				}
			}
		})
	}))
	srv := httptest.NewServer(r)
	defer srv.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, srv.URL+"/app", client.Options{})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()
	_ = c.Send("join 1")
	if _, err := exampleUntil(ctx, c, "subscribed"); err != nil {
		fmt.Println(err)
		return
	}
	_, _ = h.Publish(ctx, "room.1", json.RawMessage(`{"text":"welcome"}`))
	fmt.Println(exampleUntil(ctx, c, "message"))
	_ = c.Send("join bad/name")
	fmt.Println(exampleUntil(ctx, c, "app_error"))
	// Output:
	// {"op":"message","channel":"room.1","seq":1,"data":{"text":"welcome"}} <nil>
	// {"message":"no such channel","op":"app_error"} <nil>
}
