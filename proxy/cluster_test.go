package proxy_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/mux"

	"github.com/sockjsd/sockjsd/directory"
	"github.com/sockjsd/sockjsd/internal/sign"
	"github.com/sockjsd/sockjsd/proxy"
	"github.com/sockjsd/sockjsd/transport"
	"github.com/sockjsd/sockjsd/transport/gorillamux"
)

// sharedDir is a directory two gateways share, as the Redis one is shared
// by the nodes of a cluster.
type sharedDir struct {
	mu sync.Mutex
	by map[string]directory.Entry
}

func (d *sharedDir) Add(_ context.Context, e directory.Entry) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.by[e.ID] = e
	return nil
}

func (d *sharedDir) Remove(_ context.Context, id string, _ int, _ string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.by, id)
	return nil
}

func (d *sharedDir) Lookup(_ context.Context, id string) (directory.Entry, bool, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	e, ok := d.by[id]
	return e, ok, nil
}

func (d *sharedDir) ByUser(_ context.Context, user string) ([]directory.Entry, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []directory.Entry
	for _, e := range d.by {
		if e.User == user {
			out = append(out, e)
		}
	}
	return out, nil
}

// recorder keeps the last node-to-node request a node received.
type recorder struct {
	mu   sync.Mutex
	body []byte
	sig  string
	next http.Handler
}

func (r *recorder) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	if req.URL.Path == proxy.NodePath {
		b, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		r.body, r.sig = b, req.Header.Get(sign.Header)
		r.mu.Unlock()
		req.Body = io.NopCloser(bytes.NewReader(b))
	}
	r.next.ServeHTTP(w, req)
}

func TestAPIReachesOtherNodes(t *testing.T) {
	b := newBackend(t)
	b.connect = func(m map[string]any) (int, string) {
		return 200, `{"user":"` + m["query"].(map[string]any)["user"].(string) + `"}`
	}
	dir := &sharedDir{by: map[string]directory.Entry{}}
	nodeSecret := []byte("cluster secret")
	var urls [2]string
	var recs [2]*recorder
	for i := range 2 {
		// The node's URL must be known before its gateway is made.
		r := mux.NewRouter()
		r.SkipClean(true)
		recs[i] = &recorder{next: r}
		srv := httptest.NewUnstartedServer(recs[i])
		urls[i] = "http://" + srv.Listener.Addr().String()
		gw, err := proxy.New(proxy.Options{Secret: secret, Node: urls[i], Directory: dir})
		if err != nil {
			t.Fatal(err)
		}
		serve, _ := gw.Service("/app0", b.srv.URL)
		h := transport.New("/app0", transport.Options{}, serve)
		gorillamux.Mount(r, h)
		proxy.NewAPI(gw, proxy.APIOptions{Key: "k", NodeSecret: nodeSecret}).Mount(r, "/api")
		srv.Start()
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = h.Shutdown(ctx)
			_ = gw.Shutdown(ctx)
			srv.Close()
		})
	}
	// carol has a page on each node.
	c0 := dial(t, urls[0]+"/app0?user=carol", "websocket")
	c1 := dial(t, urls[1]+"/app0?user=carol", "xhr-polling")
	b.connected(t, 2)
	deadline := time.Now().Add(10 * time.Second)
	for {
		es, _ := dir.ByUser(context.Background(), "carol")
		if len(es) == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("carol's sessions were not recorded")
		}
		time.Sleep(5 * time.Millisecond)
	}
	// Asked on node 0, the API reaches both.
	st, m := apiCall(t, "POST", urls[0]+"/api/send", `{"user":"carol","data":"to both"}`)
	if st != 200 || m["sessions"].(float64) != 2 {
		t.Fatalf("send: %d %v", st, m)
	}
	if got := recv(t, c0); got != "to both" {
		t.Fatalf("node 0's page got %q", got)
	}
	if got := recv(t, c1); got != "to both" {
		t.Fatalf("node 1's page got %q", got)
	}
	st, m = apiCall(t, "GET", urls[0]+"/api/sessions?user=carol", "")
	nodes := map[string]bool{}
	for _, s := range m["sessions"].([]any) {
		nodes[s.(map[string]any)["node"].(string)] = true
	}
	if st != 200 || !nodes[urls[0]] || !nodes[urls[1]] {
		t.Fatalf("sessions: %d %v", st, m)
	}

	// The delivery node 1 received cannot be replayed, nor forged.
	recs[1].mu.Lock()
	body, sig := recs[1].body, recs[1].sig
	recs[1].mu.Unlock()
	post := func(body []byte, sig string) int {
		req, _ := http.NewRequest("POST", urls[1]+proxy.NodePath, bytes.NewReader(body))
		req.Header.Set(sign.Header, sig)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res.StatusCode
	}
	if st := post(body, sig); st != http.StatusConflict {
		t.Fatalf("replayed delivery: %d, want 409", st)
	}
	forged := bytes.Replace(body, []byte("to both"), []byte("forged!"), 1)
	if st := post(forged, sig); st != http.StatusForbidden {
		t.Fatalf("forged delivery: %d, want 403", st)
	}
	if st := post(forged, sign.Value([]byte("wrong"), time.Now(), forged)); st != http.StatusForbidden {
		t.Fatalf("delivery signed with another secret: %d, want 403", st)
	}
	old := bytes.Replace(body, []byte(`"nonce":"`), []byte(`"nonce":"x`), 1)
	if st := post(old, sign.Value(nodeSecret, time.Now().Add(-time.Minute), old)); st != http.StatusForbidden {
		t.Fatalf("stale delivery: %d, want 403", st)
	}
}
